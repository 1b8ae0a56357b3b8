"""Predict on image files and folders with a saved model (scoring on labelled data: :mod:`kerasclf.evaluate`).

Example:
    >>> from kerasclf.predict import predict_paths             # doctest: +SKIP
    >>> rows = predict_paths("runs/demo/model.keras", ["new_images/"], out_csv="predictions.csv")
    >>> rows[0]["class"], rows[0]["probability"]
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf._files import write_rows
from kerasclf._progress import progress
from kerasclf.data.pipeline import file_batches
from kerasclf.data.reader import collect_image_paths
from kerasclf.analysis.ood import load_detector, model_outputs, ood_model, scored_model
from kerasclf.export.runtimes import open_model
from kerasclf.io import LoadedModel, ModelFacts

__all__ = ["class_probabilities", "predict_paths", "format_table"]


def class_probabilities(outputs: np.ndarray, task: str) -> np.ndarray:
    """Per-class probabilities from raw model outputs (binary: ``[1-p, p]``)."""
    outputs = np.asarray(outputs, dtype="float64")
    if task == "binary" and outputs.shape[-1] == 1:
        return np.concatenate([1.0 - outputs, outputs], axis=-1)
    return outputs


def predict_paths(model: str | Path | Any, paths: Sequence[str | Path], *, top_k: int = 3,
                  batch_size: int = 32, out_csv: str | Path | None = None,
                  threshold: float | None = None, runtime: str = "auto",
                  facts: ModelFacts | None = None) -> list[dict[str, Any]]:
    """Classify image files/folders; one row per image: path, class, probability, top-k.

    ``model`` may be a ``.keras``/``.h5`` file, a SavedModel folder or an exported ``.onnx`` /
    ``.tflite`` / ``.xml`` artefact, run in ``runtime`` (``auto``: the fastest installed); the
    rows are the same whichever runs it. ``facts`` tells what a model kerasclf did not save
    cannot (``--classes``, ``--task``, ``--image-size``, ``--preprocess``).

    Unreadable files get a row with ``class`` empty and the reason in ``error``; nothing
    is skipped silently. With ``out_csv`` the rows are also written as CSV.
    """
    loaded = model if isinstance(model, LoadedModel) else open_model(model, runtime, facts=facts)
    files = collect_image_paths(paths)
    names, task = loaded.class_names, loaded.task
    thr = float(threshold if threshold is not None else loaded.meta.get("threshold", 0.5))
    detector = load_detector(loaded)  # the run's OOD flag (model.ood.npz beside the model), if it has one
    scored = scored_model(loaded) if detector is not None else None  # a run's TTA model: its plain model
    ood_net = ood_model(scored) if detector is not None else None
    rows: list[dict[str, Any]] = []
    batches = file_batches([str(f) for f in files], loaded.image_size, batch_size)
    bar = progress(total=len(files), desc="predict")  # a bar on a terminal only (kerasclf._progress)
    for ok_paths, images in batches:
        if len(ok_paths) == 0:
            continue
        if detector is not None:  # one pass gives the features (OOD score) and the probabilities
            outs = model_outputs(scored, np.asarray(images), batch_size=batch_size, net=ood_net)
            probs = class_probabilities(outs["probs"] if scored is loaded.model else loaded.predict(np.asarray(images)),
                                        task)
            ood_scores, ood_flags = detector.flag(outs)
        else:
            probs = class_probabilities(loaded.predict(np.asarray(images)), task)
        bar.update(len(ok_paths))
        for j, (path, p) in enumerate(zip(ok_paths, probs)):
            order = np.argsort(-p)[:max(1, top_k)]
            if task == "multilabel":
                on = [names[i] for i in np.flatnonzero(p >= thr)]
                label, prob = "|".join(on), float(np.mean(p[p >= thr])) if on else 0.0
            else:
                label, prob = names[int(order[0])], float(p[order[0]])
            rows.append({"path": str(path), "class": label, "probability": round(prob, 6),
                         "top_k": "|".join(f"{names[i]}:{p[i]:.4f}" for i in order), "error": ""})
            if detector is not None:
                rows[-1].update(ood_score=round(float(ood_scores[j]), 4), ood=bool(ood_flags[j]))
    bar.close()
    for path, reason in batches.skipped:
        rows.append({"path": str(path), "class": "", "probability": "", "top_k": "", "error": reason,
                     **({"ood_score": "", "ood": ""} if detector is not None else {})})
    order_of = {str(f): i for i, f in enumerate(files)}
    rows.sort(key=lambda r: order_of.get(r["path"], len(order_of)))
    if out_csv is not None:
        write_rows(out_csv, rows, ["path", "class", "probability", "top_k", "error"]
                   + (["ood_score", "ood"] if detector is not None else []))
    return rows


def format_table(rows: Sequence[dict[str, Any]], limit: int | None = 50) -> str:
    """A plain-text table of prediction rows (first ``limit`` rows)."""
    shown = list(rows if limit is None else rows[:limit])
    head: tuple[str, ...] = ("path", "class", "probability")
    cells = [[str(r["path"]), r["class"] or f"ERROR: {r['error']}", str(r["probability"])] for r in shown]
    if any("ood" in r for r in rows):  # the run's OOD flag: mark images unlike its training data
        head += ("ood_score",)
        for c, r in zip(cells, shown):
            c.append(f"{r['ood_score']}{'  !! OOD' if r['ood'] is True else ''}")
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    widths[0] = min(widths[0], 60)
    line = lambda c: "  ".join(str(x)[-widths[i]:].ljust(widths[i]) for i, x in enumerate(c))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(c) for c in cells]
    if limit is not None and len(rows) > limit:
        out.append(f"... {len(rows) - limit} more rows (see the CSV)")
    flagged = sum(r.get("ood") is True for r in rows)
    if flagged:
        out.append(f"!! OOD: {flagged} image(s) look unlike the model's training data (ood_score above the "
                   f"threshold fitted on its validation split); their predictions are not to be trusted")
    return "\n".join(out)
