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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf._progress import progress
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
from .label_issues import label_issue_sections
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
            smooth_samples: int = 10, batch_size: int = 32, seed: int = 0,
            audit_dir: str | Path | None = None) -> dict[str, Any]:
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
        audit_dir: a ``kerasclf audit`` folder (a run's ``audit/``): its label-quality sections are
            added when it holds an audit.

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
    if data is None:
        if images is None or labels is None:
            raise DataError("analyze needs the data to analyse: pass (images, labels) or images= and labels=")
        data = (images, labels)
    out = Path(out_dir)
    run = _Analysis(model=model, task=task, names=[str(c) for c in class_names], split=split,
                    fig_dir=out / "figures", batch_size=batch_size)
    run.fig_dir.mkdir(parents=True, exist_ok=True)
    bar = progress(total=6 + bool(embed_methods), desc="analyze", unit="step")  # on a terminal only
    run.score(_read_split(model, data), _read_split(model, val_data) if val_data is not None else None)
    bar.update()
    if val_score is None:
        val_score = run.metrics.get("val_accuracy")
    if leaderboard:
        cols = list(dict.fromkeys(k for r in leaderboard for k in r if k != "run_dir"))
        run.sections.append(Section(SECTION_IDS["leaderboard"], id="leaderboard",
                                    table=Table(cols, list(leaderboard), highlight=0)))
    if history_csv is not None:
        run.curves(history_csv, batch_losses)
    run.confusion_and_per_class()
    bar.update()
    run.galleries(np.random.default_rng(seed), max_gallery, explain_methods, explain_layer, smooth_samples)
    bar.update()
    if embed_methods:
        run.embeddings(embed_methods, seed)
        bar.update()
    run.calibration()
    bar.update()
    run.result(val_score)
    if audit_dir is not None:
        run.sections.extend(label_issue_sections(audit_dir))
    bar.update()

    metrics, files = run.metrics, run.files
    metrics["files"] = {k: str(v) for k, v in files.items()}
    metrics["warnings"] = run.warnings
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    report = write_report(out / "report.html", title=title or f"Analysis of {getattr(model, 'name', 'model')}",
                          subtitle=f"task: {task}; {split} split: {len(run.y)} images; {len(run.names)} "
                                   f"{'attributes' if task == 'multilabel' else 'classes'}",
                          sections=run.sections)
    files["metrics"] = out / "metrics.json"
    files["report"] = report
    bar.update()
    bar.close()
    return {"metrics": metrics, "files": files, "report": report, "warnings": run.warnings}


@dataclass
class _Analysis:
    """One model on one split: its predictions, metrics and the report sections built so far.

    :meth:`score` comes first; each other method adds one section (and its figures).
    """

    model: Any
    task: str
    names: list[str]
    split: str
    fig_dir: Path
    batch_size: int
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def _probs(self, x: np.ndarray) -> np.ndarray:
        p = _predict(self.model, x, self.batch_size)
        return p[:, 1:] if self.task == "binary" and p.shape[1] == 2 else p

    def score(self, data: tuple[np.ndarray, np.ndarray], val: tuple[Any, np.ndarray] | None, *,
              probs: np.ndarray | None = None, val_probs: np.ndarray | None = None) -> None:
        """Predict (or take ``probs`` / ``val_probs`` computed elsewhere, e.g. of an ensemble; then
        ``val`` may be ``(None, labels)``); on validation choose the multilabel thresholds; compute
        the split's metrics."""
        task, names = self.task, self.names
        self.x, self.y = data[0], _label_array(data[1], task)
        self.probs = self._probs(self.x) if probs is None else np.asarray(probs, dtype="float64")
        self.val_probs = self.val_y = None
        self.thresholds: Any = 0.5
        if val is not None:
            self.val_probs = self._probs(val[0]) if val_probs is None else np.asarray(val_probs, dtype="float64")
            self.val_y = _label_array(val[1], task)
            if task == "multilabel":
                self.thresholds = choose_thresholds(self.val_y, self.val_probs)
        m = classification_metrics(self.y, self.probs, task, names, threshold=self.thresholds)
        m["split"] = self.split
        if self.val_probs is not None:
            m["val_accuracy"] = classification_metrics(self.val_y, self.val_probs, task, names,
                                                       threshold=self.thresholds)["accuracy"]
            if task == "multilabel":
                at_half = classification_metrics(self.y, self.probs, task, names)
                m["at_threshold_0.5"] = {k: at_half[k] for k in ("accuracy", "mean_f1", "subset_accuracy")}
        self.metrics = m
        self.pred = probs_to_pred(self.probs, task, self.thresholds)
        self.loss = per_sample_loss(self.y, self.probs, task)
        self.wrong = (self.pred != self.y).any(axis=1) if task == "multilabel" else self.pred != self.y

    def curves(self, history_csv: Any, batch_losses: Any) -> None:
        try:
            self.files["curves"] = plot_history(history_csv, self.fig_dir / "curves.png", batch_losses=batch_losses)
        except KerasclfError as e:
            self.warnings.append(f"curves skipped: {e}")
            return
        self.sections.append(Section(SECTION_IDS["curves"], id="curves", images=[(
            self.files["curves"], "loss and metrics per epoch (train vs validation)"
            + ("; training loss per iteration" if batch_losses is not None else ""))]))

    def confusion_and_per_class(self) -> None:
        task, names, split = self.task, self.names, self.split
        if task != "multilabel":
            self.files["confusion"] = plot_confusion(self.y, self.pred, names if task == "multiclass"
                                                     else (names + ["0", "1"])[:2], self.fig_dir / "confusion.png")
            self.sections.append(Section(
                SECTION_IDS["confusion"], id="confusion",
                text=f"Rows are true classes, columns predicted ones; each row gives the fraction "
                     f"of that class's {split} images predicted as each class.",
                images=[(self.files["confusion"], f"{split} split, {len(self.y)} images")], image_width=900))
        self.files["per_class"] = plot_per_class(self.metrics, self.fig_dir / "per_class.png")
        per = self.metrics["per_class"]
        keys = ["accuracy", "precision", "recall", "f1", "support"] + (["threshold"] if task == "multilabel" else [])
        keys = [k for k in keys if any(k in v for v in per.values())]
        chosen = task == "multilabel" and self.val_probs is not None
        self.sections.append(Section(
            SECTION_IDS["per-class"], id="per-class",
            text="Thresholds per attribute chosen on validation to maximise F1." if chosen else "",
            table=Table(["class" if task != "multilabel" else "attribute", *keys],
                        [[n, *[v.get(k) for k in keys]] for n, v in per.items()]),
            images=[(self.files["per_class"], "precision, recall and F1 per class")], image_width=760))

    def galleries(self, rng: np.random.Generator, max_gallery: int, explain_methods: Sequence[str],
                  explain_layer: str | None, smooth_samples: int) -> None:
        ok_idx, bad_idx = np.flatnonzero(~self.wrong), np.flatnonzero(self.wrong)
        pool = bad_idx if len(bad_idx) else ok_idx  # highest loss among the mistakes (or all, if none)
        galleries = [("gallery_correct_random", "correctly classified (random)",
                      rng.permutation(ok_idx)[:max_gallery], False),
                     ("gallery_incorrect_random", "misclassified (random)",
                      rng.permutation(bad_idx)[:max_gallery], False),
                     ("gallery_highest_loss", "misclassified with the highest loss" if len(bad_idx) else
                      "highest loss (no image was misclassified)", pool[np.argsort(-self.loss[pool])][:max_gallery],
                      True)]
        target = self.probs.argmax(axis=1) if self.task == "multilabel" else self.pred
        shown: list[Any] = []
        explain_failed = False
        for key, caption, idx, show_loss in galleries:
            if len(idx) == 0:
                continue
            overlays: dict[str, np.ndarray] = {}
            for method in explain_methods if not explain_failed else ():
                try:
                    overlays[method] = explain(self.model, self.x[idx], method=method,
                                               class_index=target[idx].tolist(), layer=explain_layer,
                                               smooth_samples=smooth_samples)
                except KerasclfError as e:
                    self.warnings.append(f"{method} skipped: {e}")
                    explain_failed = method in ("gradcam", "gradcam++")
            titles = _titles(idx, self.y, self.probs, self.pred, self.loss, self.task, self.names, show_loss)
            self.files[key] = plot_gallery(self.x[idx], titles, self.fig_dir / f"{key}.png",
                                           overlays=overlays or None)
            shown.append((self.files[key], f"{caption}: {len(idx)} images"
                          + (f"; each followed by {', '.join(overlays)} of the predicted class" if overlays else "")))
        self.sections.append(Section(
            SECTION_IDS["galleries"], id="galleries",
            text=f"{int(self.wrong.sum())} of {len(self.y)} {self.split} images are misclassified. Titles give "
                 f"the true and predicted class and the predicted probability; heatmaps show where "
                 f"the model looked for its prediction (red = most important).",
            images=shown, notes=[w for w in self.warnings if "skipped" in w and "curves" not in w]))

    def embeddings(self, methods: Sequence[str], seed: int) -> None:
        try:
            feats = np.asarray(feature_model(self.model).predict(self.x.astype("float32"),
                                                                 batch_size=self.batch_size, verbose=0))
            emb = embed_features(feats, self.y, self.fig_dir, methods=tuple(methods), class_names=self.names,
                                 seed=seed)
        except KerasclfError as e:
            self.warnings.append(f"embeddings skipped: {e}")
            return
        self.files.update({f"embedding_{k}": v for k, v in emb.items()})
        self.sections.append(Section(
            SECTION_IDS["embeddings"], id="embeddings",
            text=f"Features before the classifier ({feats.shape[1]} dimensions) projected to 2-D, coloured by "
                 f"true class: well separated clusters mean the classes are easy to tell apart from these features.",
            images=[(p, k.upper() if k == "pca" else "t-SNE") for k, p in emb.items()], image_width=640))

    def calibration(self) -> None:
        task, y, probs, split = self.task, self.y, self.probs, self.split
        cal: dict[str, Any] = {"ece": self.metrics["ece"], "nll": negative_log_likelihood(y, probs, task)}
        calibrated = None
        if self.val_probs is not None and task != "multilabel":
            t = fit_temperature(self.val_probs, self.val_y, task=task)
            calibrated = apply_temperature(probs, t, task=task)
            cal.update({"temperature": t,
                        "ece_after_temperature": expected_calibration_error(y, calibrated, task=task),
                        "nll_after_temperature": negative_log_likelihood(y, calibrated, task)})
        self.metrics["calibration"] = cal
        self.files["reliability"] = reliability_diagram(y, probs, self.fig_dir / "reliability.png", task=task,
                                                        calibrated_probs=calibrated)
        text = [f"Expected calibration error (ECE) on {split}: {cal['ece']:.3f} (0 is perfectly calibrated: "
                f"a confidence of 80% is right 80% of the time)."]
        if "temperature" in cal:
            text.append(f"Temperature scaling fitted on validation: T = {cal['temperature']:.2f}; ECE "
                        f"{cal['ece']:.3f} → {cal['ece_after_temperature']:.3f}, NLL {cal['nll']:.3f} → "
                        f"{cal['nll_after_temperature']:.3f}.")
        self.sections.append(Section(SECTION_IDS["calibration"], id="calibration", text=text,
                                     images=[(self.files["reliability"], "reliability diagram")], image_width=560))

    def result(self, val_score: float | None) -> None:
        m, split = self.metrics, self.split
        text = [f"{split.capitalize()} accuracy {m['accuracy']:.4f} on {len(self.y)} images; macro F1 "
                f"{m['macro']['f1']:.4f}; loss {m['loss']:.4f}."]
        notes = []
        if split == "test" and val_score is not None:
            sentence = gap_sentence(val_score, m["accuracy"])
            text.append(sentence)
            m["val_test_gap"] = float(val_score - m["accuracy"])
            if sentence.startswith("Warning"):
                notes.append(sentence)
        self.sections.append(Section(SECTION_IDS["test"] if split == "test" else f"{split.capitalize()} result",
                                     id="test", text=text, notes=notes))
