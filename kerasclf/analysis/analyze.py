"""Analyse a trained model on a labelled split: every figure, ``metrics.json`` and ``report.html``.

:func:`analyze` is a thin composition of the public pieces of :mod:`kerasclf.analysis`
(metrics, plots, explain, embed, calibration, report); each can be used on its own.

Files written under ``out_dir``::

    metrics.json                 metrics of the split (+ calibration, thresholds, file list)
    report.html                  the self-contained report
    figures/curves.png           training curves (when a history is given)
    figures/confusion.png        confusion matrix as fractions (binary / multiclass)
    figures/per_class.png        per-class (per-attribute) precision / recall / F1
    figures/gallery_*.png        correct (random), incorrect (random), highest loss, with overlays
    figures/embedding_*.png      PCA and t-SNE of the ``features`` layer
    figures/reliability.png      reliability diagram (with temperature scaling when val data given)

Example:
    >>> result = analyze(model, (x_test, y_test), out_dir="runs/demo/analysis",
    ...                  class_names=["cat", "dog"], task="binary",
    ...                  history_csv="runs/demo/history.csv")     # doctest: +SKIP
    >>> result["report"]                                           # doctest: +SKIP
    PosixPath('runs/demo/analysis/report.html')
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.data.pipeline import split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError, KerasclfError
from kerasclf.zoo.cut import feature_model, input_size

from .calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_diagram,
)
from .embed import embed_features
from .explain import METHODS as EXPLAIN_METHODS
from .explain import explain
from .metrics import choose_thresholds, classification_metrics, per_sample_loss, probs_to_pred
from .plots import plot_confusion, plot_gallery, plot_history, plot_per_class
from .report import SECTION_IDS, Section, Table, gap_sentence, write_report

__all__ = ["analyze", "load_split"]


def load_split(data: Any, *, image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` from an ``(images, labels)`` pair or a :class:`~kerasclf.data.spec.DataSpec`.

    A spec is read with the one pipeline (:func:`kerasclf.data.pipeline.split_arrays`) at
    ``image_size`` (its own size for in-memory images when ``None``).

    Example:
        >>> import numpy as np
        >>> x, y = load_split((np.zeros((2, 4, 4, 3), "uint8"), [0, 1]))
        >>> x.shape, y.tolist()
        ((2, 4, 4, 3), [0, 1])
    """
    if isinstance(data, DataSpec):
        x, y = split_arrays(data, image_size=image_size)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        raise DataError("analysis data must be (images, labels) arrays or a DataSpec; "
                        "pass images= and labels=, or a spec from kerasclf.data")
    if x.ndim != 4 or len(x) != len(y):
        raise DataError(f"analysis data: images must be (N, H, W, C) with one label each; got {x.shape} "
                        f"and {len(y)} labels")
    if len(x) == 0:
        raise DataError("analysis data is empty; pass the validation or test split")
    return x, y


def _read_split(model: Any, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Image files are read at the model's own input size; in-memory images as they are."""
    files = isinstance(data, DataSpec) and data.images is None
    return load_split(data, image_size=input_size(model) if files else None)


def _predict(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    p = np.asarray(model.predict(x.astype("float32"), batch_size=batch_size, verbose=0), dtype="float64")
    return p.reshape(len(p), -1)


def _label_array(labels: Any, task: str) -> np.ndarray:
    """Int class ids ``(N,)``, or a 0/1 matrix for multilabel (one-hot and ``(N, 1)`` accepted)."""
    a = np.asarray(labels)
    if task == "multilabel":
        return (a > 0.5).astype("int64")
    if a.ndim == 2 and a.shape[1] > 1:
        return a.argmax(axis=1).astype("int64")
    return np.rint(a.reshape(len(a)).astype("float64")).astype("int64")


def _name(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


def _titles(idx: np.ndarray, y: np.ndarray, probs: np.ndarray, pred: np.ndarray, loss: np.ndarray,
            task: str, names: list[str], show_loss: bool) -> list[str]:
    out = []
    for i in idx:
        if task == "multilabel":
            t = ",".join(_name(names, k) for k in np.flatnonzero(y[i])[:3]) or "none"
            p = ",".join(_name(names, k) for k in np.flatnonzero(pred[i])[:3]) or "none"
            title = f"true: {t}\npred: {p}"
        else:
            conf = probs[i, 0] if task == "binary" and pred[i] == 1 else (
                1 - probs[i, 0] if task == "binary" else probs[i, pred[i]])
            title = f"true: {_name(names, int(y[i]))}\npred: {_name(names, int(pred[i]))} ({conf:.2f})"
        if show_loss:
            title += f"\nloss {loss[i]:.2f}"
        out.append(title)
    return out


def analyze(model: Any, data: Any = None, *, out_dir: str | Path, class_names: Sequence[str], task: str,
            history_csv: str | Path | None = None, images: Any = None, labels: Any = None, max_gallery: int = 10,
            explain_methods: Sequence[str] = ("gradcam", "gradcam++", "smoothgrad"),
            explain_layer: str | None = None, batch_losses: Any = None, val_data: Any = None,
            val_score: float | None = None, leaderboard: Sequence[dict[str, Any]] | None = None,
            split: str = "test", title: str | None = None, embed_methods: Sequence[str] = ("pca", "tsne"),
            smooth_samples: int = 10, batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """Produce every figure, ``metrics.json`` and ``report.html`` for one model on one split.

    Args:
        model: a trained kerasclf Keras model (raw 0..255 RGB in).
        data: ``(images, labels)`` or a DataSpec of the split to analyse (or use ``images``/``labels``).
        out_dir: folder to write into (made if missing; files in it are replaced).
        class_names: one name per class (per attribute for multilabel).
        task: ``binary`` | ``multiclass`` | ``multilabel``.
        history_csv: Keras CSVLogger file (or a history dict) for the training curves.
        images: the split's images ``(N, H, W, 3)`` when ``data`` is not given.
        labels: the split's labels when ``data`` is not given.
        max_gallery: images per gallery.
        explain_methods: attribution methods overlaid on the galleries (``()`` to skip).
        explain_layer: layer for Grad-CAM (default: found automatically; ``backbone/...`` paths work).
        batch_losses: training loss per batch (sequence or ``batch_loss.csv``) for the curves.
        val_data: ``(images, labels)`` of validation: fits the temperature (calibration) and the
            multilabel thresholds there, and gives the validation score for the gap sentence.
        val_score: validation accuracy to compare with (overrides the one from ``val_data``).
        leaderboard: optional leaderboard rows (dicts) shown first.
        split: name of the analysed split, used in headings (``test`` or ``val``).
        title: report title.
        embed_methods: projections of the features (``()`` to skip).
        smooth_samples: noisy samples of SmoothGrad.
        batch_size: prediction batch size.
        seed: seed of the random galleries and of t-SNE.

    Returns:
        ``{"metrics": dict, "files": {name: path}, "report": Path, "warnings": [str]}``.

    Raises:
        DataError: missing or inconsistent data; ConfigError: bad option.

    Example:
        >>> out = analyze(model, (x, y), out_dir="/tmp/analysis", class_names=["a", "b"],
        ...               task="multiclass")                      # doctest: +SKIP
        >>> sorted(out["files"])[:3]                               # doctest: +SKIP
        ['confusion', 'embedding_pca', 'embedding_tsne']
    """
    if task not in ("binary", "multiclass", "multilabel"):
        raise ConfigError(f"unknown task '{task}'; use one of: binary, multiclass, multilabel")
    bad = [m for m in explain_methods if m not in EXPLAIN_METHODS]
    if bad:
        raise ConfigError(f"unknown explanation method '{bad[0]}'; use any of: {', '.join(EXPLAIN_METHODS)}")
    names = [str(c) for c in class_names]
    if data is None:
        if images is None or labels is None:
            raise DataError("analyze needs the data to analyse: pass (images, labels) or images= and labels=")
        data = (images, labels)
    x, y_raw = _read_split(model, data)
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    warnings: list[str] = []
    sections: list[Section] = []
    rng = np.random.default_rng(seed)

    probs = _predict(model, x, batch_size)
    if task == "binary" and probs.shape[1] == 2:
        probs = probs[:, 1:]
    y = _label_array(y_raw, task)

    # --- validation: thresholds, temperature, score -----------------------------------------------
    val_probs = val_y = None
    thresholds: Any = 0.5
    if val_data is not None:
        vx, vy = _read_split(model, val_data)
        val_probs = _predict(model, vx, batch_size)
        if task == "binary" and val_probs.shape[1] == 2:
            val_probs = val_probs[:, 1:]
        val_y = _label_array(vy, task)
        if task == "multilabel":
            thresholds = choose_thresholds(val_y, val_probs)
    metrics = classification_metrics(y, probs, task, names, threshold=thresholds)
    metrics["split"] = split
    if val_probs is not None:
        vm = classification_metrics(val_y, val_probs, task, names, threshold=thresholds)
        metrics["val_accuracy"] = vm["accuracy"]
        if val_score is None:
            val_score = vm["accuracy"]
    if task == "multilabel" and val_probs is not None:
        metrics["at_threshold_0.5"] = {k: classification_metrics(y, probs, task, names)[k]
                                       for k in ("accuracy", "mean_f1", "subset_accuracy")}
    pred = probs_to_pred(probs, task, thresholds)
    loss = per_sample_loss(y, probs, task)
    wrong = (pred != y).any(axis=1) if task == "multilabel" else pred != y

    if leaderboard:
        cols = list(dict.fromkeys(k for r in leaderboard for k in r if k != "run_dir"))
        sections.append(Section(SECTION_IDS["leaderboard"], id="leaderboard", table=Table(cols, list(leaderboard),
                                                                                         highlight=0)))

    # --- curves ---------------------------------------------------------------------------------
    if history_csv is not None:
        try:
            files["curves"] = plot_history(history_csv, fig_dir / "curves.png", batch_losses=batch_losses)
            sections.append(Section(SECTION_IDS["curves"], id="curves", images=[(
                files["curves"], "loss and metrics per epoch (train vs validation)"
                + ("; training loss per iteration" if batch_losses is not None else ""))]))
        except KerasclfError as e:
            warnings.append(f"curves skipped: {e}")

    # --- confusion + per-class ------------------------------------------------------------------
    if task != "multilabel":
        files["confusion"] = plot_confusion(y, pred, names if task == "multiclass" else (names + ["0", "1"])[:2],
                                            fig_dir / "confusion.png")
        sections.append(Section(SECTION_IDS["confusion"], id="confusion",
                                text=f"Rows are true classes, columns predicted ones; each row gives the fraction "
                                     f"of that class's {split} images predicted as each class.",
                                images=[(files["confusion"], f"{split} split, {len(y)} images")], image_width=900))
    files["per_class"] = plot_per_class(metrics, fig_dir / "per_class.png")
    per = metrics["per_class"]
    keys = ["accuracy", "precision", "recall", "f1", "support"] + (["threshold"] if task == "multilabel" else [])
    keys = [k for k in keys if any(k in v for v in per.values())]
    sections.append(Section(SECTION_IDS["per-class"], id="per-class",
                            text=("Thresholds per attribute chosen on validation to maximise F1."
                                  if task == "multilabel" and val_probs is not None else ""),
                            table=Table(["class" if task != "multilabel" else "attribute", *keys],
                                        [[n, *[v.get(k) for k in keys]] for n, v in per.items()]),
                            images=[(files["per_class"], "precision, recall and F1 per class")],
                            image_width=760))

    # --- galleries with attribution -------------------------------------------------------------
    ok_idx, bad_idx = np.flatnonzero(~wrong), np.flatnonzero(wrong)
    pool = bad_idx if len(bad_idx) else ok_idx  # highest loss among the mistakes (or all, if none)
    galleries = [("gallery_correct_random", "correctly classified (random)",
                  rng.permutation(ok_idx)[:max_gallery], False),
                 ("gallery_incorrect_random", "misclassified (random)", rng.permutation(bad_idx)[:max_gallery], False),
                 ("gallery_highest_loss", "misclassified with the highest loss" if len(bad_idx) else
                  "highest loss (no image was misclassified)", pool[np.argsort(-loss[pool])][:max_gallery], True)]
    target = probs.argmax(axis=1) if task == "multilabel" else pred
    gallery_images: list[Any] = []
    explain_failed = False
    for key, caption, idx, show_loss in galleries:
        if len(idx) == 0:
            continue
        overlays: dict[str, np.ndarray] = {}
        for method in explain_methods if not explain_failed else ():
            try:
                overlays[method] = explain(model, x[idx], method=method, class_index=target[idx].tolist(),
                                           layer=explain_layer, smooth_samples=smooth_samples)
            except KerasclfError as e:
                warnings.append(f"{method} skipped: {e}")
                explain_failed = method in ("gradcam", "gradcam++")
        titles = _titles(idx, y, probs, pred, loss, task, names, show_loss)
        files[key] = plot_gallery(x[idx], titles, fig_dir / f"{key}.png", overlays=overlays or None)
        gallery_images.append((files[key], f"{caption}: {len(idx)} images"
                               + (f"; each followed by {', '.join(overlays)} of the predicted class" if overlays
                                  else "")))
    sections.append(Section(SECTION_IDS["galleries"], id="galleries",
                            text=f"{int(wrong.sum())} of {len(y)} {split} images are misclassified. Titles give "
                                 f"the true and predicted class and the predicted probability; heatmaps show where "
                                 f"the model looked for its prediction (red = most important).",
                            images=gallery_images, notes=[w for w in warnings if "skipped" in w and "curves" not in w]))

    # --- embeddings -----------------------------------------------------------------------------
    if embed_methods:
        try:
            feats = np.asarray(feature_model(model).predict(x.astype("float32"), batch_size=batch_size, verbose=0))
            emb = embed_features(feats, y, fig_dir, methods=tuple(embed_methods), class_names=names, seed=seed)
            files.update({f"embedding_{k}": v for k, v in emb.items()})
            sections.append(Section(SECTION_IDS["embeddings"], id="embeddings",
                                    text=f"Features before the classifier ({feats.shape[1]} dimensions) projected to "
                                         f"2-D, coloured by true class: well separated clusters mean the classes are "
                                         f"easy to tell apart from these features.",
                                    images=[(p, k.upper() if k == "pca" else "t-SNE") for k, p in emb.items()],
                                    image_width=640))
        except KerasclfError as e:
            warnings.append(f"embeddings skipped: {e}")

    # --- calibration ----------------------------------------------------------------------------
    cal: dict[str, Any] = {"ece": metrics["ece"], "nll": negative_log_likelihood(y, probs, task)}
    calibrated = None
    if val_probs is not None and task != "multilabel":
        t = fit_temperature(val_probs, val_y, task=task)
        calibrated = apply_temperature(probs, t, task=task)
        cal.update({"temperature": t, "ece_after_temperature": expected_calibration_error(y, calibrated, task=task),
                    "nll_after_temperature": negative_log_likelihood(y, calibrated, task)})
    metrics["calibration"] = cal
    files["reliability"] = reliability_diagram(y, probs, fig_dir / "reliability.png", task=task,
                                               calibrated_probs=calibrated)
    cal_text = [f"Expected calibration error (ECE) on {split}: {cal['ece']:.3f} (0 is perfectly calibrated: "
                f"a confidence of 80% is right 80% of the time)."]
    if "temperature" in cal:
        cal_text.append(f"Temperature scaling fitted on validation: T = {cal['temperature']:.2f}; ECE "
                        f"{cal['ece']:.3f} → {cal['ece_after_temperature']:.3f}, NLL {cal['nll']:.3f} → "
                        f"{cal['nll_after_temperature']:.3f}.")
    sections.append(Section(SECTION_IDS["calibration"], id="calibration", text=cal_text,
                            images=[(files["reliability"], "reliability diagram")], image_width=560))

    # --- result ---------------------------------------------------------------------------------
    acc = metrics["accuracy"]
    result_text = [f"{split.capitalize()} accuracy {acc:.4f} on {len(y)} images; macro F1 "
                   f"{metrics['macro']['f1']:.4f}; loss {metrics['loss']:.4f}."]
    notes = []
    if split == "test" and val_score is not None:
        sentence = gap_sentence(val_score, acc)
        result_text.append(sentence)
        metrics["val_test_gap"] = float(val_score - acc)
        if sentence.startswith("Warning"):
            notes.append(sentence)
    sections.append(Section(SECTION_IDS["test"] if split == "test" else f"{split.capitalize()} result",
                            id="test", text=result_text, notes=notes))

    metrics["files"] = {k: str(v) for k, v in files.items()}
    metrics["warnings"] = warnings
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    report = write_report(out / "report.html", title=title or f"Analysis of {getattr(model, 'name', 'model')}",
                          subtitle=f"task: {task}; {split} split: {len(y)} images; {len(names)} "
                                   f"{'attributes' if task == 'multilabel' else 'classes'}",
                          sections=sections)
    files["metrics"] = out / "metrics.json"
    files["report"] = report
    return {"metrics": metrics, "files": files, "report": report, "warnings": warnings}
