"""Predict on image files and folders with a saved model; evaluate a saved model on a folder.

Example:
    >>> from kerasclf.predict import predict_paths             # doctest: +SKIP
    >>> rows = predict_paths("runs/demo/model.keras", ["new_images/"], out_csv="predictions.csv")
    >>> rows[0]["class"], rows[0]["probability"]
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.errors import DataError, ModelError

__all__ = ["collect_image_paths", "class_probabilities", "predict_paths", "format_table",
           "folder_for_model", "evaluate_model"]


def collect_image_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) under the given folders."""
    from kerasclf.data.reader import IMAGE_EXTENSIONS

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):  # does not follow symlinked folders: no loops
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [Path(root) / f for f in files
                          if not f.startswith(".") and f.lower().endswith(tuple(IMAGE_EXTENSIONS))]
            out += sorted(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; check the path")
    if not out:
        raise DataError(f"no image files found in {', '.join(map(str, paths))}; "
                        f"supported: {', '.join(IMAGE_EXTENSIONS)}")
    return out


def class_probabilities(outputs: np.ndarray, task: str) -> np.ndarray:
    """Per-class probabilities from raw model outputs (binary: ``[1-p, p]``)."""
    outputs = np.asarray(outputs, dtype="float64")
    if task == "binary" and outputs.shape[-1] == 1:
        return np.concatenate([1.0 - outputs, outputs], axis=-1)
    return outputs


def predict_paths(model: str | Path | Any, paths: Sequence[str | Path], *, top_k: int = 3,
                  batch_size: int = 32, out_csv: str | Path | None = None,
                  threshold: float | None = None) -> list[dict[str, Any]]:
    """Classify image files/folders; one row per image: path, class, probability, top-k.

    Unreadable files get a row with ``class`` empty and the reason in ``error``; nothing
    is skipped silently. With ``out_csv`` the rows are also written as CSV.
    """
    from kerasclf.data.pipeline import image_batches_for_predict
    from kerasclf.io import LoadedModel, load_model

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    files = collect_image_paths(paths)
    names, task = loaded.class_names, loaded.task
    thr = float(threshold if threshold is not None else loaded.meta.get("threshold", 0.5))
    rows: list[dict[str, Any]] = []
    batches = image_batches_for_predict([str(f) for f in files], loaded.image_size, batch_size)
    for ok_paths, images in batches:
        if len(ok_paths) == 0:
            continue
        probs = class_probabilities(loaded.predict(np.asarray(images)), task)
        for path, p in zip(ok_paths, probs):
            order = np.argsort(-p)[:max(1, top_k)]
            if task == "multilabel":
                on = [names[i] for i in np.flatnonzero(p >= thr)]
                label, prob = "|".join(on), float(np.mean(p[p >= thr])) if on else 0.0
            else:
                label, prob = names[int(order[0])], float(p[order[0]])
            rows.append({"path": str(path), "class": label, "probability": round(prob, 6),
                         "top_k": "|".join(f"{names[i]}:{p[i]:.4f}" for i in order), "error": ""})
    for path, reason in getattr(batches, "skipped", []):
        rows.append({"path": str(path), "class": "", "probability": "", "top_k": "", "error": reason})
    order_of = {str(f): i for i, f in enumerate(files)}
    rows.sort(key=lambda r: order_of.get(r["path"], len(order_of)))
    if out_csv is not None:
        out_csv = Path(out_csv)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        with out_csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "class", "probability", "top_k", "error"])
            w.writeheader()
            w.writerows(rows)
    return rows


def format_table(rows: Sequence[dict[str, Any]], limit: int | None = 50) -> str:
    """A plain-text table of prediction rows (first ``limit`` rows)."""
    shown = list(rows if limit is None else rows[:limit])
    head = ("path", "class", "probability")
    cells = [[str(r["path"]), r["class"] or f"ERROR: {r['error']}", str(r["probability"])] for r in shown]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 60)
    line = lambda c: "  ".join(str(x)[-widths[i]:].ljust(widths[i]) for i, x in enumerate(c))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(c) for c in cells]
    if limit is not None and len(rows) > limit:
        out.append(f"... {len(rows) - limit} more rows (see the CSV)")
    return "\n".join(out)


def folder_for_model(loaded: Any, data: str | Path) -> tuple[Any, np.ndarray]:
    """A folder of class subfolders read for a saved model: ``(spec, remap)`` where
    ``remap[folder_label]`` is the model's class index. Folder classes must be model classes
    (by name; a subset in any order is fine), else a one-line ModelError names them."""
    from kerasclf.data.sources import from_folder

    spec = from_folder(data)
    names = loaded.class_names
    unknown = [c for c in spec.class_names if c not in names]
    if unknown:
        raise ModelError(f"{data}: class folder(s) {', '.join(unknown)} are not classes of {loaded.path} "
                         f"(it knows: {', '.join(names[:20])}); rename the folders to match")
    return spec, np.array([names.index(c) for c in spec.class_names])


def evaluate_model(model: str | Path, data: str | Path, *, batch_size: int = 32) -> dict[str, Any]:
    """Accuracy and per-class metrics of a saved model on a folder of class subfolders.

    The folder's class names must be among the model's; they are mapped by name, so the
    folder may hold a subset of the classes in any order.
    """
    from kerasclf.analysis.metrics import classification_metrics
    from kerasclf.data.pipeline import make_dataset
    from kerasclf.io import load_model

    loaded = load_model(model)
    spec, remap = folder_for_model(loaded, data)
    names = loaded.class_names
    ds = make_dataset(spec, image_size=loaded.image_size, batch_size=batch_size, shuffle=False, cache=None)
    ys, ps = [], []
    for images, labels in ds:
        ps.append(loaded.predict(np.asarray(images)))
        ys.append(remap[np.asarray(labels).astype(int).reshape(-1)])
    y, p = np.concatenate(ys), np.concatenate(ps)
    if loaded.task == "binary":
        y = y.reshape(-1, 1)
    metrics = classification_metrics(y, p, loaded.task, names)
    metrics["n_images"] = int(len(y))
    metrics["skipped_files"] = len(spec.skipped)
    return metrics
