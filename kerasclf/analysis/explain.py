"""Attribution maps: Grad-CAM, Grad-CAM++ and SmoothGrad saliency via tf-keras-vis.

The explanation model
---------------------
tf-keras-vis (0.8.7) builds ``Model(model.inputs, model.outputs + [layer.output])`` for its target
layer. That only works when ``layer.output`` lives in the *outer* model's graph. In a transfer
model the last convolution sits inside the nested ``backbone`` model, whose ``layer.output``
belongs to the backbone's own graph; Keras 3 refuses to connect it ("Output with path `1` is not
connected to `inputs`"), both when tf-keras-vis searches the layer itself (it recurses into
nested models) and when it is named. Checked on MobileNet nested as ``backbone``.

:func:`build_explain_model` therefore re-runs the model's functional graph on fresh inputs,
*inlining* every nested model on the way to the target layer (its layers are called directly on
the outer tensors: weights shared, nothing copied), and inserts an ``Identity`` layer named
:data:`TAP` right after the target layer. The result is one flat functional model whose ``TAP``
output is the target feature map, which tf-keras-vis handles. The same rebuild gives the output
layer a linear activation (a copy of its few weights), so the scores are logits, as tf-keras-vis
recommends (its ``ReplaceToLinear`` would clone the whole model a second time); softmax logits are
centred (``z_c - mean(z)``), since softmax ignores a shared offset.

Keras 3 compatibility of tf-keras-vis 0.8.7 (read from its source and exercised by the tests):
``Gradcam``, ``GradcamPlusPlus`` and ``Saliency`` (SmoothGrad via ``smooth_samples``) use only
``tf.GradientTape``, ``tf.keras.Model`` and ``tf.keras.backend`` functions that Keras 3 still
provides, and work unchanged on the flat model; no method had to be re-implemented. Two things
are done here instead of by tf-keras-vis: upsampling the CAM (its ``scipy.ndimage.zoom`` aligns
corners, shifting the map by up to half a cell; we use ``tf.image.resize``) and normalising each
map (its ``1e-7`` in the denominator zeroes the tiny gradients of saturated models). Everything
needs the TensorFlow backend; other backends raise :class:`~kerasclf.errors.BackendError`.

Example:
    >>> heat = explain(model, images, method="gradcam")  # doctest: +SKIP
    >>> heat.shape == images.shape[:3]                     # doctest: +SKIP
    True
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy.ndimage import zoom

from kerasclf.errors import BackendError, ModelError

__all__ = ["explain", "find_last_conv_layer", "overlay", "build_explain_model", "METHODS", "TAP"]

METHODS = ("gradcam", "gradcam++", "smoothgrad", "saliency")
TAP = "kerasclf_explain_target"
_ALIASES = {"gradcam": "gradcam", "grad-cam": "gradcam", "gradcam++": "gradcam++", "gradcamplusplus": "gradcam++",
            "gradcam_plus_plus": "gradcam++", "grad-cam++": "gradcam++", "smoothgrad": "smoothgrad",
            "saliency": "saliency", "vanilla_saliency": "saliency"}


def _require_tensorflow() -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(f"explanations (Grad-CAM, saliency) use tf-keras-vis, which needs the TensorFlow "
                           f"backend, but Keras runs on '{backend}'; set KERAS_BACKEND=tensorflow")
    try:
        import tf_keras_vis  # noqa: F401
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise BackendError(f"explanations need tf-keras-vis ({e}); run `pip install tf-keras-vis`") from e


def _is_model(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _graph(model: Any) -> Any:
    """The functional graph of a model (a Sequential model keeps one inside)."""
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise ModelError(f"Sequential model '{model.name}' is not built; call it on data once, "
                             f"or give it an Input layer")
        return fn
    if not hasattr(model, "_run_through_graph") or not hasattr(model, "_nodes_by_depth"):
        raise ModelError(f"model '{model.name}' is a subclassed model; explanations need a functional or "
                         f"Sequential model (build it with keras.Input)")
    return model


def _walk(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, layer) of every non-model layer, nested models inlined, in graph order."""
    out: list[tuple[str, Any]] = []
    for layer in model.layers:
        if _is_model(layer):
            out += _walk(layer, f"{prefix}{layer.name}/")
        else:
            out.append((f"{prefix}{layer.name}", layer))
    return out


def _out_shape(layer: Any) -> tuple | None:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # layers with several inbound nodes have no single output
        return None


def _is_conv(layer: Any) -> bool:
    convs = tuple(getattr(keras.layers, n) for n in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D",
                                                     "Conv2DTranspose") if hasattr(keras.layers, n))
    if isinstance(layer, convs):
        return True
    # a custom block that is not a model but holds convolutions (e.g. the zoo's ResidualUnit)
    if isinstance(layer, keras.Model) or not hasattr(layer, "_flatten_layers"):
        return False
    return any(isinstance(sub, convs) for sub in layer._flatten_layers(include_self=False))


def find_last_conv_layer(model: Any) -> str:
    """Path of the layer Grad-CAM should use: the last 2-D convolution, or the last layer after it
    that keeps its feature-map shape (its batch norm / activation / residual add).

    Nested models are searched too; a layer inside them is named ``outer/inner`` (for example
    ``backbone/conv_pw_13_relu`` for MobileNet nested as ``backbone``). The path can be given back
    as ``layer=`` to :func:`explain`.

    Args:
        model: a functional or Sequential Keras model (possibly with nested models).

    Returns:
        the layer's path, ``/``-separated.

    Raises:
        ModelError: when the model has no 2-D convolution.

    Example:
        >>> import keras
        >>> x = keras.Input((16, 16, 3))
        >>> y = keras.layers.Conv2D(4, 3, name="c1")(x)
        >>> y = keras.layers.ReLU(name="r1")(y)
        >>> y = keras.layers.GlobalAveragePooling2D(name="features")(y)
        >>> find_last_conv_layer(keras.Model(x, keras.layers.Dense(2, name="predictions")(y)))
        'r1'
    """
    layers = _walk(model)
    conv_at = [i for i, (_, layer) in enumerate(layers) if _is_conv(layer) and len(_out_shape(layer) or ()) == 4]
    if not conv_at:
        raise ModelError(f"model '{model.name}' has no 2-D convolution layer to explain; pass layer= "
                         f"the name of a layer with a (batch, height, width, channels) output")
    i = conv_at[-1]
    path, layer = layers[i]
    shape = _out_shape(layer)
    container = path.rsplit("/", 1)[0] if "/" in path else ""
    best = path
    for p, nxt in layers[i + 1:]:
        if (p.rsplit("/", 1)[0] if "/" in p else "") != container:
            break
        s = _out_shape(nxt)
        if s is None or len(s) != 4 or s[1:3] != shape[1:3]:
            break
        best = p
    return best


def _resolve(model: Any, layer: str) -> list[Any]:
    """[nested model, ..., target layer] for a path ``a/b/c`` or a plain (unique-first) name."""
    if "/" in layer:
        parts, cur, chain = layer.split("/"), model, []
        for part in parts:
            try:
                cur = cur.get_layer(part)
            except ValueError:
                cur = None
            if cur is None:
                break
            chain.append(cur)
        if len(chain) == len(parts):
            return chain
    else:
        for path, obj in _walk(model):
            if path.rsplit("/", 1)[-1] == layer:
                chain, cur = [], model
                for part in path.split("/"):
                    cur = cur.get_layer(part)
                    chain.append(cur)
                return chain
        for obj in model.layers:  # a nested model itself named as target
            if obj.name == layer:
                return [obj]
    known = [p for p, obj in _walk(model) if len(_out_shape(obj) or ()) == 4][-8:]
    raise ModelError(f"no layer '{layer}' in model '{model.name}'; layers with feature maps near the end: "
                     f"{', '.join(known) or 'none'} (use '/' for nested models, e.g. backbone/conv)")


def _output_layer(model: Any) -> Any:
    try:
        return model.get_layer("predictions")
    except ValueError:
        pass
    hist = getattr(model.outputs[0], "_keras_history", None)
    return hist.operation if hist is not None else model.layers[-1]


def _linear_copy(layer: Any, input_shape: tuple) -> Any:
    """The same layer with a linear activation (weights copied), or ``None`` when already linear."""
    act = getattr(layer, "activation", None)
    if act is None or act is keras.activations.linear or getattr(act, "__name__", "") == "linear":
        if isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.Activation)
                                                        and getattr(layer.activation, "__name__", "") != "linear"):
            return keras.layers.Identity()
        return None
    if isinstance(layer, keras.layers.Activation):
        return keras.layers.Identity()
    cfg = layer.get_config()
    cfg["activation"] = "linear"
    cfg["name"] = f"{layer.name}_linear"
    new = layer.__class__.from_config(cfg)
    new.build(input_shape)
    _copy_head_weights(layer, new)
    return new


def _copy_head_weights(src: Any, dst: Any) -> None:
    weights = src.get_weights()
    act = getattr(src, "activation", None)
    if getattr(act, "__name__", "") == "softmax" and isinstance(src, keras.layers.Dense) and len(weights) == 2:
        # Softmax ignores a constant added to every logit, so a raw logit z_c carries an arbitrary
        # offset shared by all classes; explain the centred logit z_c - mean(z) instead (the same
        # softmax), which for two classes is (z_c - z_other) / 2: evidence *for c against the rest*.
        kernel, bias = weights
        weights = [kernel - kernel.mean(axis=-1, keepdims=True), bias - bias.mean()]
    dst.set_weights(weights)


# model -> {(layer, linear_output): (flat model, path, output layer, head copy)}; weak, so models can die
_CACHE: "weakref.WeakKeyDictionary[Any, dict[tuple[str | None, bool], tuple[Any, str, Any, Any]]]" = \
    weakref.WeakKeyDictionary()


def build_explain_model(model: Any, layer: str | None = None, *, linear_output: bool = True) -> tuple[Any, str]:
    """A flat functional copy of ``model`` (shared weights) with an identity tap after ``layer``.

    Args:
        model: functional/Sequential model, possibly with nested models (a transfer ``backbone``).
        layer: name or ``/``-path of the target layer; ``None``: :func:`find_last_conv_layer`.
        linear_output: give the output layer a linear activation, so scores are logits.

    Returns:
        ``(flat_model, path)``: the flat model, whose layer :data:`TAP` outputs the target feature
        map, and the target layer's path.

    Example:
        >>> flat, where = build_explain_model(model)            # doctest: +SKIP
        >>> flat.get_layer(TAP).output.shape[1:3]               # doctest: +SKIP
        (1, 1)
    """
    try:
        cached = _CACHE.get(model, {}).get((layer, linear_output))
    except TypeError:  # unhashable or not weak-referenceable: no cache
        cached = None
    if cached is not None:
        flat, path, out_layer, head = cached
        if head is not None and len(head.get_weights()):
            _copy_head_weights(out_layer, head)  # the model may have been trained since
        return flat, path
    path = layer or find_last_conv_layer(model)
    chain = _resolve(model, path)
    target, containers = chain[-1], {id(m) for m in chain[:-1]}
    if _is_model(target):
        raise ModelError(f"layer '{path}' is a whole model; name a layer inside it, e.g. {path}/<conv layer>")
    out_layer = _output_layer(model) if linear_output else None
    tap = keras.layers.Identity(name=TAP)
    state: dict[str, Any] = {}

    def call_fn(op: Any, *args: Any, **kwargs: Any) -> Any:
        if id(op) in containers:  # inline the nested model on the outer tensors
            inner = _graph(op)
            return inner._run_through_graph(list(args) if len(args) > 1 else args[0],
                                            operation_fn=lambda o: o, call_fn=call_fn)
        if op is out_layer:
            if "head" not in state:
                state["head"] = _linear_copy(op, tuple(args[0].shape))
            out = (state["head"] or op)(*args, **kwargs)
        else:
            out = op(*args, **kwargs)
        if op is target:
            if "tapped" in state:
                raise ModelError(f"layer '{path}' is called more than once in the model; name another layer")
            state["tapped"] = True
            out = tap(out)
        return out

    graph = _graph(model)
    inputs = [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype) for t in graph.inputs]
    outputs = graph._run_through_graph(inputs, operation_fn=lambda o: o, call_fn=call_fn)
    if "tapped" not in state:
        raise ModelError(f"layer '{path}' is not on the path from the input to the output of '{model.name}'")
    flat = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=f"{model.name}_explain")
    try:
        _CACHE.setdefault(model, {})[(layer, linear_output)] = (flat, path, out_layer, state.get("head"))
    except TypeError:
        pass
    return flat, path


def _targets(model: Any, images: np.ndarray, class_index: int | Sequence[int] | None) -> tuple[list[int], bool]:
    """Per-image target unit and whether the output is one sigmoid unit (binary)."""
    n_out = int(model.outputs[0].shape[-1])
    binary = n_out == 1
    if class_index is None:
        p = np.asarray(model.predict(images, verbose=0, batch_size=32)).reshape(len(images), -1)
        idx = (p[:, 0] >= 0.5).astype(int) if binary else p.argmax(axis=1)
    else:
        idx = np.broadcast_to(np.asarray(class_index, dtype="int64"), (len(images),))
    idx = [int(i) for i in idx]
    top = 1 if binary else n_out - 1
    bad = [i for i in idx if i < 0 or i > top]
    if bad:
        raise ModelError(f"class_index {bad[0]} is out of range; the model has "
                         f"{2 if binary else n_out} classes (0..{top})")
    return idx, binary


def explain(model: Any, images: Any, *, method: str = "gradcam", class_index: int | Sequence[int] | None = None,
            layer: str | None = None, smooth_samples: int = 20, smooth_noise: float = 0.2,
            batch_size: int = 16) -> np.ndarray:
    """Attribution heatmaps ``(N, H, W)`` in 0..1 at the input image size.

    Args:
        model: a kerasclf model (raw 0..255 RGB in; ``predictions`` out), nested backbone allowed.
        images: ``(N, H, W, 3)`` (or one ``(H, W, 3)`` image) as the model takes them.
        method: ``gradcam``, ``gradcam++``, ``smoothgrad`` (SmoothGrad saliency) or ``saliency``.
        class_index: class to explain, one int or one per image; ``None`` explains the predicted
            class. For a binary (one-sigmoid) model, 1 is the positive class and 0 the negative.
        layer: layer for the CAM methods, a name or a ``backbone/layer`` path; default
            :func:`find_last_conv_layer`.
        smooth_samples: noisy copies averaged by SmoothGrad.
        smooth_noise: SmoothGrad noise, as a fraction of each image's value range.
        batch_size: images per gradient computation.

    Returns:
        float32 array ``(N, H, W)``, each map scaled to 0..1.

    Raises:
        BackendError: when Keras does not run on TensorFlow.
        ModelError: unknown layer, or a model without a convolution for the CAM methods.

    Example:
        >>> maps = explain(model, images[:4], method="gradcam++")  # doctest: +SKIP
        >>> float(maps.min()) >= 0 and float(maps.max()) <= 1     # doctest: +SKIP
        True
    """
    _require_tensorflow()
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

    key = _ALIASES.get(str(method).lower().replace(" ", ""))
    if key is None:
        raise ModelError(f"unknown explanation method '{method}'; use one of: {', '.join(METHODS)}")
    x = np.asarray(images, dtype="float32")
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ModelError(f"images must be (N, H, W, C); got shape {x.shape}")
    idx, binary = _targets(model, x, class_index)
    flat, _ = build_explain_model(model, layer if key in ("gradcam", "gradcam++") else (layer or _any_layer(model)))
    out = []
    with warnings.catch_warnings():  # tf-keras-vis feeds a list to a one-input model
        warnings.filterwarnings("ignore", message="The structure of `inputs`", category=UserWarning)
        for s in range(0, len(x), batch_size):
            xb, ib = x[s:s + batch_size], idx[s:s + batch_size]
            score = BinaryScore([bool(i) for i in ib]) if binary else CategoricalScore(ib)
            seed = tf.constant(xb)
            if key in ("gradcam", "gradcam++"):
                if key == "gradcam":
                    from tf_keras_vis.gradcam import Gradcam as Cam
                else:
                    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Cam
                cam = Cam(flat, clone=False)(score, seed, penultimate_layer=TAP, seek_penultimate_conv_layer=False,
                                             expand_cam=False, normalize_cam=False)
                maps = _upsample(np.asarray(cam, dtype="float32"), xb.shape[1:3])
            else:
                from tf_keras_vis.saliency import Saliency

                samples = smooth_samples if key == "smoothgrad" else 0
                maps = Saliency(flat, clone=False)(score, seed, smooth_samples=samples, smooth_noise=smooth_noise,
                                                   keepdims=False, normalize_map=False)
            out.append(_normalize(np.asarray(maps, dtype="float64").reshape(len(xb), *xb.shape[1:3])))
    heat = np.nan_to_num(np.clip(np.concatenate(out), 0.0, 1.0))
    return heat[0] if single else heat


def _upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize ``(N, h, w) -> (N, H, W)`` with half-pixel centres.

    tf-keras-vis' ``expand_cam`` uses ``scipy.ndimage.zoom``, which aligns the corner pixels and so
    shifts the map by up to half a feature-map cell towards the centre; ``tf.image.resize``
    keeps every cell over the pixels it covers."""
    return tf.image.resize(cam[..., None], size, method="bilinear").numpy()[..., 0]


def _normalize(maps: np.ndarray) -> np.ndarray:
    """Scale each map to 0..1 by its own range (tf-keras-vis adds 1e-7 to the range, which wipes
    out the tiny gradients of an untrained or saturated model); a constant map becomes 0."""
    lo = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - lo
    tiny = span <= 1e-30 + 1e-6 * np.abs(lo)
    return np.where(tiny, 0.0, (maps - lo) / np.where(tiny, 1.0, span)).astype("float32")


def _any_layer(model: Any) -> str:
    """A target for the flat rebuild when no CAM layer is needed (saliency): the last conv if any."""
    try:
        return find_last_conv_layer(model)
    except ModelError:
        return model.layers[-1].name


def overlay(image: Any, heatmap: Any, *, alpha: float = 0.6, cmap: str = "jet") -> np.ndarray:
    """Blend a 0..1 heatmap (resized to the image if needed) over an image as a colour map.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)``; uint8, float 0..255 or float 0..1.
        heatmap: ``(h, w)`` values in 0..1.
        alpha: weight of the colour map where the heatmap is 1 (0.2 of it where it is 0).
        cmap: a matplotlib colour map name.

    Returns:
        uint8 RGB image ``(H, W, 3)``.

    Example:
        >>> import numpy as np
        >>> overlay(np.zeros((8, 8, 3), "uint8"), np.ones((4, 4))).shape
        (8, 8, 3)
    """
    from matplotlib import colormaps
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    was_uint8 = img.dtype == np.uint8
    img = img.astype("float64")
    if not was_uint8 and img.size and img.max() <= 1.0 + 1e-6 and img.min() >= 0:
        img = img * 255.0
    h = np.nan_to_num(np.asarray(heatmap, dtype="float64"))
    if h.shape != img.shape[:2]:
        h = zoom(h, (img.shape[0] / h.shape[0], img.shape[1] / h.shape[1]), order=1)
        h = h[: img.shape[0], : img.shape[1]]
    h = np.clip(h, 0.0, 1.0)
    colour = colormaps[cmap](h)[..., :3] * 255.0
    weight = (alpha * (0.2 + 0.8 * h))[..., None]  # cold regions let the image show through
    return np.clip((1 - weight) * img[..., :3] + weight * colour, 0, 255).astype("uint8")
