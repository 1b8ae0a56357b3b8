"""Examples stay short, compile, show their usage, and never overwrite without --overwrite."""
import ast
import py_compile
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
