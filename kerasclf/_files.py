"""Small file helpers shared by the task modules (CSV rows).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.csv"
    >>> write_rows(p, [{"path": "a.jpg", "class": "cat"}], ["path", "class"]).read_text().splitlines()
    ['path,class', 'a.jpg,cat']
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_rows"]


def write_rows(path: str | Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> Path:
    """Write dict rows as CSV with a header (the parent folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)
    return path
