"""Built-in recipes shipped with the package (``kerasclf train demo`` finds ``demo.yaml``)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["builtin_path", "list_builtin"]

_HERE = Path(__file__).parent


def list_builtin() -> list[str]:
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def builtin_path(name: str) -> Path | None:
    """Path of a built-in recipe by name (``demo`` or ``demo.yaml``), else ``None``."""
    p = _HERE / (name if name.endswith(".yaml") else f"{name}.yaml")
    return p if p.is_file() else None
