"""Out-of-distribution flag: how far an image is from what the model was trained on.

Three scores (higher: more out-of-distribution), compared in ``benchmarks/label_quality.py``:

* ``msp``: ``1 - max softmax probability``;
* ``energy``: ``-logsumexp(logits)`` (logits recomputed from the features and the ``predictions``
  Dense layer; only for models whose head is that one layer);
* ``mahalanobis``: the smallest Mahalanobis distance of the pooled ``features`` to the training
  classes' means, with one shared (Ledoit-Wolf shrunk) covariance.

:class:`OodDetector` holds the chosen score, its statistics and a threshold fitted on the
validation split (its ``1 - target_fpr`` quantile), and saves to an ``.npz`` (no pickle).

Measured (``benchmarks/label_quality.py``, a flowers MobileNet alpha 0.25 run, threshold at the
validation split's 97th percentile): Mahalanobis AUROC 0.968 against cats-vs-dogs + CIFAR-10 photos
with 4.2% of the flowers test images flagged; energy 0.658; max softmax 0.476. Runs fit Mahalanobis
(:data:`DEFAULT_KIND`) when training ends (:func:`fit_split_detector`).

Example:
    >>> det = fit_detector("mahalanobis", model_outputs(model, x_train), y_train,
    ...                    model_outputs(model, x_val))                             # doctest: +SKIP
    >>> scores, flags = det.flag(model_outputs(model, images))                      # doctest: +SKIP
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

from kerasclf.analysis.metrics import auroc  # re-exported: benchmarks and tests import it from here
from kerasclf.data.pipeline import spec_batches
from kerasclf.errors import DataError, ModelError
from kerasclf.zoo.cut import feature_model

__all__ = ["KINDS", "DEFAULT_KIND", "OodDetector", "ood_model", "model_outputs", "ood_scores", "fit_detector", "auroc",
           "ood_path", "load_detector", "scored_model", "fit_split_detector"]

KINDS = ("msp", "energy", "mahalanobis")
#: the score a run fits (chosen by measurement: benchmarks/label_quality.py)
DEFAULT_KIND = "mahalanobis"


def ood_model(model: Any) -> keras.Model:
    """``model`` with two outputs from one pass: pooled features and its probabilities.

    Example:
        >>> feats, probs = ood_model(tiny_cnn(3)).predict(images)  # doctest: +SKIP
    """
    cut = feature_model(model)
    if cut.inputs[0] is model.inputs[0]:
        return keras.Model(model.inputs, [cut.outputs[0], model.outputs[0]], name=f"{model.name}_ood")
    inputs = keras.Input(model.inputs[0].shape[1:])
    return keras.Model(inputs, [cut(inputs), model(inputs)], name=f"{model.name}_ood")


def _head(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Kernel and bias of the ``predictions`` Dense layer when it reads the features directly."""
    try:
        layer = model.get_layer("predictions")
    except ValueError:
        return None
    if not isinstance(layer, keras.layers.Dense):
        return None
    kernel, bias = (np.asarray(w) for w in layer.get_weights()[:2])
    return kernel, bias


def model_outputs(model: Any, images: np.ndarray, *, batch_size: int = 64, net: Any = None) -> dict[str, np.ndarray]:
    """``{"features", "probs", "logits"?}`` of ``images`` (raw 0..255 RGB) in one pass.

    ``logits`` are there when the ``predictions`` Dense layer reads the pooled features (its
    kernel's input size equals the features' size); pass ``net=ood_model(model)`` to reuse it.
    """
    net = net or ood_model(model)
    feats, probs = net.predict(np.asarray(images, "float32"), batch_size=batch_size, verbose=0)
    return _with_logits(model, {"features": np.asarray(feats, "float64"), "probs": np.asarray(probs, "float64")})


def _with_logits(model: Any, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add ``logits`` when the ``predictions`` Dense layer reads the pooled features directly."""
    head = _head(model)
    if head is not None and head[0].shape[0] == out["features"].shape[1]:
        out["logits"] = out["features"] @ head[0] + head[1]
    return out


def _streamed_outputs(model: Any, net: Any, batches: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`model_outputs` of ``(images, labels)`` batches, one batch in memory at a time (only the
    pooled features and probabilities are kept); returns ``(outputs, labels)``."""
    feats, probs, labels = [], [], []
    for x, y in batches:
        f, p = net.predict_on_batch(x)
        feats.append(np.asarray(f, "float64"))
        probs.append(np.asarray(p, "float64"))
        labels.append(np.asarray(y))
    if not feats:
        raise DataError("OOD statistics: no readable images in this split; run `kerasclf check` on the data")
    out = {"features": np.concatenate(feats), "probs": np.concatenate(probs)}
    return _with_logits(model, out), np.concatenate(labels)


def ood_scores(kind: str, outputs: dict[str, np.ndarray], *, means: np.ndarray | None = None,
               precision: np.ndarray | None = None) -> np.ndarray:
    """The ``kind`` score of each image (higher: more out-of-distribution).

    Example:
        >>> ood_scores("msp", {"probs": np.array([[0.9, 0.1], [0.5, 0.5]])}).round(2).tolist()
        [0.1, 0.5]
    """
    if kind == "msp":
        p = outputs["probs"]
        if p.shape[1] == 1:  # binary sigmoid
            p = np.concatenate([1 - p, p], axis=1)
        return 1.0 - p.max(1)
    if kind == "energy":
        if "logits" not in outputs:
            raise ModelError("the energy score needs logits: the model's 'predictions' Dense layer must read the "
                             "pooled features directly; use kind='mahalanobis' or 'msp'")
        z = outputs["logits"]
        m = z.max(1, keepdims=True)
        return -(m[:, 0] + np.log(np.exp(z - m).sum(1)))
    if kind == "mahalanobis":
        if means is None or precision is None:
            raise ModelError("the mahalanobis score needs the class means and precision of the training features")
        f = outputs["features"]
        d = np.stack([np.einsum("nd,de,ne->n", f - mu, precision, f - mu) for mu in means], axis=1)
        return np.sqrt(np.maximum(d.min(1), 0.0))
    raise ModelError(f"unknown OOD score '{kind}'; use one of {', '.join(KINDS)}")


@dataclass
class OodDetector:
    """A fitted OOD score: its kind, threshold and (for ``mahalanobis``) the training statistics.

    Attributes:
        kind: one of :data:`KINDS`.
        threshold: scores above it are flagged ``ood``.
        target_fpr: the share of validation images above the threshold it was fitted for.
        val_fpr: the share actually above it on validation.
        means: ``(K, D)`` class means of the training features (mahalanobis).
        precision: ``(D, D)`` inverse shared covariance (mahalanobis).
    """
    kind: str
    threshold: float
    target_fpr: float = 0.03
    val_fpr: float = float("nan")
    means: np.ndarray | None = field(default=None, repr=False)
    precision: np.ndarray | None = field(default=None, repr=False)

    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The score of each image from :func:`model_outputs`."""
        return ood_scores(self.kind, outputs, means=self.means, precision=self.precision)

    def flag(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, flags)``: flagged where the score is above the threshold."""
        s = self.scores(outputs)
        return s, s > self.threshold

    def card(self) -> dict[str, Any]:
        """What the model card records (no arrays)."""
        return {"score": self.kind, "threshold": round(float(self.threshold), 6), "target_fpr": self.target_fpr,
                "val_fpr": round(float(self.val_fpr), 4), "fitted_on": "validation split"}

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (arrays + a JSON header; loads with ``allow_pickle=False``)."""
        path = Path(path)
        arrays = {"header": np.frombuffer(json.dumps(self.card()).encode(), dtype=np.uint8)}
        if self.means is not None and self.precision is not None:
            arrays.update(means=self.means.astype("float32"), precision=self.precision.astype("float32"))
        with path.open("wb") as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "OodDetector":
        """Read a detector written by :meth:`save` (a bad file is a one-line :class:`ModelError`)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                head = json.loads(bytes(z["header"]).decode())
                means = np.asarray(z["means"], "float64") if "means" in z else None
                precision = np.asarray(z["precision"], "float64") if "precision" in z else None
            return cls(kind=head["score"], threshold=float(head["threshold"]), target_fpr=float(head["target_fpr"]),
                       val_fpr=float(head["val_fpr"]), means=means, precision=precision)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path}: unreadable OOD statistics ({exc}); retrain, or delete the file to "
                             f"predict without the ood columns") from None


def fit_detector(kind: str, train: dict[str, np.ndarray], train_labels: np.ndarray,
                 val: dict[str, np.ndarray], *, target_fpr: float = 0.03) -> OodDetector:
    """Fit the ``kind`` score on training outputs and its threshold on validation outputs.

    Args:
        kind: one of :data:`KINDS`.
        train: :func:`model_outputs` of the training images (used by ``mahalanobis`` only).
        train_labels: their integer labels.
        val: :func:`model_outputs` of the validation images: the threshold is their
            ``1 - target_fpr`` quantile, so about ``target_fpr`` of in-distribution images are flagged.
        target_fpr: the share of in-distribution images the flag may wrongly mark.
    """
    means = precision = None
    if kind == "mahalanobis":
        f, y = train["features"], np.asarray(train_labels, int).reshape(-1)
        classes = np.unique(y)
        means = np.stack([f[y == c].mean(0) for c in classes])
        precision = LedoitWolf().fit(f - means[np.searchsorted(classes, y)]).precision_
    s = ood_scores(kind, val, means=means, precision=precision)
    threshold = float(np.quantile(s, 1.0 - target_fpr))
    return OodDetector(kind=kind, threshold=threshold, target_fpr=target_fpr,
                       val_fpr=float(np.mean(s > threshold)), means=means, precision=precision)


def ood_path(model_path: str | Path) -> Path:
    """Where a saved model's OOD statistics live: ``model.ood.npz`` beside ``model.keras``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".ood.npz")


def load_detector(loaded: Any) -> OodDetector | None:
    """The detector saved beside a loaded Keras model (:func:`ood_path`), else ``None``
    (an exported artefact, or a model trained before the flag existed). A run's flip-TTA model
    (``tta_of`` in its metadata) has its plain model's: the flag scores the plain model's outputs
    (:func:`scored_model`)."""
    if getattr(loaded, "format", None) not in ("keras", "h5"):
        return None
    plain = loaded.meta.get("tta_of")
    path = ood_path(loaded.path.with_name(plain) if plain else loaded.path)
    return OodDetector.load(path) if path.is_file() else None


def scored_model(loaded: Any) -> Any:
    """The Keras model whose outputs :func:`load_detector`'s flag scores: the model itself, or, for a
    run's TTA model, the plain model nested in it (:func:`kerasclf.export.compose.tta_model`)."""
    if not loaded.meta.get("tta_of"):
        return loaded.model
    return next(layer for layer in loaded.model.layers if isinstance(layer, keras.Model))


def fit_split_detector(model: Any, spec: Any, parts: dict[str, np.ndarray], image_size: tuple[int, int], *,
                       kind: str = DEFAULT_KIND, target_fpr: float = 0.03, max_train: int = 2000,
                       seed: int = 0, channels: int = 3, batch_size: int = 64) -> OodDetector | None:
    """Fit the OOD flag of a trained model on its own split: class statistics on (at most
    ``max_train``, seeded) training images, the threshold on the validation split. Both splits are
    read ``batch_size`` images at a time; only their pooled features and probabilities are kept.

    Returns ``None`` when there is no validation split or the task is not single-label.

    Example:
        >>> det = fit_split_detector(model, spec, parts, (224, 224))   # doctest: +SKIP
        >>> det.card()["threshold"]                                     # doctest: +SKIP
    """
    if spec.task == "multilabel" or not len(parts.get("val", [])) or not len(parts.get("train", [])):
        return None
    train_idx = np.asarray(parts["train"])
    if len(train_idx) > max_train:
        train_idx = np.sort(np.random.default_rng(seed).choice(train_idx, max_train, replace=False))
    net = ood_model(model)
    read = dict(image_size=image_size, channels=channels, batch_size=batch_size)  # streamed: one batch at a time
    train, y = ({}, np.zeros(0, int))
    if kind == "mahalanobis":
        train, y = _streamed_outputs(model, net, spec_batches(spec, train_idx, **read))
    val, _ = _streamed_outputs(model, net, spec_batches(spec, parts["val"], **read))
    return fit_detector(kind, train, y, val, target_fpr=target_fpr)
