"""Figures as PNG files: training curves, confusion matrix, per-class bars, image galleries.

Everything draws on a :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
backend switch, no display needed), and every PNG is at most :data:`MAX_SIDE_PX` pixels a side.

Example:
    >>> p = plot_confusion([0, 1, 1], [0, 1, 0], ["cat", "dog"], "/tmp/cm.png")  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.analysis._figure import MAX_SIDE_PX
from kerasclf.analysis._figure import new_figure as _new_figure
from kerasclf.analysis._figure import save_figure as _save
from kerasclf.analysis.explain import overlay as _overlay
from kerasclf.analysis.metrics import confusion_fractions
from kerasclf.errors import DataError

__all__ = ["plot_history", "plot_histories", "plot_confusion", "plot_gallery", "plot_per_class", "read_history",
           "MAX_SIDE_PX"]

def _done(fig: Any, path: str | Path, return_figure: bool) -> Any:
    """Save; return the path, or ``(path, figure)`` when the caller asked for the figure (tests
    and notebooks read its axes, labels and plotted data back)."""
    saved = _save(fig, path)
    return (saved, fig) if return_figure else saved


def _read_csv(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise DataError(f"{path}: history file not found; pass the CSVLogger file of the run")
    out: dict[str, list[float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch") == "epoch":  # a repeated header from an appended log
                continue
            for k, v in row.items():
                if k is None:
                    continue
                try:
                    out.setdefault(k, []).append(float(v))
                except (TypeError, ValueError):
                    out.setdefault(k, []).append(float("nan"))
    return out


def read_history(history: Mapping[str, Sequence[float]] | str | Path) -> dict[str, list[float]]:
    """A history as ``{metric: [value per epoch]}`` from a dict or a Keras CSVLogger file.

    Example:
        >>> read_history({"loss": [1, 0.5]})
        {'loss': [1.0, 0.5]}
    """
    if isinstance(history, (str, Path)):
        return _read_csv(Path(history))
    if hasattr(history, "history") and isinstance(history.history, Mapping):  # keras History
        history = history.history
    return {str(k): [float(x) for x in v] for k, v in dict(history).items()}


def _batch_series(batch_losses: Any) -> np.ndarray:
    if isinstance(batch_losses, (str, Path)):
        rows = _read_csv(Path(batch_losses))
        return np.asarray(rows.get("loss", []), dtype="float64")
    return np.asarray(batch_losses, dtype="float64").reshape(-1)


def plot_history(history: Mapping[str, Sequence[float]] | str | Path, path: str | Path, *,
                 batch_losses: Sequence[float] | str | Path | None = None, return_figure: bool = False) -> Any:
    """Training curves: loss and every other metric, train against validation, per epoch.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...], ...}``, a Keras
            ``History``, or the path of a Keras ``CSVLogger`` file (column ``epoch`` first).
        path: PNG file to write.
        batch_losses: training loss per batch (iteration), a sequence or a CSV with a ``loss``
            column (``kerasclf`` writes ``epoch,batch,loss``); drawn in its own panel.

    Returns:
        the PNG path; ``(path, matplotlib Figure)`` with ``return_figure=True``.

    Example:
        >>> plot_history({"loss": [1.0, 0.6], "val_loss": [1.1, 0.8], "accuracy": [0.5, 0.7],
        ...               "val_accuracy": [0.4, 0.6]}, "/tmp/curves.png")  # doctest: +SKIP
        PosixPath('/tmp/curves.png')
    """
    h = read_history(history)
    h.pop("epoch", None)
    bases = [k for k in h if not k.startswith("val_") and k not in ("lr", "learning_rate")]
    bases += [k[4:] for k in h if k.startswith("val_") and k[4:] not in h]
    if "loss" in bases:
        bases.remove("loss")
        bases.insert(0, "loss")
    bases = bases[:4]
    batch = _batch_series(batch_losses) if batch_losses is not None else None
    panels = len(bases) + (1 if batch is not None and batch.size else 0)
    if panels == 0:
        raise DataError("the history has no metric to plot; it needs at least a 'loss' column")
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = _new_figure((4.6 * cols, 3.4 * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]
    for ax, name in zip(axes, bases):
        for key, label, style in ((name, "train", "-o"), (f"val_{name}", "validation", "-s")):
            if key in h and len(h[key]):
                ys = np.asarray(h[key], dtype="float64")
                ax.plot(np.arange(1, len(ys) + 1), ys, style, ms=3, label=label)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if batch is not None and batch.size:
        ax = axes[-1]
        ax.plot(np.arange(1, batch.size + 1), batch, lw=0.8, color="#4c72b0", label="per batch")
        if batch.size >= 20:
            k = max(5, batch.size // 50)
            smooth = np.convolve(batch, np.ones(k) / k, mode="valid")
            ax.plot(np.arange(k, batch.size + 1), smooth, lw=1.6, color="#c44e52", label=f"mean of {k}")
        ax.set_title("training loss per iteration")
        ax.set_xlabel("iteration (batch)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _done(fig, path, return_figure)


def plot_histories(histories: Mapping[str, Mapping[str, Sequence[float]] | str | Path], path: str | Path, *,
                   metrics: Sequence[str] = ("loss", "accuracy"), return_figure: bool = False) -> Any:
    """Several models' training curves on shared axes: one panel per metric, one colour per model
    (validation solid, training dashed), so the models can be compared by eye.

    Args:
        histories: ``{model label: history}`` (dicts or ``CSVLogger`` files, as :func:`plot_history`).
        path: PNG file to write.
        metrics: the panels; a metric no model logged is left out.

    Returns:
        the PNG path; ``(path, matplotlib Figure)`` with ``return_figure=True``.

    Example:
        >>> plot_histories({"a": {"loss": [1, .5], "val_loss": [1.1, .7]},
        ...                 "b": {"loss": [.9, .4], "val_loss": [1.0, .8]}}, "/tmp/curves.png")  # doctest: +SKIP
        PosixPath('/tmp/curves.png')
    """
    hs = {str(label): read_history(h) for label, h in histories.items()}
    names = [m for m in metrics if any(m in h or f"val_{m}" in h for h in hs.values())]
    if not hs or not names:
        raise DataError(f"no model history has any of {', '.join(metrics)}; pass the runs' history.csv files")
    fig = _new_figure((5.2 * len(names), 3.8))
    colours = [f"C{i % 10}" for i in range(len(hs))]
    for j, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), j + 1)
        for colour, (label, h) in zip(colours, hs.items()):
            for key, style, suffix in ((f"val_{name}", "-", "val"), (name, "--", "train")):
                ys = np.asarray(h.get(key, []), dtype="float64")
                if ys.size:
                    ax.plot(np.arange(1, ys.size + 1), ys, style, color=colour, lw=1.4 if suffix == "val" else 1.0,
                            marker="o" if suffix == "val" else "x", ms=3, label=f"{label} ({suffix})")
        ax.set_title(name.replace("_", " ") + " (solid: validation, dashed: training)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _done(fig, path, return_figure)


def plot_confusion(y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str],
                   path: str | Path, *, normalize: bool = True, return_figure: bool = False) -> Any:
    """Confusion matrix, rows = true class; as fractions of each true class when ``normalize``.

    Cells carry numbers up to 25 classes; beyond that the colour alone tells and tick labels
    thin out so that up to ~100 classes stay readable.

    Args:
        y_true: true class ids.
        y_pred: predicted class ids.
        class_names: one name per class.
        path: PNG file to write.
        normalize: fractions of the true class (each row sums to 1) instead of counts.

    Returns:
        the PNG path; ``(path, matplotlib Figure)`` with ``return_figure=True``.

    Example:
        >>> plot_confusion([0, 1, 1], [0, 1, 0], ["cat", "dog"], "/tmp/cm.png")  # doctest: +SKIP
        PosixPath('/tmp/cm.png')
    """
    names = [str(c) for c in class_names]
    k = len(names)
    yt, yp = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if len(yt) != len(yp):
        raise DataError(f"{len(yt)} true labels but {len(yp)} predictions")
    if len(yt) and max(yt.max(), yp.max()) >= k:
        raise DataError(f"class id {int(max(yt.max(), yp.max()))} but only {k} class names; pass all names")
    counts, frac = confusion_fractions(yt, yp, k)
    mat = frac if normalize else counts
    side = float(np.clip(2.5 + 0.26 * k, 4.5, 18.0))
    fig = _new_figure((side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, mat.max()), interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    step = max(1, math.ceil(k / 60))
    fs = float(np.clip(11 - k / 10, 4.5, 10))
    ticks = np.arange(0, k, step)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    short = [n if len(n) <= 18 else n[:16] + "…" for n in names]
    ax.set_xticklabels([short[i] for i in ticks], rotation=90, fontsize=fs)
    ax.set_yticklabels([short[i] for i in ticks], fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix" + (" (fraction of each true class)" if normalize else " (counts)"))
    if k <= 25:
        for i in range(k):
            for j in range(k):
                v = mat[i, j]
                if v == 0:
                    continue
                txt = f"{v:.2f}" if normalize else str(int(v))
                dark = v > (0.5 if normalize else mat.max() / 2)
                ax.text(j, i, txt, ha="center", va="center", fontsize=max(5.0, fs - 1),
                        color="white" if dark else "black")
    fig.tight_layout()
    return _done(fig, path, return_figure)


def plot_per_class(metrics: Mapping[str, Any], path: str | Path, *, keys: Sequence[str] = ("precision", "recall", "f1"),
                   max_classes: int = 60, return_figure: bool = False) -> Any:
    """Grouped bars of per-class (per-attribute) precision, recall and F1 from
    :func:`~kerasclf.analysis.metrics.classification_metrics`.

    With more than ``max_classes`` classes, the ``max_classes`` lowest-F1 classes are drawn.

    Example:
        >>> from kerasclf.analysis.metrics import classification_metrics
        >>> m = classification_metrics([0, 1], [[0.2], [0.9]], "binary", ["a", "b"])
        >>> plot_per_class(m, "/tmp/per_class.png")  # doctest: +SKIP
        PosixPath('/tmp/per_class.png')
    """
    per = dict(metrics["per_class"])
    names = list(per)
    if len(names) > max_classes:
        names = sorted(names, key=lambda n: per[n].get("f1", 0.0))[:max_classes]
    n = len(names)
    fig = _new_figure((max(6.0, min(18.0, 1.2 + 0.28 * n * len(keys) / 1.5)), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(keys)
    x = np.arange(n)
    for i, key in enumerate(keys):
        ax.bar(x + i * width - 0.4 + width / 2, [per[c].get(key, 0.0) for c in names], width, label=key)
    ax.set_xticks(x)
    ax.set_xticklabels([c if len(c) <= 16 else c[:14] + "…" for c in names], rotation=90 if n > 8 else 0,
                       fontsize=float(np.clip(10 - n / 10, 5, 9)))
    ax.set_ylim(0, 1.05)
    ax.set_title("per-class metrics" + (f" ({n} lowest F1)" if n < len(per) else ""))
    ax.legend(fontsize=8, ncols=len(keys))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _done(fig, path, return_figure)


def _as_display(img: Any) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype == np.uint8:
        return a
    a = a.astype("float64")
    if a.size and a.max() <= 1.0 + 1e-6 and a.min() >= 0.0:
        a = a * 255.0
    return np.clip(a, 0, 255).astype("uint8")


def plot_gallery(images: Sequence[Any] | np.ndarray, titles: Sequence[str], path: str | Path, *,
                 overlays: np.ndarray | Sequence[Any] | Mapping[str, Any] | None = None, cols: int = 5,
                 return_figure: bool = False) -> Any:
    """A grid of images with titles, optionally each followed by its attribution overlays.

    Args:
        images: ``(N, H, W, 3)`` (uint8 0..255, float 0..255 or 0..1) or a list of such images.
        titles: one (possibly multi-line) title per image.
        path: PNG file to write.
        overlays: heatmaps ``(N, H, W)`` in 0..1 blended over each image, or ``{method:
            heatmaps}`` to show one panel per method next to each image (a ready uint8 RGB image
            is drawn as is).
        cols: images per row (reduced when overlays add panels, to keep the figure readable).

    Returns:
        the PNG path; ``(path, matplotlib Figure)`` with ``return_figure=True``.

    Example:
        >>> import numpy as np
        >>> plot_gallery(np.zeros((2, 8, 8, 3), "uint8"), ["a", "b"], "/tmp/g.png")  # doctest: +SKIP
        PosixPath('/tmp/g.png')
    """
    imgs = list(images)
    if not imgs:
        raise DataError("the gallery has no images to draw")
    if len(titles) != len(imgs):
        raise DataError(f"{len(imgs)} images but {len(titles)} titles")
    if overlays is None:
        methods: dict[str, Any] = {}
    elif isinstance(overlays, Mapping):
        methods = {str(k): v for k, v in overlays.items()}
    else:
        methods = {"": overlays}
    for name, maps in methods.items():
        if len(maps) != len(imgs):
            raise DataError(f"overlay '{name or 'heatmaps'}' has {len(maps)} maps for {len(imgs)} images")
    per_item = 1 + len(methods)
    items_per_row = max(1, min(cols, 8 // per_item if per_item > 1 else cols, len(imgs)))
    ncols = items_per_row * per_item
    nrows = math.ceil(len(imgs) / items_per_row)
    cell = 2.0 if ncols <= 5 else 1.65
    lines = max(str(t).count("\n") + 1 for t in titles)
    fig = _new_figure((cell * ncols, (cell + 0.2 + 0.17 * lines) * nrows))
    for i, img in enumerate(imgs):
        r, c = divmod(i, items_per_row)
        base = _as_display(img)
        panels = [("", base)]
        for name, maps in methods.items():
            m = np.asarray(maps[i])
            panels.append((name, m if m.ndim == 3 and m.dtype == np.uint8 else _overlay(base, m)))
        for j, (name, pic) in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c * per_item + j + 1)
            ax.imshow(pic, cmap="gray" if pic.ndim == 2 else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(str(titles[i]) if j == 0 else name, fontsize=9 if ncols <= 8 else 7)
    fig.tight_layout(pad=0.4)
    return _done(fig, path, return_figure)
