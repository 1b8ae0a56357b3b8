"""Built-in recipes shipped with the package: the demo and the seeds' experiments.

``kerasclf train NAME`` / ``load_recipe(NAME)`` and ``kerasclf compare NAME`` find them by name
from any folder; ``kerasclf recipes`` lists them. Recipes that read your files leave the path
out: give it with ``--set data.path=FOLDER`` (the recipe's description and comments say which key).

Example:
    >>> "cifar100_simple_cnn" in list_builtin()
    True
    >>> builtin_path("demo").name
    'demo.yaml'
    >>> describe()["demo"]
    'simple_cnn on the bundled digits, 70/10/20 stratified split'
"""
from __future__ import annotations

from pathlib import Path

import yaml

from kerasclf.errors import ConfigError

__all__ = ["builtin_path", "describe", "list_builtin"]

_HERE = Path(__file__).parent


def list_builtin() -> list[str]:
    """Names of the built-in recipes (their file stems), sorted."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def builtin_path(name: str) -> Path | None:
    """Path of a built-in recipe by name (``demo`` or ``demo.yaml``), else ``None``."""
    p = _HERE / (name if name.endswith(".yaml") else f"{name}.yaml")
    return p if p.is_file() else None


def describe() -> dict[str, str]:
    """Each built-in recipe's name and its one-line ``description``.

    Raises:
        ConfigError: a built-in recipe is not valid YAML or lacks a description.
    """
    out = {}
    for name in list_builtin():
        path = _HERE / f"{name}.yaml"
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"built-in recipe {path} is not valid YAML ({exc}); reinstall kerasclf") from None
        text = str(raw.get("description") or "").strip()
        if not text:
            raise ConfigError(f"built-in recipe {path} has no 'description'; add one line describing it")
        out[name] = text
    return out
