"""Does an exported artefact agree with the Keras model? Top-1 agreement, max abs difference, accuracy.

Example:
    >>> import numpy as np
    >>> r = parity(np.array([[.9, .1], [.2, .8]]), np.array([[.8, .2], [.3, .7]]), "multiclass")
    >>> r["top1_agreement"], round(r["max_abs_diff"], 3)
    (1.0, 0.1)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Thresholds", "parity", "judge"]


@dataclass(frozen=True)
class Thresholds:
    """What an export must meet. Float: agreement and max abs difference; int8: accuracy drop
    (with labels) or agreement (without)."""

    min_agreement: float = 0.999
    max_abs_diff: float = 1e-4
    int8_max_accuracy_drop: float = 0.01
    int8_min_agreement: float = 0.95


def _decide(p: np.ndarray, task: str, threshold: float) -> np.ndarray:
    if task == "multilabel" or (task == "binary" and p.shape[-1] == 1):
        return (p >= threshold).astype(int)
    return np.argmax(p, axis=-1)


def _accuracy(decided: np.ndarray, labels: np.ndarray, task: str) -> float:
    labels = np.asarray(labels)
    if task == "multilabel":
        return float(np.mean(decided == labels.astype(int)))
    return float(np.mean(decided.reshape(-1) == labels.reshape(-1).astype(int)))


def parity(reference: np.ndarray, artefact: np.ndarray, task: str, labels: np.ndarray | None = None, *,
           threshold: float = 0.5) -> dict[str, Any]:
    """Compare the Keras model's outputs with the artefact's on the same images.

    Returns ``n_images``, ``top1_agreement`` (multi-label: images whose every label agrees),
    ``max_abs_diff`` and, with ``labels``, ``keras_accuracy`` / ``artefact_accuracy`` /
    ``accuracy_change`` (artefact minus Keras).
    """
    ref, art = np.asarray(reference, "float64"), np.asarray(artefact, "float64")
    if ref.shape != art.shape:
        return {"n_images": int(len(ref)), "top1_agreement": 0.0, "max_abs_diff": float("inf"),
                "error": f"output shapes differ: Keras {ref.shape}, artefact {art.shape}"}
    a, b = _decide(ref, task, threshold), _decide(art, task, threshold)
    same = np.all(a.reshape(len(a), -1) == b.reshape(len(b), -1), axis=1)
    out: dict[str, Any] = {"n_images": int(len(ref)), "top1_agreement": round(float(np.mean(same)), 6),
                           "max_abs_diff": float(np.max(np.abs(ref - art))) if ref.size else 0.0}
    if labels is not None:
        ka, aa = _accuracy(a, labels, task), _accuracy(b, labels, task)
        out.update(keras_accuracy=round(ka, 6), artefact_accuracy=round(aa, 6), accuracy_change=round(aa - ka, 6))
    return out


def judge(result: dict[str, Any], *, int8: bool, limits: Thresholds = Thresholds()) -> tuple[bool, str]:
    """``(passed, reason)`` for a :func:`parity` result against ``limits``."""
    if "error" in result:
        return False, result["error"]
    agree, diff = result["top1_agreement"], result["max_abs_diff"]
    if not int8:
        if agree < limits.min_agreement:
            return False, f"top-1 agreement {agree:.4f} < {limits.min_agreement}"
        if diff > limits.max_abs_diff:
            return False, f"max abs probability difference {diff:.2e} > {limits.max_abs_diff:.0e}"
        return True, f"top-1 agreement {agree:.4f}, max abs diff {diff:.2e}"
    if "accuracy_change" in result:
        drop = -result["accuracy_change"]
        if drop > limits.int8_max_accuracy_drop:
            return False, (f"int8 accuracy {result['artefact_accuracy']:.4f} is {drop:.4f} below Keras's "
                           f"{result['keras_accuracy']:.4f} (limit {limits.int8_max_accuracy_drop})")
        return True, f"int8 accuracy change {result['accuracy_change']:+.4f}, top-1 agreement {agree:.4f}"
    if agree < limits.int8_min_agreement:
        return False, f"int8 top-1 agreement {agree:.4f} < {limits.int8_min_agreement} (no labels to measure accuracy)"
    return True, f"int8 top-1 agreement {agree:.4f} (no labels: accuracy not measured)"
