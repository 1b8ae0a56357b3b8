"""The package's layering: imports run one way between its parts, and at module top."""
import ast
import re
from collections import defaultdict
from pathlib import Path

import kerasclf

ROOT = Path(kerasclf.__file__).parent

#: each part may import only the parts below it (DESIGN.md's layers)
LAYERS = [
    {"errors", "_startup", "_files", "_progress"},
    {"data", "zoo", "recipes", "formats"},
    {"security"},
    {"io", "testing"},
    {"export"},
    {"analysis"},
    {"features", "train", "predict"},
    {"candidates"},
    {"evaluate", "experiment"},
    {"review"},
    {"cli"},
]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kerasclf"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kerasclf.") and not node.level:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("kerasclf."))


def test_parts_import_only_downwards():
    level = {part: i for i, parts in enumerate(LAYERS) for part in parts}
    wrong = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        if path == ROOT / "__init__.py":  # the package imports what registers custom objects
            continue
        me = _part(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
        for module in _imports(path):
            other = _part(module)
            if other != me and level[other] >= level[me]:
                wrong[f"{me} -> {other}"].add(path.name)
    assert not wrong, f"imports that run up or sideways: {dict(wrong)}"


#: the one deferred import: kerasclf.train.fit needs TensorFlow, optional when Keras runs on JAX
DEFERRED = {"train/__init__.py"}


def test_the_package_own_imports_are_at_module_top():
    local = [f"{p.relative_to(ROOT)}:{n}" for p in ROOT.rglob("*.py") if str(p.relative_to(ROOT)) not in DEFERRED
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.match(r"^\s+(from kerasclf|import kerasclf)", line)]
    assert not local, f"function-local imports of kerasclf modules: {local}"
