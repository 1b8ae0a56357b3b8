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
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from kerasclf.data.reader import DEFAULT_MAX_PIXELS, ImageReadError, probe_image, read_image
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError

__all__ = ["make_dataset", "prevalidate", "file_batches", "FileBatches", "spec_batches", "split_arrays"]

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
        Unusable files are left out and listed in ``spec.skipped``.

    Example:
        >>> ds = make_dataset(spec, parts["train"], image_size=(224, 224), shuffle=True, seed=42)  # doctest: +SKIP
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels={channels}: use 1 or 3")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be at least 1")
    h, w = (int(image_size[0]), int(image_size[1]))
    idx = np.arange(len(spec)) if index is None else np.asarray(index, dtype=int)
    labels = _labels_for(spec, spec.labels[idx])
    autotune = tf.data.AUTOTUNE
    deterministic = seed is not None or not shuffle
    early = bool(shuffle and not cache)  # no cache: shuffle the cheap items before decoding

    def source(*arrays: Any) -> Any:
        d = tf.data.Dataset.from_tensor_slices(arrays)
        if early:
            d = d.shuffle(max(1, len(arrays[0])), seed=seed, reshuffle_each_iteration=True)
        return d

    def to_size(img: Any) -> Any:
        img = tf.ensure_shape(img, [None, None, None])
        c = tf.shape(img)[-1]
        img = tf.cond(c == 1, lambda: tf.repeat(img[..., :1], 3, axis=-1), lambda: img[..., :3])
        img.set_shape([None, None, 3])
        return resize(img)

    def resize(img: Any) -> Any:  # (h, w, 3) uint8 -> (H, W, channels) uint8
        img = tf.image.resize(tf.cast(img, tf.float32), (h, w), method="bilinear")
        img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        if channels == 1:
            img = tf.image.rgb_to_grayscale(img)
        return img

    if spec.images is not None:
        images = spec.images[idx]
        ds = source(images, labels)
        same = images.shape[1:3] == (h, w) and images.shape[-1] == channels
        if not same:
            ds = ds.map(lambda x, y: (to_size(x), y), num_parallel_calls=autotune, deterministic=deterministic)
    else:
        paths = [spec.paths[i] for i in idx]
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
        flags, bad = prevalidate(paths, max_pixels=limit)
        _record(spec, bad)
        keep = flags >= 0
        paths = [p for p, k in zip(paths, keep) if k]
        labels, flags = labels[keep], flags[keep]
        if not paths:
            ds = tf.data.Dataset.from_tensor_slices((np.zeros((0, h, w, channels), np.uint8), labels))
        else:
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

            def load_fast(p: Any, y: Any) -> tuple[Any, Any]:  # all files plain: no cond, no Python
                return resize(fast(p)[0]), y

            if (flags > 0).all():
                ds = source(paths, labels)
                ds = ds.map(load_fast, num_parallel_calls=autotune, deterministic=deterministic)
                # a file TF's decoder rejects after all is dropped instead of stopping the epoch
                ds = ds.ignore_errors(log_warning=True)
            else:
                ds = source(paths, labels, flags)
                ds = ds.map(load, num_parallel_calls=autotune, deterministic=deterministic)
                ds = ds.ignore_errors(log_warning=True)
                ds = ds.filter(_ok).map(_drop_ok)
    if cache:
        ds = ds.cache("" if cache == "memory" else str(cache))
    if shuffle and not early:
        n = max(1, len(idx))
        ds = ds.shuffle(min(n, 50_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                  num_parallel_calls=autotune, deterministic=deterministic)

    def finish(x: Any, y: Any) -> tuple[Any, Any]:
        return tf.cast(x, tf.float32), y

    ds = ds.map(finish, num_parallel_calls=autotune, deterministic=deterministic)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=autotune, deterministic=deterministic)
    ds = ds.prefetch(autotune)
    opts = tf.data.Options()
    opts.deterministic = deterministic
    opts.experimental_optimization.map_parallelization = True
    opts.experimental_optimization.parallel_batch = True
    return ds.with_options(opts)


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
        ((3, 4, 4, 3), [0, 1, 1])
    """
    xs, ys = [], []
    for x, y in spec_batches(spec, index, image_size=image_size, channels=channels, batch_size=batch_size):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError(f"{spec.source or 'data'}: no readable images in this split; run `kerasclf check` on it")
    return np.concatenate(xs), np.concatenate(ys)
