"""Classification metrics for the three tasks, as plain JSON-serialisable dicts.

Tasks: ``binary`` (one sigmoid unit, labels 0/1), ``multiclass`` (softmax, int labels) and
``multilabel`` (K sigmoids, a 0/1 matrix). Probabilities may come as ``(N,)``, ``(N, 1)`` or
``(N, 2)`` for ``binary``.

Example:
    >>> import numpy as np
    >>> m = classification_metrics(np.array([0, 1, 2, 2]),
    ...                            np.eye(3)[[0, 1, 2, 1]] * 0.8 + 0.2 / 3, "multiclass", ["a", "b", "c"])
    >>> m["accuracy"], m["confusion_matrix"][2]
    (0.75, [0.0, 0.5, 0.5])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support, roc_auc_score

from kerasclf.analysis.calibration import expected_calibration_error
from kerasclf.errors import ConfigError, DataError

__all__ = [
    "classification_metrics",
    "probs_to_pred",
    "choose_thresholds",
    "confusion_fractions",
    "per_sample_loss",
    "binary_positive_probs",
    "auroc",
    "multiclass_log_loss",
    "mean_attribute_accuracy",
]

_EPS = 1e-7
_TASKS = ("binary", "multiclass", "multilabel")


def _check_task(task: str) -> None:
    if task not in _TASKS:
        raise DataError(f"unknown task '{task}'; use one of: {', '.join(_TASKS)}")


def binary_positive_probs(probs: Any) -> np.ndarray:
    """Probability of the positive class, ``(N,)``, from ``(N,)``, ``(N, 1)`` or ``(N, 2)`` outputs.

    Example:
        >>> binary_positive_probs([[0.2], [0.9]]).tolist()
        [0.2, 0.9]
    """
    p = np.asarray(probs, dtype="float64")
    if p.ndim == 2 and p.shape[1] == 2:
        return p[:, 1]
    return p.reshape(-1)


def _labels(y_true: Any, task: str, num: int) -> np.ndarray:
    y = np.asarray(y_true)
    if task == "multilabel":
        if y.ndim != 2:
            raise DataError(f"multilabel labels must be a 0/1 matrix (N, K); got shape {y.shape}")
        return (y > 0.5).astype("int64")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.dtype.kind == "f":
        y = np.rint(y)
    y = y.astype("int64")
    if len(y) and (y.min() < 0 or y.max() >= max(num, 2)):
        raise DataError(f"labels must lie in 0..{max(num, 2) - 1}; got {y.min()}..{y.max()}")
    return y


def probs_to_pred(probs: Any, task: str, threshold: float | Sequence[float] = 0.5) -> np.ndarray:
    """Turn probabilities into predictions: class ids ``(N,)`` or a 0/1 matrix for multilabel.

    Args:
        probs: model outputs (probabilities).
        task: ``binary`` | ``multiclass`` | ``multilabel``.
        threshold: decision threshold (binary), or one per attribute / a scalar (multilabel).

    Returns:
        int array ``(N,)``, or ``(N, K)`` 0/1 for ``multilabel``.

    Example:
        >>> probs_to_pred([[0.3], [0.7]], "binary").tolist()
        [0, 1]
        >>> probs_to_pred([[0.1, 0.7, 0.2]], "multiclass").tolist()
        [1]
    """
    _check_task(task)
    p = np.asarray(probs, dtype="float64")
    if task == "binary":
        return (binary_positive_probs(p) >= float(np.asarray(threshold).reshape(-1)[0])).astype("int64")
    if task == "multiclass":
        return p.reshape(len(p), -1).argmax(axis=1).astype("int64")
    thr = np.asarray(threshold, dtype="float64")
    return (p >= thr.reshape(1, -1) if thr.ndim else p >= float(thr)).astype("int64")


def confusion_fractions(y_true: Any, y_pred: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Confusion counts and the same matrix normalised by true class (each non-empty row sums to 1).

    Rows are true classes, columns predicted ones. A class absent from ``y_true`` has a row of 0.

    Example:
        >>> counts, frac = confusion_fractions([0, 0, 1], [0, 1, 1], 2)
        >>> frac.tolist()
        [[0.5, 0.5], [0.0, 1.0]]
    """
    yt = np.asarray(y_true).astype("int64").reshape(-1)
    yp = np.asarray(y_pred).astype("int64").reshape(-1)
    counts = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(counts, (yt, yp), 1)
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape, dtype="float64"), where=rows > 0)
    return counts, frac


def per_sample_loss(y_true: Any, probs: Any, task: str) -> np.ndarray:
    """Cross-entropy of every sample ``(N,)`` (mean over attributes for multilabel).

    Example:
        >>> per_sample_loss([1, 0], [[0.5], [0.5]], "binary").round(3).tolist()
        [0.693, 0.693]
    """
    _check_task(task)
    p = np.asarray(probs, dtype="float64")
    if task == "binary":
        p1 = np.clip(binary_positive_probs(p), _EPS, 1 - _EPS)
        y = _labels(y_true, task, 2)
        return -(y * np.log(p1) + (1 - y) * np.log(1 - p1))
    if task == "multiclass":
        y = _labels(y_true, task, p.shape[1])
        return -np.log(np.clip(p[np.arange(len(p)), y], _EPS, 1.0))
    y = _labels(y_true, task, p.shape[1])
    pc = np.clip(p, _EPS, 1 - _EPS)
    return -(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean(axis=1)


def auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve of telling ``out`` (the positives) from ``in`` by a score
    (higher = more likely ``out``), e.g. an OOD score on in- and out-of-distribution images.

    Example:
        >>> auroc([0.1, 0.2, 0.6], [0.5, 0.9])
        0.8333333333333334
    """
    a = np.asarray(in_scores, dtype="float64").reshape(-1)
    b = np.asarray(out_scores, dtype="float64").reshape(-1)
    return float(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))


def multiclass_log_loss(y_true: Any, probs: Any) -> float:
    """Mean cross-entropy of int labels under ``(N, K)`` probabilities; each row is clipped to
    ``[1e-7, 1]`` and renormalised first, so a class a model never saw (probability 0) is finite.

    Example:
        >>> round(multiclass_log_loss([0, 1], [[0.5, 0.5], [0.0, 1.0]]), 4)
        0.3466
    """
    p = np.clip(np.asarray(probs, dtype="float64"), _EPS, 1.0)
    return float(log_loss(np.asarray(y_true, dtype=int), p / p.sum(axis=1, keepdims=True),
                          labels=list(range(p.shape[1]))))


def mean_attribute_accuracy(y_true: Any, probs: Any, threshold: float | Sequence[float] = 0.5) -> float:
    """Multi-label accuracy averaged over every (image, attribute) pair, at ``threshold`` (a scalar
    or one per attribute); what Keras' ``binary_accuracy`` reports.

    Example:
        >>> mean_attribute_accuracy([[1, 0], [1, 1]], [[0.9, 0.2], [0.4, 0.7]], [0.5, 0.5])
        0.75
    """
    y = _labels(y_true, "multilabel", 0)
    return float(np.mean(probs_to_pred(probs, "multilabel", threshold) == y))


def choose_thresholds(y_true: Any, probs: Any, *, grid: Sequence[float] | None = None,
                      metric: str = "f1") -> list[float]:
    """One decision threshold per attribute that maximises F1 (or accuracy) on (validation) data.

    Ties go to the threshold closest to 0.5; an attribute with no positives keeps 0.5.

    Args:
        y_true: 0/1 matrix ``(N, K)`` (or ``(N,)`` for a single binary attribute).
        probs: probabilities, same shape.
        grid: candidate thresholds (default 0.05, 0.10, ..., 0.95).
        metric: ``f1`` (the positive class's F1) or ``accuracy``.

    Returns:
        list of K floats.

    Example:
        >>> import numpy as np
        >>> choose_thresholds(np.array([[1], [0], [1]]), np.array([[0.3], [0.1], [0.35]]))
        [0.3]
        >>> choose_thresholds(np.array([[1], [0], [0], [0]]), np.array([[0.6], [0.3], [0.1], [0.55]]),
        ...                   metric="accuracy")
        [0.6]
    """
    if metric not in ("f1", "accuracy"):
        raise ConfigError(f"choose_thresholds: metric {metric!r}; use f1 or accuracy")
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype="float64")
    if y.ndim == 1:
        y, p = y.reshape(-1, 1), binary_positive_probs(p).reshape(-1, 1)
    y = (y > 0.5).astype("int64")
    candidates = np.round(np.asarray(grid if grid is not None else np.arange(0.05, 0.951, 0.05)), 4)
    out: list[float] = []
    for k in range(y.shape[1]):
        if y[:, k].sum() == 0:
            out.append(0.5)
            continue
        if metric == "accuracy":
            scores = [float(np.mean((p[:, k] >= t) == y[:, k])) for t in candidates]
        else:
            scores = [f1_score(y[:, k], (p[:, k] >= t).astype(int), zero_division=0) for t in candidates]
        best = max(scores)
        ties = [t for t, s in zip(candidates, scores) if s >= best - 1e-12]
        out.append(float(min(ties, key=lambda t: abs(t - 0.5))))
    return out


def _per_class(y: np.ndarray, pred: np.ndarray, names: list[str]) -> tuple[dict[str, Any], dict[str, float]]:

    k = len(names)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    per = {names[i]: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                      "support": int(sup[i])} for i in range(k)}
    present = sup > 0
    macro = {"precision": float(prec[present].mean()) if present.any() else 0.0,
             "recall": float(rec[present].mean()) if present.any() else 0.0,
             "f1": float(f1[present].mean()) if present.any() else 0.0}
    return per, macro


def classification_metrics(y_true: Any, probs: Any, task: str, class_names: Sequence[str],
                           threshold: float | Sequence[float] = 0.5) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall/F1 and the normalised confusion matrix.

    For ``multilabel``: per-attribute accuracy/precision/recall/F1 (at ``threshold``, a scalar or
    one per attribute, e.g. from :func:`choose_thresholds` on validation), their means, and the
    exact-match (subset) accuracy; ``accuracy`` is then the mean per-attribute accuracy, which is
    what Keras' ``binary_accuracy`` reports during training.

    Args:
        y_true: labels (int ``(N,)``; for binary also ``(N, 1)``; 0/1 ``(N, K)`` for multilabel).
        probs: predicted probabilities.
        task: ``binary`` | ``multiclass`` | ``multilabel``.
        class_names: one name per class (per attribute for multilabel).
        threshold: decision threshold(s) for binary / multilabel.

    Returns:
        A JSON-serialisable dict: ``task``, ``n``, ``accuracy``, ``loss``, ``per_class``,
        ``macro`` (mean precision/recall/F1 over classes present), ``confusion_matrix``
        (fractions, rows = true class) and ``confusion_counts`` (not for multilabel),
        ``ece`` (top-label expected calibration error).

    Example:
        >>> import numpy as np
        >>> m = classification_metrics([0, 1, 1], [[0.2], [0.8], [0.4]], "binary", ["cat", "dog"])
        >>> round(m["accuracy"], 3), m["per_class"]["dog"]["recall"]
        (0.667, 0.5)
    """
    _check_task(task)
    names = [str(c) for c in class_names]
    p = np.asarray(probs, dtype="float64")
    if len(p) == 0:
        raise DataError("no predictions to score; the split is empty")
    out: dict[str, Any] = {"task": task, "n": int(len(p))}
    if task == "multilabel":
        y = _labels(y_true, task, p.shape[1])
        if y.shape != p.shape:
            raise DataError(f"multilabel labels {y.shape} and probabilities {p.shape} differ in shape")
        if len(names) != p.shape[1]:
            names = names[: p.shape[1]] + [f"attr{i}" for i in range(len(names), p.shape[1])]
        thr = np.broadcast_to(np.asarray(threshold, dtype="float64"), (p.shape[1],))
        pred = probs_to_pred(p, task, thr)
        per = {}
        for k, name in enumerate(names):
            pr, rc, f1, _ = precision_recall_fscore_support(y[:, k], pred[:, k], labels=[1], zero_division=0)
            per[name] = {"accuracy": float((y[:, k] == pred[:, k]).mean()), "precision": float(pr[0]),
                         "recall": float(rc[0]), "f1": float(f1[0]), "support": int(y[:, k].sum()),
                         "threshold": float(thr[k])}
        out.update({
            "accuracy": mean_attribute_accuracy(y, p, thr),
            "subset_accuracy": float((y == pred).all(axis=1).mean()),
            "mean_accuracy": float(np.mean([v["accuracy"] for v in per.values()])),
            "mean_f1": float(np.mean([v["f1"] for v in per.values()])),
            "thresholds": [float(t) for t in thr],
            "per_class": per,
            "macro": {m: float(np.mean([v[m] for v in per.values()])) for m in ("precision", "recall", "f1")},
        })
    else:
        k = 2 if task == "binary" else p.reshape(len(p), -1).shape[1]
        if task == "multiclass" and len(names) != k:
            raise DataError(f"{len(names)} class names but the model outputs {k} classes; "
                            f"pass the class names the model was trained with")
        if task == "binary" and len(names) != 2:
            names = (names + ["0", "1"])[:2] if len(names) < 2 else names[:2]
        y = _labels(y_true, task, k)
        if len(y) != len(p):
            raise DataError(f"{len(y)} labels but {len(p)} predictions")
        pred = probs_to_pred(p, task, threshold)
        per, macro = _per_class(y, pred, names)
        counts, frac = confusion_fractions(y, pred, k)
        out.update({
            "accuracy": float((y == pred).mean()),
            "per_class": per, "macro": macro,
            "confusion_matrix": frac.round(6).tolist(),
            "confusion_counts": counts.tolist(),
        })
        if task == "binary":
            out["threshold"] = float(np.asarray(threshold).reshape(-1)[0])
    out["loss"] = float(per_sample_loss(y, p, task).mean())
    out["ece"] = float(expected_calibration_error(y, p, task=task))
    out["class_names"] = names
    return out
