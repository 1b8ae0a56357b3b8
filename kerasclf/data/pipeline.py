"""tf.data pipelines from a :class:`DataSpec`: parallel decode, resize, cache, shuffle, batch, prefetch.

Order of operations (the fast one): ``paths → parallel decode + resize (uint8) → drop failures →
cache → shuffle → batch → float32 + augmentation (per batch) → prefetch``. Caching the resized
uint8 images keeps memory at a quarter of float32 and means decoding happens once. Without a
cache the (cheap) paths are shuffled before decoding instead. With a ``seed`` the pipeline is
deterministic (``tf.data.Options.deterministic``) and the order is the same on every run.

Decoding has two paths. Every file is first *pre-validated* from its header
(:func:`~kerasclf.data.reader.probe_image`: a PIL ``open`` without decoding, plus a check that a
JPEG/PNG ends where it should): unusable files (zero-byte, not an image, over ``max_pixels``, a
side under ``MIN_SIDE``, animations over ``DEFAULT_MAX_FRAMES`` frames) are left out and
recorded in ``spec.skipped`` as ``(path, reason)`` before TensorFlow's decoders (which have no pixel limit) see them; plain
8-bit JPEG/PNG/BMP and single-frame GIF go through ``tf.io.decode_image`` (fast, in the
graph); everything else (CMYK, 16-bit, WebP, truncated-looking files ...) goes through the PIL
reader (:func:`kerasclf.data.reader.read_image`) via ``tf.numpy_function``. A file that still
fails at decode time is dropped from the stream (never a crash mid-epoch) and appended to
``spec.skipped`` when it is met. The trainer writes ``spec.skipped`` to the run folder.

Example:
    >>> from kerasclf.data.sources import digits
    >>> ds = make_dataset(digits(), image_size=(32, 32), batch_size=8)
    >>> x, y = next(iter(ds))
    >>> tuple(x.shape), x.dtype.name, tuple(y.shape), y.dtype.name
    ((8, 32, 32, 3), 'float32', (8,), 'int32')
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from kerasclf.data._seeds import derive_seed
from kerasclf.data.augment import AugmentPolicy
from kerasclf.data.reader import DEFAULT_MAX_PIXELS, ImageReadError, probe_image, read_image
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError

__all__ = ["make_dataset", "make_passes", "Passes", "prevalidate", "file_batches", "FileBatches", "spec_batches", "split_arrays"]

_FAST_MODES = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "RGBA", "L", "LA", "P"}, "GIF": {"P", "L", "RGB"},
               "BMP": {"RGB"}}
_lock = threading.Lock()


def _check_file(path: str, max_pixels: int) -> tuple[bool, str | None]:
    """(fast, reason): ``reason`` set when the file cannot be used; ``fast`` when TF can decode it.

    The header guards (:func:`~kerasclf.data.reader.probe_image`) run before any decoder, so a
    file TF's decoders would blow up on (a bomb, thousands of GIF frames) never reaches them.
    """
    try:
        info = probe_image(path, max_pixels=max_pixels)
    except ImageReadError as e:
        return False, e.reason
    fmt, mode, size = info.format, info.mode, info.bytes
    # TF decodes every frame of a GIF even with expand_animations=False: animations go to PIL,
    # which reads the first frame only
    fast = info.frames == 1 and mode in _FAST_MODES.get(fmt or "", set())
    if fast and fmt in ("JPEG", "PNG"):
        try:
            with open(path, "rb") as f:
                head = f.read(32)
                f.seek(max(0, size - 12))
                tail = f.read()
        except OSError as e:
            return False, f"cannot read file ({e.strerror})"
        if fmt == "JPEG" and not tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
            fast = False  # maybe truncated: let the PIL reader decide
        if fmt == "PNG" and (b"IEND" not in tail or (len(head) > 24 and head[24] == 16)):
            fast = False  # maybe truncated, or 16-bit
    return fast, None


def prevalidate(paths: Sequence[str], *, max_pixels: int | None = None,
                workers: int = 8) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Check every file's header; return (fast-path flag per file or ``-1`` if unusable, skipped).

    Args:
        paths: image files.
        max_pixels: the decompression-bomb guard (default :data:`~kerasclf.data.reader.DEFAULT_MAX_PIXELS`).
        workers: threads reading headers.

    Returns:
        ``flags`` (int8: 1 = TF decodes it, 0 = PIL reader, -1 = unusable) and the
        ``(path, reason)`` list of unusable files.

    Example:
        >>> flags, skipped = prevalidate(["a.jpg", "empty.jpg"])  # doctest: +SKIP
        >>> skipped  # doctest: +SKIP
        [('empty.jpg', 'zero-byte file')]
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(ex.map(lambda p: _check_file(p, limit), paths, chunksize=64))
    flags = np.array([(-1 if r else int(fast)) for fast, r in results], dtype=np.int8)
    skipped = [(p, r) for p, (_, r) in zip(paths, results) if r]
    return flags, skipped


def _labels_for(spec: DataSpec, labels: np.ndarray) -> np.ndarray:
    if spec.task == "multilabel":
        return np.asarray(labels, dtype=np.float32).reshape(len(labels), -1)
    if spec.task == "binary":
        return np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    return np.asarray(labels, dtype=np.int32).reshape(-1)


def _record(spec: DataSpec, items: list[tuple[str, str]]) -> None:
    with _lock:
        have = {p for p, _ in spec.skipped}
        for p, r in items:
            if p not in have:
                spec.skipped.append((p, r))
                have.add(p)


def _ok(x: Any, y: Any, ok: Any) -> Any:
    return ok


def _drop_ok(x: Any, y: Any, ok: Any) -> tuple[Any, Any]:
    return x, y


class _Items:
    """The items of one split on their way to tensors: pre-validated once (unusable files left out and
    recorded), then a cheap :meth:`source` (arrays or paths with labels) that :meth:`decode` turns into
    ``(uint8 image (H, W, channels), label)`` elements. :func:`make_dataset` and :func:`make_passes` share it."""

    def __init__(self, spec: DataSpec, index: Sequence[int] | np.ndarray | None, image_size: Sequence[int],
                 channels: int, max_pixels: int | None, deterministic: bool):
        if channels not in (1, 3):
            raise ConfigError(f"channels={channels}: use 1 or 3")
        self.spec, self.channels, self.deterministic = spec, channels, deterministic
        self.h, self.w = (int(image_size[0]), int(image_size[1]))
        idx = np.arange(len(spec)) if index is None else np.asarray(index, dtype=int)
        labels = _labels_for(spec, spec.labels[idx])
        self.limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        if spec.images is not None:
            self.arrays: tuple[Any, ...] = (spec.images[idx], labels)
            self.kind = "same" if (spec.images.shape[1:3] == (self.h, self.w)
                                   and spec.images.shape[-1] == channels) else "arrays"
        else:
            paths = [spec.paths[i] for i in idx]
            flags, bad = prevalidate(paths, max_pixels=self.limit)
            _record(spec, bad)
            keep = flags >= 0
            paths = [p for p, k in zip(paths, keep) if k]
            labels, flags = labels[keep], flags[keep]
            if not paths:
                self.arrays, self.kind = (np.zeros((0, self.h, self.w, channels), np.uint8), labels), "same"
            elif (flags > 0).all():  # all files plain: no cond, no Python
                self.arrays, self.kind = (paths, labels), "fast"
            else:
                self.arrays, self.kind = (paths, labels, flags), "mixed"
        self.n = len(self.arrays[0])  # usable items
        self.n_requested = len(idx)

    def source(self) -> Any:
        """The cheap items (arrays or paths, labels[, decoder flags]): shuffle them here to shuffle before decoding."""
        return tf.data.Dataset.from_tensor_slices(self.arrays)

    def decode(self, ds: Any) -> Any:
        """:meth:`source` items -> ``(uint8 image, label)``; a file that fails to decode is dropped and recorded."""
        h, w, channels, spec, limit = self.h, self.w, self.channels, self.spec, self.limit
        autotune, deterministic = tf.data.AUTOTUNE, self.deterministic

        def resize(img: Any) -> Any:  # (h, w, 3) uint8 -> (H, W, channels) uint8
            img = tf.image.resize(tf.cast(img, tf.float32), (h, w), method="bilinear")
            img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
            if channels == 1:
                img = tf.image.rgb_to_grayscale(img)
            return img

        def to_size(img: Any) -> Any:
            img = tf.ensure_shape(img, [None, None, None])
            c = tf.shape(img)[-1]
            img = tf.cond(c == 1, lambda: tf.repeat(img[..., :1], 3, axis=-1), lambda: img[..., :3])
            img.set_shape([None, None, 3])
            return resize(img)

        def pil_read(p: bytes) -> tuple[np.ndarray, bool]:
            path = p.decode("utf-8", "surrogateescape")
            try:
                return read_image(path, max_pixels=limit), np.bool_(True)
            except ImageReadError as e:
                _record(spec, [(path, e.reason)])
            except Exception as e:  # noqa: BLE001 - never crash mid-epoch
                _record(spec, [(path, f"unreadable ({type(e).__name__}: {str(e)[:100]})")])
            return np.zeros((1, 1, 3), np.uint8), np.bool_(False)

        def slow(p: Any) -> tuple[Any, Any]:
            img, ok = tf.numpy_function(pil_read, [p], [tf.uint8, tf.bool], stateful=False)
            img.set_shape([None, None, 3])
            ok.set_shape([])
            return img, ok

        def fast(p: Any) -> tuple[Any, Any]:
            img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
            img.set_shape([None, None, 3])
            return img, tf.constant(True)

        def load(p: Any, y: Any, f: Any) -> tuple[Any, Any, Any]:
            img, ok = tf.cond(f > 0, lambda: fast(p), lambda: slow(p))
            return to_size(img), y, ok

        def load_fast(p: Any, y: Any) -> tuple[Any, Any]:
            return resize(fast(p)[0]), y

        if self.kind == "same":
            return ds
        if self.kind == "arrays":
            return ds.map(lambda x, y: (to_size(x), y), num_parallel_calls=autotune, deterministic=deterministic)
        if self.kind == "fast":
            ds = ds.map(load_fast, num_parallel_calls=autotune, deterministic=deterministic)
            # a file TF's decoder rejects after all is dropped instead of stopping the epoch
            return ds.ignore_errors(log_warning=True)
        ds = ds.map(load, num_parallel_calls=autotune, deterministic=deterministic)
        return ds.ignore_errors(log_warning=True).filter(_ok).map(_drop_ok)

    def cached(self, ds: Any, cache: str | None) -> Any:
        return ds.cache("" if cache == "memory" else str(cache)) if cache else ds

    def batches(self, ds: Any, batch_size: int, drop_remainder: bool = False) -> Any:
        """Batch and make float32 (0..255): every pipeline's last steps before augmentation."""
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be at least 1")
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=self.deterministic)
        return ds.map(_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=self.deterministic)


def _float(x: Any, y: Any) -> tuple[Any, Any]:
    return tf.cast(x, tf.float32), y


def _with_options(ds: Any, deterministic: bool) -> Any:
    opts = tf.data.Options()
    opts.deterministic = deterministic
    opts.experimental_optimization.map_parallelization = True
    opts.experimental_optimization.parallel_batch = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(opts)


def make_dataset(spec: DataSpec, index: Sequence[int] | np.ndarray | None = None, *,
                 image_size: Sequence[int] = (224, 224), channels: int = 3, batch_size: int = 32,
                 shuffle: bool = False, seed: int | None = None, cache: str | None = "memory",
                 augment: Callable[[Any, Any], tuple[Any, Any]] | None = None, repeat: bool = False,
                 drop_remainder: bool = False, max_pixels: int | None = None) -> Any:
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` for the items ``index`` of ``spec``.

    Args:
        spec: the data (paths or arrays).
        index: which items (e.g. ``splits["train"]``); ``None`` for all.
        image_size: ``(H, W)`` to resize to (bilinear).
        channels: 3 (grayscale is repeated to RGB, alpha dropped) or 1 (converted to gray).
        batch_size: batch size.
        shuffle: shuffle every epoch (buffer = the whole split; after the cache, or before
            decoding when ``cache`` is ``None``).
        seed: shuffle seed; with a seed the order is the same on every run.
        cache: ``"memory"``, a file path prefix for an on-disk cache, or ``None``.
        augment: ``(images, labels) -> (images, labels)`` applied per batch after the cache
            (float32 images in 0..255), or ``None``.
        repeat: repeat forever.
        drop_remainder: drop the last incomplete batch.
        max_pixels: decompression-bomb guard for pre-validation and the PIL reader.

    Returns:
        A dataset yielding float32 images ``(B, H, W, channels)`` in 0..255 and labels: int32
        ``(B,)`` for multiclass, float32 ``(B, 1)`` for binary, float32 ``(B, K)`` for multilabel.
        Unusable files are left out and listed in ``spec.skipped``. Training uses :func:`make_passes`
        instead: each pass keyed by its number.

    Example:
        >>> ds = make_dataset(spec, parts["train"], image_size=(224, 224), shuffle=True, seed=42)  # doctest: +SKIP
    """
    deterministic = seed is not None or not shuffle
    items = _Items(spec, index, image_size, channels, max_pixels, deterministic)
    early = bool(shuffle and not cache)  # no cache: shuffle the cheap items before decoding
    ds = items.source()
    if early:
        ds = ds.shuffle(max(1, items.n), seed=seed, reshuffle_each_iteration=True)
    ds = items.cached(items.decode(ds), cache)
    if shuffle and not early:
        ds = ds.shuffle(min(max(1, items.n_requested), 50_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = items.batches(ds, batch_size, drop_remainder)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return _with_options(ds, deterministic)


@dataclass
class Passes:
    """The passes over a training split, each keyed by its number: pass ``p``'s order and augmentation
    depend only on the seed and ``p``, never on the passes made before it, so a run that resumes at
    epoch ``p`` reads it at once (nothing is replayed).

    ``build(p)`` makes pass ``p`` (an int64 scalar tensor) as a batched dataset; :meth:`one` gives a
    numbered pass, :meth:`epochs` the pass a :class:`tf.Variable` names when an iterator starts (what
    ``fit`` reads: one pass per epoch), :meth:`stream` passes ``first, first + 1, ...`` without end.

    Example:
        >>> passes = make_passes(spec, parts["train"], image_size=(32, 32), shuffle=True, seed=1)  # doctest: +SKIP
        >>> x, y = next(iter(passes.one(3)))                                                   # doctest: +SKIP
    """

    build: Callable[[Any], Any]
    n: int  # items per pass
    batch_size: int
    exact: bool = True  # every pass has exactly :attr:`steps` batches (no file can drop out while decoding)
    deterministic: bool = True

    @property
    def steps(self) -> int:
        """Batches per pass."""
        return -(-self.n // self.batch_size)

    def one(self, p: int) -> Any:
        """Pass ``p``."""
        return _with_options(self.build(tf.constant(p, tf.int64)), self.deterministic)

    def epochs(self, key: Any) -> Any:
        """The pass ``key`` (a ``tf.Variable``) holds when an iterator over this dataset starts reading,
        so one dataset given to ``fit`` reads pass ``e`` in epoch ``e`` (:class:`kerasclf.train.callbacks.EpochKey`)."""
        ds = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64))
        ds = ds.flat_map(lambda _: self.build(tf.cast(key.read_value(), tf.int64)))
        if self.exact:  # fit knows the epoch's length (its bar) without running out first
            ds = ds.apply(tf.data.experimental.assert_cardinality(self.steps))
        return _with_options(ds, self.deterministic)

    def stream(self, first: int = 0) -> Any:
        """Passes ``first, first + 1, ...`` one after the other, without end (``fit`` with ``steps_per_epoch``)."""
        return _with_options(tf.data.Dataset.range(first, 2 ** 62).flat_map(self.build), self.deterministic)


def make_passes(spec: DataSpec, index: Sequence[int] | np.ndarray | None = None, *,
                image_size: Sequence[int] = (224, 224), channels: int = 3, batch_size: int = 32,
                shuffle: bool = True, seed: int = 0, cache: str | None = "memory",
                augment: Callable[..., tuple[Any, Any]] | None = None, max_pixels: int | None = None) -> Passes:
    """The training split as :class:`Passes` keyed by number: read and decoded as :func:`make_dataset`
    reads (cached once for every pass), pass ``p`` shuffled with a seed derived from ``(seed, p)`` and
    its ``i``-th batch augmented with the key ``(seed, p, i)`` (an
    :class:`~kerasclf.data.augment.AugmentPolicy` draws every random number from it; another callable
    is called as ``augment(images, labels)``).

    Example:
        >>> from kerasclf.data.sources import digits
        >>> passes = make_passes(digits(), image_size=(16, 16), batch_size=600, seed=1)
        >>> first = [next(iter(passes.one(p)))[1].numpy()[:5].tolist() for p in (0, 1, 0)]
        >>> first[0] == first[2] != first[1], passes.steps
        (True, 3)
    """
    items = _Items(spec, index, image_size, channels, max_pixels, deterministic=True)
    early = bool(shuffle and not cache)  # no cache: each pass shuffles the cheap items, then decodes
    source = items.source()
    base = None if early else items.cached(items.decode(source), cache)
    keyed = isinstance(augment, AugmentPolicy)

    def build(p: Any) -> Any:
        key = derive_seed(seed, p)
        order = tf.math.floormod(key[0], 2 ** 31 - 1)  # the pass's shuffle seed
        if early:
            ds = items.decode(source.shuffle(max(1, items.n), seed=order, reshuffle_each_iteration=False))
        else:
            ds = base
            if shuffle:
                ds = ds.shuffle(min(max(1, items.n_requested), 50_000), seed=order, reshuffle_each_iteration=False)
        ds = items.batches(ds, batch_size)
        if augment is None:
            return ds
        if not keyed:
            return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.enumerate().map(lambda i, xy: augment(xy[0], xy[1], key=derive_seed(key, i)),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return Passes(build, items.n, batch_size, exact=items.kind in ("same", "arrays"))


class FileBatches:
    """Iterable of ``(paths_ok, float32 batch (B, H, W, channels))`` over image files.

    The files go through :func:`make_dataset` itself, so prediction, feature extraction and
    analysis see exactly the pixels training saw (same decoder choice, same resize). Unusable
    files are not yielded; ``.skipped`` lists them as ``(path, reason)`` (complete once the
    iteration has finished).
    """

    def __init__(self, paths: Sequence[str], image_size: Sequence[int], batch_size: int = 32,
                 channels: int = 3, max_pixels: int | None = None):
        self.paths = [str(p) for p in paths]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.batch_size = max(1, int(batch_size))
        self.channels = channels
        self.max_pixels = max_pixels
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[tuple[list[str], np.ndarray]]:
        self.skipped = []
        if not self.paths:
            return
        # the label of each item is its position, so the paths of a batch are known exactly
        spec = DataSpec(class_names=["_"], labels=np.arange(len(self.paths)), paths=self.paths,
                        source="files")
        self.skipped = spec.skipped  # filled as files are met
        ds = make_dataset(spec, image_size=self.image_size, channels=self.channels,
                          batch_size=self.batch_size, cache=None, max_pixels=self.max_pixels)
        seen: set[int] = set()
        for x, pos in ds:
            pos = np.asarray(pos).reshape(-1)
            seen.update(int(i) for i in pos)
            yield [self.paths[i] for i in pos], np.asarray(x, dtype=np.float32)
        listed = {p for p, _ in spec.skipped}
        lost = [(p, "could not be decoded") for i, p in enumerate(self.paths)
                if i not in seen and p not in listed]
        _record(spec, lost)


def file_batches(paths: Sequence[str], image_size: Sequence[int], batch_size: int = 32, *,
                 channels: int = 3) -> FileBatches:
    """Batches of image files for prediction: iterate for ``(paths_ok, float32 batch)``.

    Unreadable files are not yielded; after the iteration ``.skipped`` lists them as
    ``(path, reason)``.

    Example:
        >>> batches = file_batches(["a.jpg", "bad.jpg"], (224, 224), 32)  # doctest: +SKIP
        >>> for paths, x in batches: ...  # doctest: +SKIP
        >>> batches.skipped  # doctest: +SKIP
        [('bad.jpg', 'zero-byte file')]
    """
    return FileBatches(paths, image_size, batch_size, channels)


def spec_batches(spec: DataSpec, index: Sequence[int] | np.ndarray | None = None, *,
                 image_size: Sequence[int] | None = None, channels: int = 3,
                 batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(float32 images 0..255, labels)`` batches of a spec's items, in order, read as training reads them.

    ``image_size=None`` keeps the native size of in-memory images; image files need a size.
    Unusable files are left out and listed in ``spec.skipped``.

    Example:
        >>> from kerasclf.data.spec import DataSpec
        >>> spec = DataSpec.from_arrays(np.zeros((5, 8, 8, 1), "uint8"), np.arange(5) % 2)
        >>> [x.shape for x, _ in spec_batches(spec, batch_size=4)]
        [(4, 8, 8, 3), (1, 8, 8, 3)]
    """
    if image_size is None:
        if spec.images is None:
            raise DataError(f"{spec.source or 'data'}: image files need an image size; pass image_size=(H, W)")
        image_size = spec.images.shape[1:3]
    ds = make_dataset(spec, index, image_size=image_size, channels=channels, batch_size=batch_size,
                      shuffle=False, cache=None)
    for x, y in ds:
        yield np.asarray(x, dtype=np.float32), np.asarray(y)


def split_arrays(spec: DataSpec, index: Sequence[int] | np.ndarray | None = None, *,
                 image_size: Sequence[int] | None = None, channels: int = 3,
                 batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """All images (float32 0..255) and labels of one split, in manifest order (see :func:`spec_batches`).

    Example:
        >>> from kerasclf.data.spec import DataSpec
        >>> x, y = split_arrays(DataSpec.from_arrays(np.zeros((3, 4, 4, 3), "uint8"), [0, 1, 1]))
        >>> x.shape, y.tolist()
        ((3, 4, 4, 3), [[0.0], [1.0], [1.0]])
    """
    xs, ys = [], []
    for x, y in spec_batches(spec, index, image_size=image_size, channels=channels, batch_size=batch_size):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError(f"{spec.source or 'data'}: no readable images in this split; run `kerasclf check` on it")
    return np.concatenate(xs), np.concatenate(ys)
