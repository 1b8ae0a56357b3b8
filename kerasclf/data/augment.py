"""Augmentation policies: Keras preprocessing layers on the graph, albumentations in parallel.

A *policy* is a callable ``(images, labels) -> (images, labels)`` that
:func:`kerasclf.data.pipeline.make_dataset` applies per batch, after the cache, with
``num_parallel_calls=AUTOTUNE``. Images are float32 ``(B, H, W, 3)`` in 0..255 on the way in
and on the way out (every step clips back to 0..255).

Two kinds of step, freely mixed in one policy:

* **Keras layers** (``RandomFlip``, ``RandomTranslation``, ``RandAugment``, ``MixUp`` …) run on
  the TensorFlow graph inside the ``tf.data`` map with ``training=True``. They can also be put
  inside the model instead (:func:`augment_in_model`).
* **albumentations** transforms run per image in NumPy/OpenCV through ``tf.numpy_function``; the
  batch-level map is parallel, so several batches are augmented at once. Static shapes are
  restored with ``set_shape``. Each concurrent call borrows an ``A.Compose`` from a small pool,
  the n-th one seeded with ``seed + 7919·n`` (albumentations 2.x ``Compose(seed=...)``): with one
  worker the draws repeat exactly; with several, which batch gets which draws depends on thread
  scheduling. Below 96×96 pixels the per-image work is Python overhead (GIL-bound), so batches are
  augmented one at a time rather than fighting over the GIL.

Named policies:

================ ================================================================================
``none``         no augmentation (``get_policy`` returns ``None``)
``light``        horizontal flip, shift ±5 %, zoom ±10 % (one fused :class:`RandomAffine` layer)
``cifar``        the seed's simple/deep CNN ``ImageDataGenerator``: horizontal flip, width/height
                 shift 0.1, rotation 15° (one fused :class:`RandomAffine` layer: the image is
                 resampled once, ~2.5× faster than the three stock layers)
``cifar_layers`` the same with the stock layers ``RandomFlip`` → ``RandomTranslation`` →
                 ``RandomRotation`` (what a Keras tutorial writes)
``seed_effnet``  the seed's EfficientNet albumentations policy: HorizontalFlip, Affine shift 0.1 /
                 scale ±10 % / rotate ±15° (the 2.x replacement of ShiftScaleRotate),
                 GridDistortion (p=0.2), ElasticTransform (p=0.2, ``approximate=True``: the
                 displacement field is smoothed with a fixed kernel, ~4.5× faster at 224×224)
``randaugment``  ``keras.layers.RandAugment(value_range=(0, 255))``
``mixup``        ``keras.layers.MixUp(alpha=0.2)`` — mixes labels too (see below)
``cutmix``       ``keras.layers.CutMix(factor=1.0)`` — mixes labels too
================ ================================================================================

A custom policy is a list whose items are named policies (strings) or single transforms (dicts)::

    [{"name": "RandomFlip", "mode": "horizontal"},
     {"name": "albumentations.GridDistortion", "p": 0.5},
     "mixup"]

A dict's ``name`` is a ``keras.layers`` class or ``albumentations.<Class>`` (``A.<Class>`` also
works); the other keys are its arguments. Keras layers that take ``value_range`` get
``(0, 255)`` unless given.

**Labels with MixUp / CutMix.** Mixing needs float labels. Binary ``(B, 1)`` and multi-label
``(B, K)`` float labels are mixed as they are. Integer class labels ``(B,)`` are one-hot encoded
to ``(B, num_classes)`` first, so pass ``num_classes=`` to :func:`get_policy`; the policy's
``one_hot_labels`` attribute is then ``True`` and the model must be compiled with
``categorical_crossentropy`` (not the sparse loss). Mixing is done on training data only.

Example:
    >>> import numpy as np
    >>> policy = get_policy("cifar", image_size=(32, 32), seed=1)
    >>> x, y = policy(np.full((2, 32, 32, 3), 128.0, "float32"), np.array([0, 1]))
    >>> tuple(x.shape), float(x.numpy().min()) >= 0.0, float(x.numpy().max()) <= 255.0
    ((2, 32, 32, 3), True, True)
    >>> get_policy("none", image_size=(32, 32)) is None
    True
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from kerasclf.data._seeds import derive_seed
from kerasclf.errors import ConfigError, UnknownNameError

__all__ = ["AugmentPolicy", "RandomAffine", "get_policy", "list_policies", "augment_in_model", "keyed_randomness",
           "POLICIES"]

Spec = dict[str, Any]

#: Named policies: each a list of transform dicts (the same format a recipe uses).
POLICIES: dict[str, list[Spec]] = {
    "none": [],
    "light": [{"name": "RandomAffine", "flip": True, "width_factor": 0.05, "height_factor": 0.05,
               "zoom": 0.1}],
    "cifar": [{"name": "RandomAffine", "flip": True, "width_factor": 0.1, "height_factor": 0.1,
               "rotation": 15.0}],
    "cifar_layers": [
        {"name": "RandomFlip", "mode": "horizontal"},
        {"name": "RandomTranslation", "height_factor": 0.1, "width_factor": 0.1},
        {"name": "RandomRotation", "factor": 15 / 360},
    ],
    "seed_effnet": [
        {"name": "albumentations.HorizontalFlip", "p": 0.5},
        {"name": "albumentations.Affine", "translate_percent": (-0.1, 0.1), "scale": (0.9, 1.1),
         "rotate": (-15, 15), "p": 0.5},
        {"name": "albumentations.GridDistortion", "p": 0.2},
        {"name": "albumentations.ElasticTransform", "approximate": True, "p": 0.2},
    ],
    "randaugment": [{"name": "RandAugment", "value_range": (0, 255)}],
    "mixup": [{"name": "MixUp", "alpha": 0.2}],
    "cutmix": [{"name": "CutMix", "factor": 1.0}],
}

_ALB_PREFIXES = ("albumentations.", "A.", "alb.")
_MIXERS = {"MixUp", "CutMix"}


def list_policies() -> list[str]:
    """Names accepted by :func:`get_policy`.

    Example:
        >>> "seed_effnet" in list_policies()
        True
    """
    return sorted(POLICIES)


# ----------------------------------------------------------------------------- fused affine layer
@keras.saving.register_keras_serializable(package="kerasclf")
class RandomAffine(keras.layers.Layer):
    """Random horizontal flip + shift + rotation + zoom as ONE image transform.

    Equivalent in distribution to ``RandomFlip("horizontal")`` → ``RandomTranslation`` →
    ``RandomRotation`` → ``RandomZoom``, but each image is resampled once instead of once per
    layer: about 2.5× faster on 224×224 batches and one interpolation blur instead of three.
    Active only with ``training=True``.

    Args:
        flip: flip horizontally with probability 0.5.
        width_factor: horizontal shift, a fraction of the width (``0.1``: ±10 %).
        height_factor: vertical shift, a fraction of the height.
        rotation: maximum rotation in degrees (``15``: ±15°).
        zoom: zoom range as a fraction (``0.1``: 90 %–110 %).
        fill_mode: ``reflect`` | ``constant`` | ``nearest`` | ``wrap`` | ``mirror``.
        interpolation: ``bilinear`` | ``nearest``.
        fill_value: value outside the image with ``fill_mode="constant"``.
        seed: random seed.

    Example:
        >>> import numpy as np
        >>> layer = RandomAffine(flip=True, width_factor=0.1, rotation=15, seed=0)
        >>> tuple(layer(np.zeros((2, 8, 8, 3), "float32"), training=True).shape)
        (2, 8, 8, 3)
    """

    def __init__(self, flip: bool = True, width_factor: float = 0.0, height_factor: float = 0.0,
                 rotation: float = 0.0, zoom: float = 0.0, fill_mode: str = "reflect",
                 interpolation: str = "bilinear", fill_value: float = 0.0, seed: int | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.flip = bool(flip)
        self.width_factor = float(width_factor)
        self.height_factor = float(height_factor)
        self.rotation = float(rotation)
        self.zoom = float(zoom)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False

    def call(self, images: Any, training: bool = True) -> Any:
        if not training:
            return images
        ops = keras.ops
        images = ops.convert_to_tensor(images)
        single = len(images.shape) == 3
        if single:
            images = ops.expand_dims(images, 0)
        shape = ops.shape(images)
        b = shape[0]
        h = ops.cast(shape[1], "float32")
        w = ops.cast(shape[2], "float32")
        u = keras.random.uniform((b, 5), minval=-1.0, maxval=1.0, seed=self.seed_generator)
        f = ops.where(u[:, 0] < 0, -1.0, 1.0) if self.flip else ops.ones((b,))
        tx = u[:, 1] * self.width_factor * w
        ty = u[:, 2] * self.height_factor * h
        theta = u[:, 3] * (self.rotation * np.pi / 180.0)
        z = 1.0 + u[:, 4] * self.zoom
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        cos, sin = ops.cos(theta), ops.sin(theta)
        # output pixel -> input pixel: undo shift, rotate back, zoom, flip, about the centre
        a0, a1 = f * z * cos, f * z * sin
        a2 = -f * z * (cos * (cx + tx) + sin * (cy + ty)) + cx
        b0, b1 = -z * sin, z * cos
        b2 = z * (sin * (cx + tx) - cos * (cy + ty)) + cy
        zero = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
        out = ops.image.affine_transform(ops.cast(images, "float32"), transform,
                                         interpolation=self.interpolation, fill_mode=self.fill_mode,
                                         fill_value=self.fill_value)
        out = ops.cast(out, images.dtype)
        return out[0] if single else out

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        cfg = super().get_config()
        cfg.update(flip=self.flip, width_factor=self.width_factor, height_factor=self.height_factor,
                   rotation=self.rotation, zoom=self.zoom, fill_mode=self.fill_mode,
                   interpolation=self.interpolation, fill_value=self.fill_value, seed=self.seed)
        return cfg


def _random_affine_cls() -> type:
    return RandomAffine


# ----------------------------------------------------------------------------- keyed randomness
class _KeyedSeed(keras.random.SeedGenerator):
    """Stands in for a layer's seed generator while a batch is traced: draw ``n`` gets the stateless
    seed ``derive_seed(key, n)``, so the batch's randomness is a function of ``key`` alone."""

    def __init__(self, key: Any):  # no state variable: nothing is carried between batches
        self._key, self._draws = key, itertools.count()

    def next(self, ordered: bool = True) -> Any:
        return derive_seed(self._key, next(self._draws))


@contextlib.contextmanager
def keyed_randomness(layers: Sequence[Any], key: Any) -> Iterator[None]:
    """While tracing ``layers``' calls, draw their random numbers from ``key`` (an int64 ``[2]`` tensor)
    instead of their seed generators' state: every ``keras.random.SeedGenerator`` the layers (and their
    sub-layers) hold, and the TensorFlow one a layer makes for tf.data on another backend.

    Example:
        >>> import tensorflow as tf
        >>> flip = keras.layers.RandomFlip("horizontal", seed=0)
        >>> x = tf.reshape(tf.range(8.0), (2, 2, 2, 1))
        >>> def run(key):
        ...     with keyed_randomness([flip], tf.constant(key, tf.int64)):
        ...         return flip(x, training=True).numpy()
        >>> bool((run([1, 2]) == run([1, 2])).all())
        True
    """
    keyed = _KeyedSeed(key)
    saved: list[tuple[Any, str, Any]] = []
    for layer in layers:
        for sub in layer._flatten_layers(include_self=True, recursive=True):
            for name, value in list(vars(sub).items()):
                if isinstance(value, keras.random.SeedGenerator):
                    saved.append((sub, name, value))
                    object.__setattr__(sub, name, keyed)  # not Layer.__setattr__: nothing gets tracked
            if hasattr(sub, "_get_seed_generator"):  # a preprocessing layer in tf.data off the TensorFlow backend
                saved.append((sub, "_backend_generators", vars(sub).get("_backend_generators")))
                object.__setattr__(sub, "_backend_generators",
                                   {**(vars(sub).get("_backend_generators") or {}), "tensorflow": keyed})
    try:
        yield
    finally:
        for sub, name, value in reversed(saved):
            if value is None and name == "_backend_generators":
                object.__delattr__(sub, name)
            else:
                object.__setattr__(sub, name, value)


# ----------------------------------------------------------------------------- steps
@dataclass
class _KerasStep:
    layers: list[Any]

    def __call__(self, images: Any, labels: Any, key: Any = None) -> tuple[Any, Any]:
        import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

        with keyed_randomness(self.layers, key) if key is not None else contextlib.nullcontext():
            for layer in self.layers:
                images = tf.cast(layer(images, training=True), tf.float32)
        return tf.clip_by_value(images, 0.0, 255.0), labels


@dataclass
class _MixStep:
    layer: Any
    num_classes: int | None

    def __call__(self, images: Any, labels: Any, key: Any = None) -> tuple[Any, Any]:
        import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

        if labels.dtype.is_integer or len(labels.shape) == 1:
            if not self.num_classes:
                raise ConfigError(
                    f"{type(self.layer).__name__} mixes labels and needs one-hot labels; integer class "
                    f"labels were given: pass num_classes= to get_policy (the model then needs "
                    f"categorical_crossentropy)")
            labels = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes)
        labels = tf.cast(labels, tf.float32)
        with keyed_randomness([self.layer], key) if key is not None else contextlib.nullcontext():
            out = self.layer({"images": images, "labels": labels}, training=True)
        images = tf.clip_by_value(tf.cast(out["images"], tf.float32), 0.0, 255.0)
        return images, tf.cast(out["labels"], tf.float32)


class _AlbStep:
    """albumentations transforms applied image by image inside ``tf.numpy_function``."""

    #: below this many pixels per image the per-image work is Python (GIL-bound) overhead, and
    #: parallel tf.data workers only fight over the GIL: run one batch at a time instead.
    SERIAL_BELOW_PIXELS = 96 * 96

    def __init__(self, transforms: list[Any], seed: int | None):
        self.transforms = transforms
        self.seed = seed
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._serial = threading.Lock()
        # A free list of Compose objects, one per concurrent caller. (threading.local does not
        # work here: TensorFlow runs numpy_function on its own threads, which get a fresh Python
        # thread state - and so a fresh threading.local - on every call.)
        self._free: list[Any] = []

    def _acquire(self) -> Any:
        with self._lock:
            if self._free:
                return self._free.pop()
        import albumentations as A

        n = next(self._counter)
        seed = None if self.seed is None else int(self.seed) + 7919 * n
        return A.Compose(copy.deepcopy(self.transforms), seed=seed)

    def _release(self, comp: Any) -> None:
        with self._lock:
            self._free.append(comp)

    def _numpy(self, images: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
        if images.shape[-3] * images.shape[-2] < self.SERIAL_BELOW_PIXELS:
            with self._serial:
                return self._run(images, key)
        return self._run(images, key)

    def _run(self, images: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
        comp = self._acquire()
        try:
            if key is not None:  # a keyed batch: its draws depend on the key, not on which Compose ran it
                a, b = (int(v) for v in np.asarray(key, np.int64))
                comp.set_random_seed((a ^ b) % 2 ** 32)
            return self._augment(comp, images)
        finally:
            self._release(comp)

    def _augment(self, comp: Any, images: np.ndarray) -> np.ndarray:
        batch = images[None] if images.ndim == 3 else images
        u8 = np.clip(np.rint(batch), 0, 255).astype(np.uint8)  # one vectorised conversion per batch
        for i in range(len(u8)):
            res = comp(image=u8[i])["image"]
            if res.shape != u8[i].shape:
                raise ValueError(f"albumentations changed the image shape {u8[i].shape} -> {res.shape}; "
                                 f"only shape-preserving transforms can be used in a policy")
            u8[i] = res
        out = u8.astype(np.float32)
        return out[0] if images.ndim == 3 else out

    def __call__(self, images: Any, labels: Any, key: Any = None) -> tuple[Any, Any]:
        import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

        shape = images.shape
        args = [tf.cast(images, tf.float32)] + ([tf.cast(key, tf.int64)] if key is not None else [])
        out = tf.numpy_function(self._numpy, args, tf.float32, stateful=key is None)
        out.set_shape(shape)
        return out, labels


# ----------------------------------------------------------------------------- the policy
@dataclass
class AugmentPolicy:
    """A composed augmentation policy: call it as ``policy(images, labels)``.

    Attributes:
        name: the policy name, or ``custom``.
        specs: the transform dicts it was built from.
        steps: the runnable steps, in order.
        keras_layers: the Keras preprocessing layers (excluding MixUp/CutMix), for
            :func:`augment_in_model`.
        uses_albumentations: whether any step runs through ``tf.numpy_function``.
        one_hot_labels: whether integer labels come out one-hot (MixUp / CutMix with ``num_classes``).
    """

    name: str
    specs: list[Spec]
    steps: list[Callable[[Any, Any], tuple[Any, Any]]] = field(repr=False)
    keras_layers: list[Any] = field(default_factory=list, repr=False)
    uses_albumentations: bool = False
    one_hot_labels: bool = False

    def __call__(self, images: Any, labels: Any, key: Any = None) -> tuple[Any, Any]:
        """Augment a batch (or one image): float32 0..255 in, float32 0..255 out.

        ``key`` (an int64 ``[2]`` tensor, e.g. :func:`kerasclf.data._seeds.derive_seed` of the seed, the
        pass and the batch): every random draw is a function of it (the same key, the same augmentation,
        whatever ran before); without it the layers' seed generators and the transforms' random state
        advance from call to call.
        """
        import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

        images = tf.cast(images, tf.float32)
        labels = tf.convert_to_tensor(labels)
        for i, step in enumerate(self.steps):
            images, labels = step(images, labels, None if key is None else derive_seed(key, i))
        return images, labels


def _expand(name_or_list: str | Sequence[str | Spec] | Spec) -> tuple[str, list[Spec]]:
    if isinstance(name_or_list, str):
        key = name_or_list.strip().lower()
        if key not in POLICIES:
            raise UnknownNameError("augmentation policy", name_or_list, POLICIES,
                                   hint="or give a list of transforms")
        return key, [dict(s) for s in POLICIES[key]]
    if isinstance(name_or_list, dict):
        name_or_list = [name_or_list]
    if not isinstance(name_or_list, (list, tuple)):
        raise ConfigError(f"augmentation: expected a policy name or a list of transforms, "
                          f"got {type(name_or_list).__name__}")
    specs: list[Spec] = []
    for item in name_or_list:
        if isinstance(item, str):
            specs += _expand(item)[1]
        elif isinstance(item, dict):
            if "name" not in item:
                raise ConfigError(f"augmentation: transform {item!r} has no 'name' key")
            specs.append(dict(item))
        else:
            raise ConfigError(f"augmentation: list items must be names or dicts, got {item!r}")
    return "custom", specs


def _keras_layer_names() -> list[str]:
    return [n for n in dir(keras.layers) if n.startswith("Random") or n in
            ("RandAugment", "MixUp", "CutMix", "AugMix", "Solarization", "Equalization",
             "Rescaling", "Resizing", "CenterCrop", "AutoContrast")]


def _build_keras(spec: Spec, seed: int | None) -> Any:
    name, kwargs = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    cls = _random_affine_cls() if name == "RandomAffine" else getattr(keras.layers, name, None)
    if cls is None or not isinstance(cls, type):
        raise UnknownNameError("Keras augmentation layer", name, _keras_layer_names() + ["RandomAffine"],
                               hint="albumentations transforms are written 'albumentations.<Name>'")
    params = inspect.signature(cls.__init__).parameters
    if "value_range" in params and "value_range" not in kwargs:
        kwargs["value_range"] = (0, 255)
    if "seed" in params and "seed" not in kwargs and seed is not None:
        kwargs["seed"] = seed
    for k in ("value_range",):
        if isinstance(kwargs.get(k), list):
            kwargs[k] = tuple(kwargs[k])
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"augmentation {name}: bad arguments {kwargs} ({e})") from None


def _build_alb(spec: Spec) -> Any:
    import albumentations as A

    full = spec["name"]
    name = next(full[len(p):] for p in _ALB_PREFIXES if full.startswith(p))
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "name"}
    cls = getattr(A, name, None)
    if cls is None or not isinstance(cls, type):
        known = [n for n in dir(A) if n[:1].isupper()]
        raise UnknownNameError("albumentations transform", name, known)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"augmentation {full}: unknown argument(s) {', '.join(unknown)} for "
                          f"albumentations {A.__version__}; it takes: "
                          f"{', '.join(k for k in accepted if k != 'self')}")
    try:
        return cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - albumentations validates with pydantic
        raise ConfigError(f"augmentation {full}: bad arguments {kwargs} ({str(e).splitlines()[0]})") from None


def get_policy(name_or_list: str | Sequence[str | Spec] | Spec | None, *, image_size: Sequence[int],
               seed: int | None = None, num_classes: int | None = None) -> AugmentPolicy | None:
    """Build an augmentation policy (see :func:`_get_policy`); its Keras layers always compute in
    float32, whatever mixed-precision policy the model uses: they run in the data pipeline on
    0..255 pixels, before the model."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return _get_policy(name_or_list, image_size=image_size, seed=seed, num_classes=num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _get_policy(name_or_list: str | Sequence[str | Spec] | Spec | None, *, image_size: Sequence[int],
                seed: int | None = None, num_classes: int | None = None) -> AugmentPolicy | None:
    """Build an augmentation policy by name or from a list of transforms.

    Args:
        name_or_list: a name from :func:`list_policies`, a list of names / transform dicts, or
            ``None`` / ``"none"`` for no augmentation.
        image_size: ``(H, W)`` of the images the policy will see (recorded; albumentations
            steps restore this static shape).
        seed: seed for every random layer / transform (``None``: random).
        num_classes: needed by MixUp / CutMix to one-hot integer class labels.

    Returns:
        An :class:`AugmentPolicy`, or ``None`` when there is nothing to do.

    Raises:
        UnknownNameError: an unknown policy, Keras layer or albumentations transform; the message
            lists close matches.
        ConfigError: bad transform arguments.

    Example:
        >>> p = get_policy([{"name": "RandomFlip", "mode": "horizontal"},
        ...                 {"name": "albumentations.GridDistortion", "p": 0.5}],
        ...                image_size=(32, 32), seed=0)
        >>> p.uses_albumentations, len(p.steps)
        (True, 2)
    """
    if name_or_list is None:
        return None
    name, specs = _expand(name_or_list)
    if not specs:
        return None
    steps: list[Any] = []
    keras_layers: list[Any] = []
    uses_alb = one_hot = False
    pending_keras: list[Any] = []
    pending_alb: list[Any] = []

    def flush() -> None:
        if pending_keras:
            steps.append(_KerasStep(list(pending_keras)))
            pending_keras.clear()
        if pending_alb:
            steps.append(_AlbStep(list(pending_alb), seed))
            pending_alb.clear()

    for i, spec in enumerate(specs):
        sub_seed = None if seed is None else int(seed) + i
        if str(spec["name"]).startswith(_ALB_PREFIXES):
            if pending_keras:
                flush()
            pending_alb.append(_build_alb(spec))
            uses_alb = True
            continue
        if pending_alb:
            flush()
        layer = _build_keras(spec, sub_seed)
        if spec["name"] in _MIXERS:
            flush()
            steps.append(_MixStep(layer, num_classes))
            one_hot = one_hot or bool(num_classes)
        else:
            pending_keras.append(layer)
            keras_layers.append(layer)
    flush()
    policy = AugmentPolicy(name=name, specs=specs, steps=steps, keras_layers=keras_layers,
                           uses_albumentations=uses_alb, one_hot_labels=one_hot)
    policy.image_size = (int(image_size[0]), int(image_size[1]))  # type: ignore[attr-defined]
    return policy


def augment_in_model(model: Any, policy: AugmentPolicy | str | Sequence[Any], *,
                     image_size: Sequence[int] | None = None, seed: int | None = None) -> Any:
    """Wrap ``model`` so its Keras-layer augmentation runs inside it (training only).

    Only Keras layers can live in a model: a policy with albumentations steps or MixUp/CutMix
    (which change labels) is refused. The preprocessing layers are active in ``fit`` and
    no-ops in ``predict``/``evaluate``, and they are saved with the model.

    Args:
        model: a built ``keras.Model`` taking ``(H, W, C)`` images in 0..255.
        policy: an :class:`AugmentPolicy` or anything :func:`get_policy` takes.
        image_size: needed when ``policy`` is not yet built (default: the model's input size).
        seed: seed when building ``policy``.

    Returns:
        A new ``keras.Model``: input → augmentation layers → ``model``.

    Example:
        >>> import keras
        >>> inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> outer = augment_in_model(inner, "light")
        >>> outer.output_shape
        (None, 2)
    """
    shape = tuple(model.input_shape[1:])
    if not isinstance(policy, AugmentPolicy):
        policy = get_policy(policy, image_size=image_size or shape[:2], seed=seed)
    if policy is None:
        return model
    if policy.uses_albumentations or any(isinstance(s, _MixStep) for s in policy.steps):
        raise ConfigError(f"augmentation policy '{policy.name}': only Keras layers can run inside the "
                          f"model; albumentations and MixUp/CutMix must run in the data pipeline "
                          f"(augment_in_model: false)")
    inp = keras.Input(shape, name="image")
    x = inp
    for layer in policy.keras_layers:
        x = layer(x)
    return keras.Model(inp, model(x), name=f"{model.name}_augmented")
