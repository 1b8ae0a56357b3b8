"""Progress bars: drawn with a count and a rate on a terminal, silent in a pipe or with --quiet."""
import argparse
import io

import pytest

from kerasclf import _progress
from kerasclf._progress import fit_verbose
from kerasclf.cli import build_parser, main
from kerasclf.data.spec import DataSpec
from kerasclf.io import save_model
from kerasclf.predict import predict_paths
from kerasclf.testing import square_images, tiny_cnn, write_image_folder
from kerasclf.train import Recipe, train


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture()
def folder_and_model(tmp_path):
    folder = write_image_folder(tmp_path / "data", n_per_class=4, size=16, classes=3)
    model = save_model(tiny_cnn(3), tmp_path / "m.keras",
                       meta={"class_names": ["class0", "class1", "class2"], "task": "multiclass", "image_size": [16, 16]})
    return folder, model


def test_predict_on_a_folder_draws_a_bar_only_on_a_terminal(folder_and_model, monkeypatch):
    folder, model = folder_and_model
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.delenv("KERASCLF_QUIET", raising=False)
    rows = predict_paths(model, [folder], batch_size=4)
    drawn = term.getvalue()
    assert len(rows) == 12 and "predict" in drawn and "/12" in drawn and "img/s" in drawn, drawn  # count, rate

    _progress.set_quiet(True)  # the CLI's --quiet
    try:
        term.truncate(0), term.seek(0)
        predict_paths(model, [folder], batch_size=4)
        assert term.getvalue() == ""
    finally:
        _progress.set_quiet(False)

    pipe = io.StringIO()  # not a terminal: a log file stays clean
    monkeypatch.setattr("sys.stderr", pipe)
    predict_paths(model, [folder], batch_size=4)
    assert pipe.getvalue() == ""


def test_check_bar_and_the_global_quiet_flag(folder_and_model, monkeypatch, capsys):
    folder, _ = folder_and_model
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert main(["check", str(folder)]) == 0
    assert "check" in term.getvalue() and "/12" in term.getvalue() and "file/s" in term.getvalue()
    term.truncate(0), term.seek(0)
    try:
        assert main(["--quiet", "check", str(folder)]) == 0
        assert term.getvalue() == ""
        _progress.set_quiet(False)
        assert main(["check", str(folder), "--quiet"]) == 0  # after the command too
        assert term.getvalue() == ""
    finally:
        _progress.set_quiet(False)


def test_every_command_takes_quiet_before_or_after_it():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(commands) > 10
    for name, sp in commands.items():
        assert "--quiet" in sp._option_string_actions, name
    assert parser.parse_args(["predict", "m.keras", "x.png", "--quiet"]).quiet is True
    assert parser.parse_args(["--quiet", "predict", "m.keras", "x.png"]).quiet is True  # not undone by the command
    assert parser.parse_args(["predict", "m.keras", "x.png"]).quiet is False


def test_training_output_in_a_log_file_is_one_line_per_epoch(tmp_path, capsys, monkeypatch):
    """train.verbose 1 drew Keras's bar with carriage returns even into a file (hundreds of fragments per
    epoch); with stdout not a terminal each epoch is one line. On a terminal the bar stays."""
    monkeypatch.delenv("KERASCLF_QUIET", raising=False)
    recipe = Recipe.from_dict({"name": "log", "output_dir": str(tmp_path), "model": "simple_cnn",
                               "data": {"source": "digits", "image_size": [24, 24], "batch_size": 64},
                               "train": {"epochs": 2, "verbose": 1, "ood": False, "tensorboard": False}})
    train(recipe, spec=DataSpec.from_arrays(*square_images(40, 24, 3)))
    out = capsys.readouterr().out
    assert "\r" not in out and "\b" not in out, repr(out[:300])
    assert len([ln for ln in out.splitlines() if " - loss: " in ln]) == 2, out  # one line per epoch
    assert fit_verbose(0) == 0 and fit_verbose(2) == 2
    monkeypatch.setattr("sys.stdout", Terminal())
    assert fit_verbose(1) == 1  # a terminal keeps Keras's bar
    _progress.set_quiet(True)
    try:
        assert fit_verbose(1) == 2  # --quiet: no bar
    finally:
        _progress.set_quiet(False)
