"""Figure helpers shared by every plotting module: a headless matplotlib Figure and a bounded save.

Example:
    >>> fig = new_figure((2, 2))
    >>> fig.add_subplot().plot([0, 1])  # doctest: +ELLIPSIS
    [<matplotlib.lines.Line2D object at ...>]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure", "MAX_SIDE_PX", "DPI"]

MAX_SIDE_PX = 2000
DPI = 110


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure with its own Agg canvas (no pyplot state, safe in threads and tests)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = DPI) -> Path:
    """Save as PNG with a dpi that keeps both sides within :data:`MAX_SIDE_PX`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = fig.get_size_inches()
    dpi = max(30, min(dpi, int(MAX_SIDE_PX / max(w, h))))
    fig.savefig(path, dpi=dpi, format="png")
    return path
