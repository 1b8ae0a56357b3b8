"""Reading a model's layout: the image size it wants and the model cut at its feature layer.

This is the one place that cuts a model at its features; feature extraction, embeddings,
clustering and scikit-learn heads all call :func:`feature_model`. For a zoo model the layer comes
from the registry's :class:`~kerasclf.zoo.registry.ModelCfg` (``feature_layer``: ``features`` for
classifiers, ``encoder`` for the autoencoder).

Example:
    >>> from kerasclf.zoo import build
    >>> model = build("simple_cnn", num_classes=10)
    >>> feature_model(model).output.shape
    (None, 512)
    >>> input_size(model)
    (32, 32)
"""
from __future__ import annotations

from typing import Any

import keras

from kerasclf.errors import ModelError
from kerasclf.zoo.registry import get_cfg, is_registered

__all__ = ["input_size", "fixed_input", "feature_layer_for", "feature_model"]

AUTO = "auto"


def fixed_input(model: Any) -> tuple[tuple[int, int] | None, int | None]:
    """``((H, W) or None, channels or None)`` of the model's declared input."""
    shape = tuple(model.inputs[0].shape)
    hw = (int(shape[1]), int(shape[2])) if len(shape) == 4 and shape[1] and shape[2] else None
    channels = int(shape[-1]) if shape[-1] else None
    return hw, channels


def input_size(model: Any, default: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(H, W)`` the model resizes its input to (its ``resize`` layer), else its fixed input size.

    Raises:
        ModelError: neither is known and no ``default`` was given.
    """
    try:
        layer = model.get_layer("resize")
        return int(layer.height), int(layer.width)
    except ValueError:
        pass
    hw, _ = fixed_input(model)
    if hw is not None:
        return hw
    if default is not None:
        return int(default[0]), int(default[1])
    raise ModelError(f"model '{model.name}' has no 'resize' layer and no fixed input size; "
                     f"give the image size explicitly (--image-size H W)")


def feature_layer_for(model: Any) -> str | None:
    """The layer whose output are ``model``'s features.

    The registry's ``feature_layer`` for a zoo model (known by its name), else ``"features"`` when
    the model has such a layer, else, for a model that ends in a Dense classifier (any model
    from elsewhere), the layer that feeds that Dense layer, else ``None`` (the model's own output
    is the feature vector, as for a headless extractor).

    Example:
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(name="flat"),
        ...                       keras.layers.Dense(4, name="hidden"), keras.layers.Dense(1, activation="sigmoid")])
        >>> feature_layer_for(m)
        'hidden'
    """
    if is_registered(model.name):
        return get_cfg(model.name).feature_layer
    names = {layer.name for layer in model.layers}
    return "features" if "features" in names else _head_input(model)


def _producer(tensor: Any) -> Any:
    hist = getattr(tensor, "_keras_history", None)
    return hist.operation if hist is not None else None


def _head_input(model: Any) -> str | None:
    """The name of the layer feeding ``model``'s final Dense layer (past Activation/Softmax/Dropout), if any."""
    if not getattr(model, "outputs", None):
        return None
    layer = _producer(model.outputs[0])
    while isinstance(layer, (keras.layers.Activation, keras.layers.Softmax, keras.layers.Dropout)):
        layer = _producer(layer._inbound_nodes[0].input_tensors[0]) if layer._inbound_nodes else None
    if not isinstance(layer, keras.layers.Dense) or not layer._inbound_nodes:
        return None
    before = _producer(layer._inbound_nodes[0].input_tensors[0])
    if before is None or isinstance(before, keras.layers.InputLayer) or before.name not in {x.name for x in model.layers}:
        return None
    return before.name


def _layer_output_in(model: Any, layer: Any) -> Any:
    """A model from ``model``'s inputs to ``layer``'s output (a nested model has its own graph)."""
    try:
        return keras.Model(model.inputs, layer.output)
    except ValueError:  # the layer's graph is not connected to these inputs
        pass
    for node in getattr(layer, "_inbound_nodes", []):
        outs = getattr(node, "output_tensors", None)
        if not outs:
            continue
        try:
            return keras.Model(model.inputs, outs[0] if len(outs) == 1 else outs)
        except ValueError:
            continue
    return None


def feature_model(model: Any, layer: str | None = AUTO) -> keras.Model:
    """``model`` cut at ``layer``: raw images in, pooled ``(N, D)`` features out.

    Args:
        model: a Keras model (a zoo model or any other).
        layer: a layer name; ``None`` for the model output; ``"auto"`` for
            :func:`feature_layer_for`. A nested sub-model (an autoencoder's ``encoder``) is used
            as it is applied inside the outer model (after its resize / preprocess layers) when
            possible, else on its own. Outputs with spatial axes are global-average pooled.

    Raises:
        ModelError: no such layer (the message lists the model's last layer names).

    Example:
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
        >>> feature_model(m, "c").output.shape
        (None, 4)
    """
    if layer == AUTO:
        layer = feature_layer_for(model)
    if layer is None:
        cut = model
    else:
        try:
            target = model.get_layer(layer)
        except ValueError:
            names = [item.name for item in model.layers]
            raise ModelError(f"model '{model.name}' has no layer '{layer}'; its last layers: "
                             f"{', '.join(names[-15:])}; pass one of them as the feature layer") from None
        cut = _layer_output_in(model, target)
        if cut is None:
            if not isinstance(target, keras.Model):
                raise ModelError(f"layer '{layer}' of '{model.name}' is not reachable from the "
                                 f"model inputs; pick another layer")
            cut = target
    out = cut.outputs[0]
    if len(out.shape) > 2:
        x = keras.layers.Reshape((-1, out.shape[-1]))(out) if len(out.shape) > 4 else out
        pool = keras.layers.GlobalAveragePooling2D if len(x.shape) == 4 else keras.layers.GlobalAveragePooling1D
        cut = keras.Model(cut.inputs, pool(name="kerasclf_feature_pool")(x), name=f"{model.name}_features")
    return cut
