"""OOD flag: scores, a threshold fitted on validation, saved without pickle, and predict's columns."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.analysis.ood import OodDetector, auroc, fit_detector, model_outputs, ood_path, ood_scores
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ModelError
from kerasclf.io import card_path, read_card
from kerasclf.predict import format_table, predict_paths
from kerasclf.testing import square_images
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe


def _outputs(rng: np.random.Generator, n: int, centre: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    y = rng.integers(0, len(centre), n)
    f = centre[y] + rng.normal(0, 1, (n, centre.shape[1]))
    logits = -((f[:, None, :] - centre[None]) ** 2).sum(-1) / 2
    p = np.exp(logits - logits.max(1, keepdims=True))
    return {"features": f, "probs": p / p.sum(1, keepdims=True), "logits": logits}, y


def test_scores_threshold_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    centre = rng.normal(0, 5, (3, 6))
    (train, ytr), (val, _), (test, _) = (_outputs(rng, n, centre) for n in (600, 400, 400))
    far = {"features": rng.normal(0, 1, (200, 6)) + 30.0}
    det = fit_detector("mahalanobis", train, ytr, val, target_fpr=0.05)
    s_test, f_test = det.flag(test)
    s_far, f_far = det.flag(far)
    assert abs(det.val_fpr - 0.05) < 0.01 and f_test.mean() < 0.10     # in-distribution: about the target
    assert f_far.all() and auroc(s_test, s_far) > 0.99                  # far away: all flagged
    back = OodDetector.load(det.save(tmp_path / "m.ood.npz"))
    assert back.kind == "mahalanobis" and back.threshold == pytest.approx(det.threshold, rel=1e-6)
    np.testing.assert_allclose(back.scores(test), s_test, rtol=1e-4)
    msp = ood_scores("msp", {"probs": np.array([[0.9, 0.1], [0.5, 0.5]])})
    assert msp.tolist() == pytest.approx([0.1, 0.5])
    assert np.all(ood_scores("energy", test) <= -np.max(test["logits"], 1) + 1e-9)  # -logsumexp <= -max
    with pytest.raises(ModelError, match="needs logits"):
        ood_scores("energy", {"probs": test["probs"]})
    (tmp_path / "bad.ood.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelError, match="unreadable OOD statistics"):
        OodDetector.load(tmp_path / "bad.ood.npz")


def test_a_run_fits_the_flag_and_predict_marks_images_unlike_its_training_data(tmp_path):
    """train() fits the flag on the run's own split (model.ood.npz + card + metrics); predict then
    passes new images of the training kind and flags colour ramps it has never seen."""
    images, labels = square_images(n_per_class=40, size=24, classes=3, seed=2)
    spec = DataSpec.from_arrays(images, labels, ["a", "b", "c"])
    recipe = Recipe.from_dict({
        "name": "ood", "output_dir": str(tmp_path),
        "data": {"source": "digits", "image_size": [24, 24], "batch_size": 16, "split": {"seed": 3}},
        "model": {"name": "resnet", "stages": [8, 16], "units_per_stage": [1, 1]},
        "train": {"epochs": 5, "verbose": 0, "seed": 3, "optimizer": {"name": "adam", "learning_rate": 0.003}}})
    result = train(recipe, spec=spec)
    path = result.model_path
    det = OodDetector.load(ood_path(path))
    assert det.kind == "mahalanobis" and det.val_fpr <= 0.1
    assert read_card(path)["ood"] == det.card() == result.metrics["ood"]
    assert "out-of-distribution flag: mahalanobis" in card_path(path).with_suffix(".md").read_text()
    folder = tmp_path / "new"
    folder.mkdir()
    xi, _ = square_images(n_per_class=10, size=24, classes=3, seed=7)
    for i, img in enumerate(xi):
        Image.fromarray(img).save(folder / f"in_{i:02d}.png")
    rng = np.random.default_rng(3)
    for i in range(10):  # out of distribution: smooth colour ramps, no square
        ramp = np.linspace(0, 255, 24)[None, :, None] * rng.uniform(0.2, 1, (1, 1, 3))
        Image.fromarray(np.broadcast_to(ramp, (24, 24, 3)).astype(np.uint8)).save(folder / f"out_{i:02d}.png")
    rows = predict_paths(path, [folder], out_csv=tmp_path / "p.csv")
    flags: dict[str, list[bool]] = {"in_": [], "out": []}
    for r in rows:
        flags[Path(r["path"]).name[:3]].append(r["ood"])
    assert np.mean(flags["in_"]) <= 0.2 and np.mean(flags["out"]) >= 0.9, flags
    with open(tmp_path / "p.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[-2:] == ["ood_score", "ood"]
    table = format_table(rows, limit=None)
    assert "ood_score" in table and table.count("!! OOD") == sum(r["ood"] for r in rows) + 1  # rows + footer
    model = result.model
    same = model_outputs(model, xi.astype("float32"))
    np.testing.assert_allclose(same["probs"], model.predict(xi.astype("float32"), verbose=0), atol=1e-5)


def _gray_folder(root: Path, n_per_class: int = 24, size: int = 16) -> Path:
    """Two classes of 8-bit grayscale PNGs ("L"): a bright square top-left or bottom-right on noise."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("tl", "br")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 70, (size, size)).astype(np.uint8)
            lo = 0 if c == 0 else size // 2
            img[lo:lo + size // 2, lo:lo + size // 2] = 255
            Image.fromarray(img, mode="L").save(root / name / f"{i:02d}.png")
    return root


def _gray_recipe(tmp_path: Path, name: str, **train: object) -> Recipe:
    # resnet's strided shortcut: a 16-px digits run once aborted inside TensorFlow here (TF 2.21's
    # oneDNN weight gradient of a 1x1 stride-2 conv on an odd batch; see zoo/resnet.py)
    return Recipe.from_dict({
        "name": name, "output_dir": str(tmp_path / "runs"),
        "data": {"source": "folder", "path": str(tmp_path / "gray"), "image_size": [16, 16], "channels": 1,
                 "batch_size": 8, "split": {"seed": 0}},
        "model": {"name": "resnet", "stages": [8, 16], "units_per_stage": [1, 1]},
        "train": {"epochs": 1, "verbose": 0, "tensorboard": False, "mixed_precision": None, "jit_compile": False,
                  "steps_per_execution": 1, **train}})


@pytest.mark.slow  # two training runs (~60 s on the loaded 2 cores); the default suite is near its 8-minute budget
def test_a_grayscale_run_fits_its_ood_statistics_and_ood_false_skips_them(tmp_path):
    """channels: 1 on grayscale files: the statistics are fitted (streamed, read with the run's
    channels); train.ood: false writes no model.ood.npz and no ood entry."""
    _gray_folder(tmp_path / "gray")
    result = train(_gray_recipe(tmp_path, "gray"))
    det = OodDetector.load(ood_path(result.model_path))
    assert det.kind == "mahalanobis" and det.means.shape[0] == 2 and np.isfinite(det.threshold)
    assert result.metrics["ood"] == det.card() and result.model.inputs[0].shape[-1] == 1
    off = train(_gray_recipe(tmp_path, "gray_no_ood", ood=False))
    assert not ood_path(off.model_path).exists()
    assert "ood" not in off.metrics and "ood" not in read_card(off.model_path)
