"""Examples stay short, compile, and show their usage."""
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
