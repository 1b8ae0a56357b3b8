"""A model kerasclf did not build: what its graph says, and the same model with preprocessing put inside.

kerasclf feeds every model raw 0..255 RGB and reads probabilities from it. A model from elsewhere
may expect preprocessed pixels or end in logits; :func:`adapt` returns the same model (weights
shared, nothing copied) behind a :class:`~kerasclf.zoo.layers.Preprocess` layer and, if asked,
followed by the activation that turns its logits into probabilities. The user's layers are
called again on the new input (not nested), so ``get_layer`` still finds each of them by name
and the feature cut and Grad-CAM work as on the original.

Example:
    >>> import keras
    >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c"),
    ...                       keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="logits")])
    >>> has_input_preprocessing(m), output_activation(m)
    (False, 'linear')
    >>> a = adapt(m, preprocess="scale01", activation="softmax")
    >>> [layer.name for layer in a.layers][1], a.get_layer("c") is m.get_layer("c"), output_activation(a)
    ('preprocess', True, 'softmax')
"""
from __future__ import annotations

from typing import Any

import keras

from kerasclf.zoo.layers import Preprocess

__all__ = ["has_input_preprocessing", "output_activation", "adapt"]

#: layers that make a model take raw pixels (keras.applications that preprocess inside use them)
_PREPROCESSING = (keras.layers.Rescaling, keras.layers.Normalization, Preprocess)


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out += _all_layers(layer)
    return out


def has_input_preprocessing(model: Any) -> bool:
    """Whether ``model`` scales its input itself (a Rescaling / Normalization / Preprocess layer, nested ones too)."""
    return any(isinstance(layer, _PREPROCESSING) for layer in _all_layers(model))


def output_activation(model: Any) -> str | None:
    """The name of the activation of ``model``'s output layer (``softmax``, ``sigmoid``, ``linear`` ...),
    ``None`` when it cannot be read (a subclassed model, a custom output layer)."""
    hist = getattr(model.outputs[0], "_keras_history", None) if getattr(model, "outputs", None) else None
    layer = hist.operation if hist is not None else (model.layers[-1] if model.layers else None)
    while isinstance(layer, keras.Model) and layer.layers:  # a nested model as the last layer
        layer = layer.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", None) or str(act)


def _free_name(model: Any, name: str) -> str:
    taken = {layer.name for layer in _all_layers(model)}
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _call_inline(model: Any, x: Any) -> Any:
    """``model`` applied to ``x`` with its own layers called one by one (flat), or as one layer if it has no graph."""
    graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if graph is not None and hasattr(graph, "_run_through_graph") and len(graph.inputs) == 1:
        return graph._run_through_graph(x, operation_fn=lambda op: op)
    return model(x)


def adapt(model: Any, *, preprocess: str | None = None, activation: str | None = None) -> keras.Model:
    """``model`` taking raw 0..255 RGB (``preprocess`` inside) and giving probabilities (``activation`` after).

    Args:
        model: a Keras model with one image input.
        preprocess: a :data:`~kerasclf.zoo.layers.PREPROCESS_MODES` mode put first (``none`` too:
            it marks the model as taking raw pixels); ``None`` adds nothing.
        activation: ``softmax`` / ``sigmoid`` appended to a model that ends in logits; ``None`` adds nothing.

    Returns:
        A functional model with the same input shape and name; ``model`` itself when nothing is added.
    """
    if preprocess is None and activation is None:
        return model
    inputs = keras.Input(tuple(model.inputs[0].shape[1:]), name=_free_name(model, "image"))
    x = Preprocess(preprocess, name=_free_name(model, "preprocess"))(inputs) if preprocess is not None else inputs
    x = _call_inline(model, x)
    if activation is not None:
        x = keras.layers.Activation(activation, name=_free_name(model, "probabilities"))(x)
    return keras.Model(inputs, x, name=model.name)
