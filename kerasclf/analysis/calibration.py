"""Calibration: expected calibration error, reliability diagram, temperature scaling.

ECE is the *top-label* calibration error: samples are binned by the confidence of their
predicted class, and ECE is the sample-weighted mean of ``|accuracy - confidence|`` over bins.
For ``multilabel`` outputs every (sample, attribute) pair counts as one binary prediction.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T`` fitted on
validation data by minimising the negative log-likelihood; it changes confidence, never the
predicted class. Probabilities are turned back into logits (``log p`` for softmax, ``logit p``
for sigmoids), so the functions accept either.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 1, 20000)
    >>> y = (rng.uniform(0, 1, 20000) < p).astype(int)
    >>> expected_calibration_error(y, p, task="binary") < 0.02
    True
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from kerasclf.analysis._figure import new_figure, save_figure
from kerasclf.errors import DataError

__all__ = [
    "expected_calibration_error",
    "reliability_diagram",
    "fit_temperature",
    "apply_temperature",
    "negative_log_likelihood",
    "confidence_and_correct",
]

_EPS = 1e-7


def _infer_task(y: np.ndarray, p: np.ndarray) -> str:
    if p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
        return "binary"
    if y.ndim == 2 and y.shape == p.shape and not np.allclose(y.sum(axis=1), 1):
        return "multilabel"
    return "multiclass"


def confidence_and_correct(y_true: Any, probs: Any, task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Confidence of the predicted label and whether it is right, one entry per prediction.

    Example:
        >>> conf, ok = confidence_and_correct([1, 0], [[0.9], [0.8]])
        >>> conf.round(2).tolist(), ok.tolist()
        ([0.9, 0.8], [True, False])
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype="float64")
    task = task or _infer_task(y, p)
    if task == "binary":
        p1 = p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p.reshape(-1)
        yb = y.reshape(-1).astype("int64")
        pred = (p1 >= 0.5).astype("int64")
        return np.where(pred == 1, p1, 1 - p1), pred == yb
    if task == "multilabel":
        pf, yf = p.reshape(-1), (y.reshape(-1) > 0.5)
        pred = pf >= 0.5
        return np.where(pred, pf, 1 - pf), pred == yf
    if y.ndim == 2:
        y = y.argmax(axis=1)
    return p.max(axis=1), p.argmax(axis=1) == y.reshape(-1).astype("int64")


def _bins(conf: np.ndarray, ok: np.ndarray, n_bins: int) -> list[tuple[float, float, float, int]]:
    """(lower edge, mean confidence, accuracy, count) for every bin of ``[0, 1]``."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out.append((float(edges[b]), float(conf[m].mean()) if n else 0.0, float(ok[m].mean()) if n else 0.0, n))
    return out


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 15, *, task: str | None = None) -> float:
    """Top-label expected calibration error in ``[0, 1]`` (0 = perfectly calibrated).

    Args:
        y_true: labels (int ``(N,)``, ``(N, 1)`` for binary, 0/1 ``(N, K)`` for multilabel).
        probs: predicted probabilities.
        n_bins: number of equal-width confidence bins.
        task: ``binary`` | ``multiclass`` | ``multilabel`` (inferred from shapes when ``None``).

    Returns:
        ECE as a float.

    Example:
        >>> expected_calibration_error([0, 1], [[0.99, 0.01], [0.99, 0.01]]) > 0.4
        True
    """
    conf, ok = confidence_and_correct(y_true, probs, task)
    if len(conf) == 0:
        raise DataError("no predictions to compute the calibration error of")
    n = len(conf)
    return float(sum(c / n * abs(acc - mc) for _, mc, acc, c in _bins(conf, ok, n_bins) if c))


def _to_logits(x: np.ndarray, kind: str) -> np.ndarray:
    """Logits from logits or probabilities (detected: values in [0, 1], rows summing to 1 for softmax)."""
    is_prob = x.min() >= 0.0 and x.max() <= 1.0
    if kind == "softmax":
        is_prob = is_prob and np.allclose(x.sum(axis=1), 1.0, atol=1e-3)
        return np.log(np.clip(x, _EPS, 1.0)) if is_prob else x
    if is_prob:
        xc = np.clip(x, _EPS, 1 - _EPS)
        return np.log(xc) - np.log1p(-xc)
    return x


def _kind(x: np.ndarray, task: str | None, y: np.ndarray | None = None) -> str:
    if task == "multiclass":
        return "softmax"
    if task in ("binary", "multilabel"):
        return "sigmoid"
    if x.ndim == 1 or x.shape[1] == 1:
        return "sigmoid"
    if y is not None and _infer_task(y, x) == "multilabel":
        return "sigmoid"
    return "softmax" if y is None or np.asarray(y).ndim == 1 or np.allclose(np.asarray(y).sum(axis=1), 1) \
        else "sigmoid"


def _probs(logits: np.ndarray, kind: str) -> np.ndarray:
    if kind == "softmax":
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


def negative_log_likelihood(y_true: Any, probs: Any, task: str | None = None) -> float:
    """Mean cross-entropy of labels under ``probs`` (per attribute for sigmoid outputs).

    Example:
        >>> round(negative_log_likelihood([0, 1], [[0.5, 0.5], [0.5, 0.5]]), 4)
        0.6931
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype="float64")
    kind = _kind(p, task, y)
    if kind == "softmax":
        yi = y.argmax(axis=1) if y.ndim == 2 else y.reshape(-1).astype("int64")
        return float(-np.log(np.clip(p[np.arange(len(p)), yi], _EPS, 1.0)).mean())
    if p.ndim == 2 and p.shape[1] == 2 and task == "binary":
        p = p[:, 1]
    pc = np.clip(p.reshape(y.shape) if p.size == y.size else p, _EPS, 1 - _EPS)
    yv = (y > 0.5).astype("float64").reshape(pc.shape)
    return float(-(yv * np.log(pc) + (1 - yv) * np.log(1 - pc)).mean())


def apply_temperature(logits_or_probs: Any, temperature: float, *, task: str | None = None) -> np.ndarray:
    """Probabilities after dividing the logits by ``temperature`` (same shape as the input).

    Args:
        logits_or_probs: logits or probabilities ``(N,)``, ``(N, 1)`` or ``(N, K)``.
        temperature: ``T > 0``; ``T > 1`` softens over-confident outputs.
        task: ``multiclass`` (softmax) or ``binary``/``multilabel`` (sigmoids); inferred when None
            (``(N, K>1)`` is taken as softmax).

    Returns:
        calibrated probabilities.

    Example:
        >>> apply_temperature([[0.9, 0.1]], 2.0).round(3).tolist()
        [[0.75, 0.25]]
    """
    if not temperature > 0:
        raise DataError(f"temperature must be > 0; got {temperature}")
    x = np.asarray(logits_or_probs, dtype="float64")
    kind = _kind(x, task)
    return _probs(_to_logits(x, kind) / float(temperature), kind)


def fit_temperature(val_logits_or_probs: Any, y_val: Any, *, task: str | None = None) -> float:
    """The temperature ``T`` that minimises the validation NLL (searched over ``[0.05, 20]``).

    Args:
        val_logits_or_probs: validation logits or probabilities.
        y_val: validation labels.
        task: as for :func:`apply_temperature` (inferred from the shapes when None).

    Returns:
        ``T`` as a float.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(0, 2, 5000)                                   # true logits
        >>> y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-z))).astype(int)
        >>> 3.5 < fit_temperature(4 * z, y, task="binary") < 4.5        # 4x over-confident
        True
    """
    x = np.asarray(val_logits_or_probs, dtype="float64")
    y = np.asarray(y_val)
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"temperature fitting needs as many labels as outputs; got {len(y)} and {len(x)}")
    kind = _kind(x, task, y)
    logits = _to_logits(x, kind)
    nll_task = "multiclass" if kind == "softmax" else ("binary" if logits.ndim == 1 or logits.shape[1] == 1
                                                       else "multilabel")

    def nll(log_t: float) -> float:
        return negative_log_likelihood(y, _probs(logits / np.exp(log_t), kind), nll_task)

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def reliability_diagram(y_true: Any, probs: Any, path: str | Path, *, n_bins: int = 15,
                        task: str | None = None, calibrated_probs: Any = None,
                        title: str = "Reliability diagram") -> Path:
    """Accuracy against confidence per bin (bars), the diagonal, and a confidence histogram.

    Args:
        y_true: labels.
        probs: predicted probabilities.
        path: PNG file to write.
        n_bins: number of confidence bins.
        task: as for :func:`expected_calibration_error`.
        calibrated_probs: optional probabilities after temperature scaling, drawn as a line.
        title: figure title (ECE is appended).

    Returns:
        the PNG path.

    Example:
        >>> reliability_diagram([0, 1, 1], [[0.2], [0.7], [0.9]], "/tmp/rel.png")  # doctest: +SKIP
        PosixPath('/tmp/rel.png')
    """
    conf, ok = confidence_and_correct(y_true, probs, task)
    ece = expected_calibration_error(y_true, probs, n_bins, task=task)
    bins = _bins(conf, ok, n_bins)
    width = 1.0 / n_bins
    fig = new_figure((6.0, 6.5))
    ax = fig.add_axes((0.12, 0.36, 0.83, 0.56))
    hx = fig.add_axes((0.12, 0.08, 0.83, 0.2), sharex=ax)
    lefts = [b[0] for b in bins]
    accs = [b[2] if b[3] else 0.0 for b in bins]
    mids = [b[1] if b[3] else b[0] + width / 2 for b in bins]
    ax.bar(lefts, accs, width=width, align="edge", color="#4c72b0", edgecolor="white", label="accuracy")
    gaps = [m - a if b[3] else 0.0 for m, a, b in zip(mids, accs, bins)]
    ax.bar(lefts, gaps, bottom=accs, width=width, align="edge", color="#dd8452", alpha=0.5,
           edgecolor="white", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    if calibrated_probs is not None:
        c2, ok2 = confidence_and_correct(y_true, calibrated_probs, task)
        b2 = [b for b in _bins(c2, ok2, n_bins) if b[3]]
        ece2 = expected_calibration_error(y_true, calibrated_probs, n_bins, task=task)
        ax.plot([b[1] for b in b2], [b[2] for b in b2], "o-", color="#55a868",
                label=f"after temperature scaling (ECE {ece2:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} — ECE {ece:.3f}", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    hx.bar(lefts, [b[3] for b in bins], width=width, align="edge", color="#8c8c8c", edgecolor="white")
    hx.set_xlabel("confidence of the predicted label")
    hx.set_ylabel("count")
    return save_figure(fig, path)
