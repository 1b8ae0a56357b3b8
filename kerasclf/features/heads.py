"""scikit-learn heads on extracted features: fit, evaluate, save with the extractor's record, predict.

Three kinds: ``logreg`` (StandardScaler + LogisticRegression), ``linear_svm`` (StandardScaler +
LinearSVC, probabilities from a softmax of the decision function, or Platt-calibrated with
``calibrate=True``) and ``hgb`` (HistGradientBoostingClassifier). A saved head is a skops file
(loading it rebuilds only trusted scikit-learn types, it cannot run code) plus a JSON record of
the feature extractor, so :func:`load_head` returns a :class:`HeadPipeline`
that goes from image files to class names on its own (``kerasclf predict head.skops folder/``).

Example:
    >>> from kerasclf.features import extract_features, fit_head, evaluate_head, save_head  # doctest: +SKIP
    >>> fs = extract_features("resnet50_features", spec, weights="imagenet")   # doctest: +SKIP
    >>> head = fit_head(fs.features, fs.labels, kind="logreg")  # doctest: +SKIP
    >>> evaluate_head(head, fs.features, fs.labels, fs.class_names)["accuracy"]  # doctest: +SKIP
    >>> save_head("runs/demo/head.skops", head, fs.record)  # doctest: +SKIP
    >>> load_head("runs/demo/head.skops").predict_paths(["new_images/"])[0]["class"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from kerasclf._files import write_rows
from kerasclf._progress import progress
from kerasclf.analysis.metrics import classification_metrics, multiclass_log_loss
from kerasclf.data.pipeline import file_batches
from kerasclf.data.reader import collect_image_paths
from kerasclf.errors import ConfigError, DataError, ModelError, UnknownNameError
from kerasclf.features.artifacts import (
    ExtractorRecord,
    artifact_target,
    build_extractor,
    load_artifact,
    save_artifact,
    save_extractor_files,
)
from kerasclf.features.extract import features_for_images

__all__ = ["HEAD_KINDS", "HEAD_CS", "fit_head", "choose_c", "head_proba", "evaluate_head", "save_head", "load_head",
           "HeadPipeline", "SoftmaxLinearSVC"]

HEAD_KINDS = ("logreg", "linear_svm", "hgb")
#: the ``C`` values :func:`choose_c` tries by default (``run_head(C="auto")``)
HEAD_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)

class SoftmaxLinearSVC(LinearSVC):
    """LinearSVC with ``predict_proba``: softmax (multiclass) / sigmoid (binary) of decision values.

    The values are scores, not calibrated probabilities; use ``fit_head(..., calibrate=True)``
    for Platt-calibrated ones.
    """

    def predict_proba(self, X: Any) -> np.ndarray:
        d = np.asarray(self.decision_function(X), dtype="float64")
        if d.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-d))
            return np.stack([1.0 - p, p], axis=1)
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        return e / e.sum(axis=1, keepdims=True)


def fit_head(features: np.ndarray, labels: np.ndarray, kind: str = "logreg", *, C: float = 1.0,
             max_iter: int | None = None, calibrate: bool = False, seed: int = 0,
             **options: Any) -> Any:
    """Fit a scikit-learn classifier on features.

    Args:
        features: ``(N, D)`` features (a memmap is fine).
        labels: ``(N,)`` integer class ids.
        kind: ``logreg`` | ``linear_svm`` | ``hgb``.
        C: inverse regularisation strength (``logreg``, ``linear_svm``).
        max_iter: solver iterations / boosting rounds (defaults: 1000, 5000, 100).
        calibrate: ``linear_svm`` only: Platt-calibrated probabilities (3-fold) instead of softmax.
        seed: random state.
        **options: passed to the final estimator (e.g. ``learning_rate`` for ``hgb``).

    Returns:
        A fitted estimator with ``predict_proba`` (a ``Pipeline`` for the linear kinds).

    Raises:
        ConfigError: unknown kind. DataError: multilabel labels or a single class.

    Example:
        >>> import numpy as np
        >>> X = np.r_[np.zeros((10, 2)), np.ones((10, 2))] + np.random.default_rng(0).normal(0, .1, (20, 2))
        >>> y = np.r_[np.zeros(10, int), np.ones(10, int)]
        >>> fit_head(X, y, "logreg").score(X, y)
        1.0
    """
    X = np.asarray(features, dtype="float32")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError("scikit-learn heads take one class per image; multilabel data needs a Keras head")
    if len(np.unique(y)) < 2:
        raise DataError("the labels hold a single class; a head needs at least two")
    if kind == "logreg":
        est = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter or 1000,
                                                                 random_state=seed, **options))
    elif kind == "linear_svm":
        svc = SoftmaxLinearSVC(C=C, max_iter=max_iter or 5000, random_state=seed, **options)
        if calibrate:
            svc = CalibratedClassifierCV(svc, cv=3)
        est = make_pipeline(StandardScaler(), svc)
    elif kind == "hgb":
        est = HistGradientBoostingClassifier(max_iter=max_iter or 100, random_state=seed, **options)
    else:
        raise UnknownNameError("head kind", kind, HEAD_KINDS)
    est.fit(X, y)
    return est


def choose_c(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], kind: str = "logreg",
             cs: Sequence[float] = HEAD_CS, seed: int = 0, **head_options: Any) -> tuple[float, dict[str, float]]:
    """The ``C`` of ``cs`` whose head (:func:`fit_head` with ``head_options``), fitted on ``train``,
    has the lowest log-loss on ``val``.

    Returns:
        ``(C, {str(C): validation log-loss})``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X, y = rng.normal(size=(80, 3)) + np.repeat([[0, 0, 0], [2, 2, 2]], 40, 0), np.repeat([0, 1], 40)
        >>> c, losses = choose_c((X[::2], y[::2]), (X[1::2], y[1::2]), cs=(0.01, 1.0))
        >>> sorted(losses) == ["0.01", "1.0"] and c in (0.01, 1.0)
        True
    """
    if kind == "hgb":
        raise ConfigError("choose_c tunes C of the linear heads (logreg, linear_svm), not hgb")
    yv = np.asarray(val[1]).astype(int)
    if not len(yv):
        raise ConfigError("choosing C needs a validation split; give ratios with a validation part (0.7, 0.1, 0.2) "
                          "or a single C")
    k = int(max(np.max(train[1]), yv.max())) + 1
    losses = {str(c): multiclass_log_loss(yv, head_proba(fit_head(train[0], train[1], kind, C=c, seed=seed,
                                                                  **head_options), val[0], k))
              for c in cs}
    best = min(cs, key=lambda c: losses[str(c)])
    return float(best), {c: round(v, 4) for c, v in losses.items()}


def head_proba(head: Any, features: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``(N, num_classes)`` probabilities, with columns for classes absent from training filled 0.

    Example:
        >>> head_proba(head, fs.features, num_classes=10).shape  # doctest: +SKIP
        (1797, 10)
    """
    p = np.asarray(head.predict_proba(np.asarray(features, dtype="float32")), dtype="float64")
    classes = np.asarray(getattr(head, "classes_", np.arange(p.shape[1]))).astype(int)
    k = num_classes or int(classes.max()) + 1
    if p.shape[1] == k and np.array_equal(classes, np.arange(k)):
        return p
    full = np.zeros((len(p), k))
    full[:, classes] = p
    return full


def evaluate_head(head: Any, features: np.ndarray, labels: np.ndarray,
                  class_names: Sequence[str] | None = None, task: str | None = None) -> dict[str, Any]:
    """Metrics of a head, in the same shape as a Keras model's (``metrics.json``).

    The metrics are :func:`kerasclf.analysis.metrics.classification_metrics` (what
    ``kerasclf train`` writes), plus ``n_images``.

    Example:
        >>> m = evaluate_head(head, fs.features, fs.labels, fs.class_names)   # doctest: +SKIP
        >>> m["accuracy"], m["confusion_matrix"][0]  # doctest: +SKIP
    """
    y = np.asarray(labels).astype(int)
    if class_names is None:
        class_names = [str(i) for i in range(max(int(y.max()) + 1, len(getattr(head, "classes_", []))))]
    k = len(class_names)
    task = task or ("binary" if k == 2 else "multiclass")
    p = head_proba(head, features, k)
    if task == "binary":
        metrics = classification_metrics(y.reshape(-1, 1), p[:, 1:2], task, list(class_names))
    else:
        metrics = classification_metrics(y, p, task, list(class_names))
    return {**metrics, "n_images": int(len(y))}


def save_head(path: str | Path, head: Any, record: ExtractorRecord, *, extractor: Any | None = None,
              metrics: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Save a fitted head (skops, no pickle) with a JSON record of its feature extractor.

    Writes ``path`` (e.g. ``runs/x/head.skops``) and ``path`` with ``.json`` (the record, human
    readable). If the extractor cannot be rebuilt from its name (random or in-memory weights),
    ``extractor`` (the Keras feature model) is saved as ``<stem>.extractor.keras`` beside them.

    Args:
        path: the ``.skops`` file to write.
        head: from :func:`fit_head`.
        record: ``FeatureSet.record`` of the features the head was fitted on.
        extractor: the Keras model the features came from, ``FeatureSet.extractor`` or the
            full model (needed when the record is not rebuildable by name).
        metrics: optional metrics stored in the JSON.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Example:
        >>> save_head("runs/x/head.skops", head, fs.record, extractor=model)   # doctest: +SKIP
    """
    path = artifact_target(path, "head", overwrite)
    record = save_extractor_files(record, extractor, path.parent, path.stem)
    info = {"kind": "kerasclf.head", "record": record.to_dict(), "estimator": type(head).__name__,
            "metrics": metrics or {}}
    save_artifact({"head": head, "info": info}, path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
    return path


def load_head(path: str | Path) -> "HeadPipeline":
    """Reload a head saved by :func:`save_head` as a :class:`HeadPipeline`.

    Raises:
        ModelError: missing file, not a kerasclf head, or an old joblib file (refused: see
            :func:`~kerasclf.features.artifacts.convert_artifact`).

    Example:
        >>> pipe = load_head("runs/x/head.skops")  # doctest: +SKIP
        >>> pipe.predict_paths(["new/"])[0]["class"]  # doctest: +SKIP
    """
    path = Path(path)
    obj = load_artifact(path, "kerasclf.head", "head", "kerasclf.features.save_head")
    return HeadPipeline(head=obj["head"], record=ExtractorRecord.from_dict(obj["info"]["record"]),
                        base_dir=path.parent, info=obj["info"])


@dataclass
class HeadPipeline:
    """Images → feature extractor → scikit-learn head; what ``kerasclf predict`` runs for a head.

    Attributes:
        head: the fitted scikit-learn estimator.
        record: the feature extractor's record.
        base_dir: folder relative extractor files are resolved against.
        extractor: the Keras feature model (built on first use from ``record``).

    Example:
        >>> pipe = load_head("runs/x/head.skops")                        # doctest: +SKIP
        >>> pipe.predict_proba_images(images).shape  # doctest: +SKIP
        >>> pipe.predict_paths(["new/"])[0]  # doctest: +SKIP
        {'path': 'new/a.png', 'class': 'cat', 'probability': 0.93, 'top_k': 'cat:0.93|dog:0.07', 'error': ''}
    """
    head: Any
    record: ExtractorRecord
    base_dir: Path | None = None
    extractor: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.record.class_names) or [str(c) for c in getattr(self.head, "classes_", [])]

    @property
    def task(self) -> str:
        return self.record.task

    @property
    def image_size(self) -> tuple[int, int] | None:
        return self.record.image_size

    def feature_extractor(self) -> Any:
        """The Keras feature model, rebuilt from the record on first use."""
        if self.extractor is None:
            self.extractor = build_extractor(self.record, self.base_dir)
        return self.extractor

    def predict_proba_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` of already extracted features."""
        return head_proba(self.head, features, len(self.class_names) or None)

    def predict_proba_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(N, K)`` of raw 0..255 images ``(N, H, W, C)``."""
        feats = features_for_images(self.feature_extractor(), images, batch_size=batch_size,
                                    image_size=self.image_size, channels=self.record.channels)
        return self.predict_proba_features(feats)

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Same as :meth:`predict_proba_images` (so it can stand in for a loaded Keras model)."""
        return self.predict_proba_images(images, batch_size)

    def predict_paths(self, paths: Sequence[str | Path], *, top_k: int = 3, batch_size: int = 64,
                      out_csv: str | Path | None = None) -> list[dict[str, Any]]:
        """Classify image files / folders; rows like :func:`kerasclf.predict.predict_paths`.

        Unreadable files get a row with an empty ``class`` and the reason in ``error``.
        """
        files = [str(p) for p in collect_image_paths(paths)]
        names = self.class_names
        if self.image_size is None:
            raise ModelError("this head's extractor record has no image size; re-extract with image_size=")
        rows: list[dict[str, Any]] = []
        batches = file_batches(files, self.image_size, batch_size, channels=self.record.channels)
        for ok, images in progress(batches, total=-(-len(files) // batch_size), desc="predict", unit="batch"):
            probs = self.predict_proba_images(images, batch_size)
            for p_, pr in zip(ok, probs):
                order = np.argsort(-pr)[:max(1, top_k)]
                rows.append({"path": p_, "class": names[int(order[0])],
                             "probability": round(float(pr[order[0]]), 6),
                             "top_k": "|".join(f"{names[i]}:{pr[i]:.4f}" for i in order), "error": ""})
        rows += [{"path": p_, "class": "", "probability": "", "top_k": "", "error": why}
                 for p_, why in batches.skipped]
        if out_csv is not None:
            write_rows(out_csv, rows, ["path", "class", "probability", "top_k", "error"])
        return rows
