"""train.budget_minutes: the fine-tuning stage's epochs are sized by the time its first epoch took."""
import csv
import json

import pytest

from kerasclf.errors import ConfigError
from kerasclf.testing import write_image_folder
from kerasclf.train.budget import EpochTime, RunBudget, finish_reserve
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe


def _recipe(tmp_path, folder, budget, ft_epochs=4):
    return Recipe.from_dict({
        "name": "b", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "folder", "path": str(folder), "image_size": [32, 32], "batch_size": 8,
                 "split": {"seed": 1}},
        "model": {"name": "backbone_head", "backbone": "MobileNet", "alpha": 0.25, "weights": None},
        "train": {"epochs": 2, "verbose": 0, "budget_minutes": budget, "ood": False,
                  "fine_tune": {"epochs": ft_epochs, "learning_rate": 1e-4, "unfreeze": True, "schedule": "cosine"}},
    })


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "images", n_per_class=12, size=24, classes=2)


def _epochs(run_dir):
    return [int(r["epoch"]) for r in csv.DictReader((run_dir / "history.csv").open())]


def test_a_spent_budget_stops_stage_one_and_skips_fine_tuning(tmp_path, folder, capsys):
    result = train(_recipe(tmp_path, folder, budget=0.001))  # 0.06 s: spent before stage 1 ends
    budget = json.loads((result.run_dir / "metrics.json").read_text())["budget"]
    # stage 1 stops after its first epoch; not even one fine-tuning epoch fits, so none runs
    assert _epochs(result.run_dir) == [0]
    assert [d["event"] for d in budget["decisions"]] == ["stopped", "fine_tune_skipped"]
    assert result.model.get_layer("backbone").trainable is False
    assert (result.run_dir / "model.keras").is_file()


@pytest.mark.slow  # 35-55 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_a_budget_too_short_for_more_runs_only_the_timed_epoch(tmp_path, folder, monkeypatch):
    """Fine-tuning starts when its first epoch looks affordable, and stops after it when no more fit."""
    monkeypatch.setattr(RunBudget, "epoch_fits", lambda self, n: True)
    result = train(_recipe(tmp_path, folder, budget=0.001))
    assert _epochs(result.run_dir) == [0, 1]
    decision = next(d for d in json.loads((result.run_dir / "metrics.json").read_text())["budget"]["decisions"]
                    if d["event"] == "fine_tune_epochs")
    assert decision["epochs"] == 0 and decision["of_most"] == 3
    assert json.loads((result.run_dir / "checkpoints" / "budget.json").read_text())["epochs"] == 0


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_a_generous_budget_runs_every_epoch(tmp_path, folder):
    result = train(_recipe(tmp_path, folder, budget=100.0))
    assert _epochs(result.run_dir) == [0, 1, 2, 3, 4, 5]  # 2 + 1 timed + 3 that fit
    budget = json.loads((result.run_dir / "metrics.json").read_text())["budget"]
    decision = next(d for d in budget["decisions"] if d["event"] == "fine_tune_epochs")
    assert decision["epochs"] == 3 and budget["reserve_s"] > 0


def test_epochs_that_fit_counts_whole_epochs_after_the_reserve_and_a_retrace():
    epoch = EpochTime(train_s=60.0, val_s=5.0, first_step_extra_s=10.0)  # a steady epoch: 55 s
    assert RunBudget.epochs_that_fit(epoch, left_s=300, reserve_s=40, most=10) == 4   # (300-40-10)/55
    assert RunBudget.epochs_that_fit(epoch, left_s=300, reserve_s=40, most=2) == 2
    assert RunBudget.epochs_that_fit(epoch, left_s=30, reserve_s=40, most=10) == 0


def test_finish_reserve_grows_with_the_images_scored():
    small = finish_reserve(2.0, 100, n_train=700, n_test=200, tta_views=0, ood=False)
    more = finish_reserve(2.0, 100, n_train=700, n_test=200, tta_views=1, ood=True)
    assert more - small == pytest.approx(0.02 * (300 + 800))


def test_budget_must_be_positive():
    with pytest.raises(ConfigError, match="budget_minutes"):
        Recipe.from_dict({"train": {"budget_minutes": 0}})


def test_epoch_fits_guesses_a_training_epoch_from_the_prediction_speed():
    import time
    budget = RunBudget(minutes=1.0, start=time.perf_counter(), reserve_s=10.0)
    assert budget.epoch_fits(10 ** 9)  # nothing measured yet: the timed epoch decides
    budget.image_s = 0.01  # 2 x 0.01 s per image against ~50 s left after the reserve
    assert budget.epoch_fits(2000) and not budget.epoch_fits(3000)
