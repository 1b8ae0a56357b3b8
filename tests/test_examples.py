"""Examples stay short, compile, show their usage, and never overwrite without --overwrite."""
import ast
import py_compile
import re
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_the_four_use_cases_are_there():
    assert {p.stem for p in EXAMPLES} >= {"cifar100", "cats_vs_dogs", "celeba_attributes", "own_folder"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_compiles_and_is_short(path):
    py_compile.compile(str(path), doraise=True)
    text = path.read_text()
    assert len(text.splitlines()) < 80
    assert "python examples/" in text  # the docstring shows how to run it


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", None)) == name]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_overwrites_only_with_its_overwrite_flag(path):
    """Like the CLI: an existing run/comparison folder is replaced only when the user passes --overwrite."""
    tree = ast.parse(path.read_text())
    flags = [c for c in _calls(tree, "add_argument") if c.args and getattr(c.args[0], "value", None) == "--overwrite"]
    assert len(flags) == 1, "add parser.add_argument('--overwrite', action='store_true')"
    assert {k.arg: getattr(k.value, "value", None) for k in flags[0].keywords}.get("action") == "store_true"
    runs = _calls(tree, "train") + _calls(tree, "compare")
    assert runs, "the example runs train() or compare()"
    for call in runs:
        value = {k.arg: k.value for k in call.keywords}.get("overwrite")
        assert value is not None and ast.unparse(value) == "args.overwrite", ast.unparse(call)


def _quick_args(name, assets):
    return {"cats_vs_dogs": [str(assets / "cats_vs_dogs")], "celeba_attributes": [str(assets / "celeba")],
            "cifar100": ["simple"], "own_folder": [str(assets / "flowers")]}[name]


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) for p in EXAMPLES],
                         ids=lambda p: p.stem)  # 0.5-2 min each on 2 cores: `pytest -m slow`
def test_example_runs_quick(path, assets_dir, keras_home_with_mobilenet, tmp_path, monkeypatch, capsys):
    """Every example runs end to end with --quick (executed in this process, not just compiled):
    it trains, scores the test split and prints the figure and the run folder it wrote."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [path.name, *_quick_args(path.stem, assets_dir), "--quick",
                                      "--out", str(tmp_path / "runs")])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    figure = re.search(r"(test accuracy|mean attribute accuracy)[: ]+(\d\.\d+)", out)
    assert figure, out
    folder = re.search(r"run folder: ([^\s)]+)", out)
    written = Path(folder.group(1)) if folder else None
    assert written and ((written / "model.keras").is_file() or (written / "report.html").is_file()), out
    assert str(tmp_path) in str(written)  # it wrote where --out said, nothing in the checkout
