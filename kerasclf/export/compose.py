"""Bake test-time augmentation and ensembles into **one** Keras model that exports like any other.

Example:
    >>> from kerasclf.export.compose import tta_model, ensemble_model      # doctest: +SKIP
    >>> one = ensemble_model([tta_model(a), b])   # averages a, flipped a (first) and b
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kerasclf.errors import ModelError
from kerasclf.zoo.layers import TTA_VIEWS, FlipLeftRight

__all__ = ["TTA_VIEWS", "tta_model", "ensemble_model", "float32_model"]



def _input_shape(model: Any) -> tuple[Any, ...]:
    return tuple(model.inputs[0].shape[1:])


def _one(outputs: Any) -> Any:
    """A reloaded functional model may return its single output as a one-item list."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _float32_config(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("class_name") == "DTypePolicy" and str(obj.get("config", {}).get("name", "")).startswith("mixed"):
            return {**obj, "config": {**obj["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_float32_config(v) for v in obj]
    return obj


def float32_model(model: Any) -> Any:
    """``model`` computing in float32 with the same weights (a mixed-precision model otherwise
    exports bf16/fp16 ops that LiteRT cannot run and that differ from float runtimes).

    Example:
        >>> from kerasclf.testing import tiny_cnn
        >>> float32_model(tiny_cnn(2)).dtype_policy.name
        'float32'
    """
    if all(not layer.dtype_policy.name.startswith("mixed") for layer in model._flatten_layers()):
        return model
    clone = keras.saving.deserialize_keras_object(_float32_config(keras.saving.serialize_keras_object(model)))
    clone.set_weights(model.get_weights())
    return clone


def tta_model(model: Any, views: Sequence[str] = ("flip",)) -> Any:
    """``model`` averaged over the original image and each view (``flip``: left-right mirror).

    Example:
        >>> from kerasclf.testing import tiny_cnn
        >>> tta_model(tiny_cnn(3)).output_shape
        (None, 3)
    """
    unknown = [v for v in views if v not in TTA_VIEWS]
    if unknown:
        raise ModelError(f"unknown TTA view(s) {', '.join(unknown)}; use {', '.join(TTA_VIEWS)}")
    inputs = keras.Input(shape=_input_shape(model), name="image")
    outs = [_one(model(inputs))] + [_one(model(FlipLeftRight(name=f"tta_{v}")(inputs))) for v in views]
    out = keras.layers.Average(name="tta_mean")(outs) if len(outs) > 1 else outs[0]
    return keras.Model(inputs, out, name=f"{model.name}_tta")


def ensemble_model(models: Sequence[Any]) -> Any:
    """One model whose output is the mean of the members' outputs (all must predict the same classes).

    Members keep their own resizing and preprocessing, so they may differ in input size; the
    ensemble takes any image size where every member does.

    Example:
        >>> from kerasclf.testing import tiny_cnn
        >>> ensemble_model([tiny_cnn(3), tiny_cnn(3)]).output_shape
        (None, 3)
    """
    if len(models) < 2:
        raise ModelError("an ensemble needs at least two models; pass --ensemble OTHER_MODEL")
    units = {int(m.outputs[0].shape[-1]) for m in models}
    if len(units) > 1:
        raise ModelError(f"ensemble members predict different numbers of outputs ({sorted(units)}); "
                         f"ensemble only models trained on the same classes")
    shapes = [_input_shape(m) for m in models]
    shape = shapes[0] if all(s == shapes[0] for s in shapes) else (None, None, shapes[0][-1])
    inputs = keras.Input(shape=shape, name="image")
    outs = []
    for i, member in enumerate(models):
        wrapped = keras.Model(member.inputs, member.outputs[0], name=f"member_{i}")  # unique names
        outs.append(_one(wrapped(inputs)))
    return keras.Model(inputs, keras.layers.Average(name="ensemble_mean")(outs), name="ensemble")
