"""`compare`: six small models (three modes + a scikit-learn head) on one split, resumable."""
import json

import pytest
import yaml

from kerasclf.experiment import compare

MODELS = [
    {"name": "simple_cnn", "mode": "scratch", "label": "simple"},
    {"name": "resnet", "mode": "scratch", "label": "resnet", "stages": [8, 16], "units_per_stage": [1, 1]},
    {"name": "simple_cnn", "mode": "scratch", "label": "simple_sgd",
     "train": {"optimizer": {"name": "sgd", "learning_rate": 0.05}}},
    {"name": "backbone_head", "mode": "feature_extraction", "label": "mnet_fe", "backbone": "MobileNet",
     "alpha": 0.25, "weights": None},
    {"name": "backbone_head", "mode": "fine_tune", "label": "mnet_ft", "backbone": "MobileNet", "alpha": 0.25,
     "weights": None, "train": {"fine_tune": {"epochs": 1, "learning_rate": 1e-4, "unfreeze": 10}}},
    {"name": "backbone_head", "mode": "sklearn", "label": "mnet_logreg", "backbone": "MobileNet",
     "alpha": 0.25, "weights": None, "head": "logreg"},
]


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cmp", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "digits", "image_size": [32, 32], "batch_size": 32},
        "train": {"epochs": 1, "steps_per_epoch": 6, "verbose": 0},
        "models": MODELS, "tta": True, "ensemble": 3,
    }))
    return path


def test_compare_six_models_leaderboard_and_resume(recipe, tmp_path):
    board = compare(recipe)
    out = tmp_path / "runs" / "cmp"
    assert len(board.rows) == 6
    assert {r["mode"] for r in board.rows} == {"scratch", "feature_extraction", "fine_tune", "sklearn"}
    vals = [r["val_acc"] for r in board.rows]
    assert vals == sorted(vals, reverse=True) and board.best == board.rows[0]["label"]
    assert all(r["params"] and r["train_time_s"] is not None for r in board.rows)
    assert 0.0 <= board.test["accuracy"] <= 1.0 and board.test["model"] == board.best
    assert set(board.gains) == {"tta", "ensemble"}
    for name in ("leaderboard.csv", "leaderboard.json", "split.csv", "report.html"):
        assert (out / name).is_file(), name
    # each model trained on the same manifest, and none of them saw the test split
    manifests = {(out / "models" / r["label"] / "split.csv").read_text()
                 for r in board.rows if r["mode"] != "sklearn"}
    assert manifests == {(out / "split.csv").read_text()}
    for r in board.rows:
        metrics = json.loads((out / "models" / r["label"] / "metrics.json").read_text())
        assert "test" not in metrics
    # resume: nothing is retrained
    stamps = {r["label"]: (out / "models" / r["label"] / "metrics.json").stat().st_mtime_ns for r in board.rows}
    again = compare(recipe)
    assert [r["label"] for r in again.rows] == [r["label"] for r in board.rows]
    assert stamps == {r["label"]: (out / "models" / r["label"] / "metrics.json").stat().st_mtime_ns
                      for r in again.rows}
