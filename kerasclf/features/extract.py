"""Extract pooled features from any model layer, streamed to disk and cached.

:func:`extract_features` runs images through a model cut at a layer (``"features"`` by default:
the pooled output before the head of every zoo model), batch by batch, writing each batch into a
``.npy`` memmap so memory stays flat however many images there are. The result is cached under a
key that hashes the model (name + architecture + :func:`~kerasclf.features.artifacts.weights_fingerprint`),
the layer, the image size and channels, and the data (ids + labels + pixels or file stats), so a
second call with the same inputs is a cache hit that reads the memmap back (``from_cache=True``).
An extraction writes into a temporary folder that is renamed into place only when complete, so an
interrupted run never leaves a corrupt cache entry.

Example:
    >>> from kerasclf.data.sources import digits                   # doctest: +SKIP
    >>> fs = extract_features("resnet50_features", digits(), image_size=(64, 64),  # doctest: +SKIP
    ...                       cache_dir="runs/demo/features")
    >>> fs.features.shape, fs.from_cache  # doctest: +SKIP
    ((1797, 2048), False)
    >>> extract_features("resnet50_features", digits(), image_size=(64, 64),  # doctest: +SKIP
    ...                  cache_dir="runs/demo/features").from_cache
    True
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.errors import DataError, ModelError
from kerasclf.features.artifacts import (RECORD_VERSION, ExtractorRecord, config_fingerprint,
                                      data_fingerprint, hash_json, weights_fingerprint)

__all__ = ["FeatureSet", "extract_features", "feature_model", "load_any_model", "image_batches",
           "load_image_files", "file_batches", "default_cache_dir", "features_for_images"]

DEFAULT_CACHE = "~/.cache/kerasclf/features"


def default_cache_dir() -> Path:
    """``$KERASCLF_FEATURE_CACHE`` if set, else ``~/.cache/kerasclf/features``."""
    return Path(os.environ.get("KERASCLF_FEATURE_CACHE", DEFAULT_CACHE)).expanduser()


@dataclass
class FeatureSet:
    """Features of a data set, with what is needed to use and trust them.

    Attributes:
        features: float32 ``(N, D)``; a read-only memmap when it came from the cache.
        labels: the labels of the N items (as in the :class:`~kerasclf.data.spec.DataSpec`).
        ids: the N item ids (paths, or ``#i`` for in-memory arrays).
        record: the :class:`~kerasclf.features.artifacts.ExtractorRecord` of the extractor.
        from_cache: ``True`` when read back from the cache without running the model.
        key: the cache key (sha1).
        path: the cache folder of this entry (``None`` when caching was off).
        seconds: time the extraction took (of the original run for a cache hit).
        info: the cache entry's metadata (key parts, speed, creation time).
        extractor: the Keras feature model (images → features) that was used; pass it to
            ``save_head`` / ``ClusterModel.save`` when the record cannot rebuild it by name.
    """

    features: np.ndarray
    labels: np.ndarray
    ids: list[str]
    record: ExtractorRecord
    from_cache: bool = False
    key: str = ""
    path: Path | None = None
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    extractor: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_names(self) -> list[str]:
        return list(self.record.class_names)

    @property
    def images_per_second(self) -> float:
        """Extraction throughput of the run that computed these features."""
        return len(self) / self.seconds if self.seconds > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# models


def load_any_model(model_or_name: Any, **build_kwargs: Any) -> Any:
    """A Keras model from a model, a :class:`~kerasclf.io.LoadedModel`, a saved file or a zoo name.

    Args:
        model_or_name: ``keras.Model``; ``LoadedModel``; path to ``.keras``/``.h5``; registry name.
        **build_kwargs: passed to :func:`kerasclf.zoo.build` for a name (e.g. ``weights=None``).

    Example:
        >>> m = load_any_model("resnet50_features", weights="imagenet")   # doctest: +SKIP
    """
    import keras

    if isinstance(model_or_name, keras.Model):
        return model_or_name
    if hasattr(model_or_name, "model") and hasattr(model_or_name, "meta"):  # io.LoadedModel
        return model_or_name.model
    name = str(model_or_name)
    if Path(name).suffix in (".keras", ".h5", ".hdf5") or Path(name).is_dir():
        if not Path(name).exists():
            raise ModelError(f"model {name} not found; check the path")
        try:
            from kerasclf.io import load_model

            loaded = load_model(name)
            if loaded.format == "export":
                raise ModelError(f"{name}: an exported SavedModel has no layers to cut; "
                                 f"use the .keras file of the model")
            return loaded.model
        except ImportError:  # pragma: no cover - io always present in a full install
            return keras.models.load_model(name, compile=False)
    from kerasclf.zoo import build

    return build(name, **build_kwargs)


def _layer_output_in(model: Any, layer: Any) -> Any:
    """The symbolic output of ``layer`` *in model's graph* (a nested model has its own graph)."""
    import keras

    try:
        return keras.Model(model.inputs, layer.output)
    except Exception:
        pass
    for node in getattr(layer, "_inbound_nodes", []):
        outs = getattr(node, "output_tensors", None)
        if not outs:
            continue
        try:
            return keras.Model(model.inputs, outs[0] if len(outs) == 1 else outs)
        except Exception:
            continue
    return None


def feature_model(model: Any, layer: str | None = "features") -> Any:
    """``model`` cut at ``layer``: raw images in, pooled ``(N, D)`` features out.

    A nested sub-model (an autoencoder's ``"encoder"``) is used as it is applied inside the
    outer model (after its resize / preprocess layers) when possible, else on its own. Outputs with
    spatial axes are global-average pooled; ``layer=None`` keeps the model's own output.

    Args:
        model: a Keras model.
        layer: a layer name; ``None`` for the model output.

    Raises:
        ModelError: no such layer (the message lists the model's layer names).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c")])
        >>> feature_model(m, "c").output.shape
        (None, 4)
    """
    import keras

    if layer is None:
        cut = model
    else:
        try:
            target = model.get_layer(layer)
        except ValueError:
            names = [l.name for l in model.layers]
            raise ModelError(f"model '{model.name}' has no layer '{layer}'; its layers: "
                             f"{', '.join(names[-15:])}") from None
        cut = _layer_output_in(model, target)
        if cut is None:
            if isinstance(target, keras.Model):
                cut = target
            else:
                raise ModelError(f"layer '{layer}' of '{model.name}' is not reachable from the "
                                 f"model inputs; pick another layer")
    out = cut.outputs[0] if isinstance(cut.outputs, (list, tuple)) else cut.outputs
    if len(out.shape) > 2:
        x = keras.layers.Reshape((-1, out.shape[-1]))(out) if len(out.shape) > 4 else out
        pool = keras.layers.GlobalAveragePooling2D if len(x.shape) == 4 else \
            keras.layers.GlobalAveragePooling1D
        cut = keras.Model(cut.inputs, pool(name="kerasclf_feature_pool")(x),
                          name=f"{model.name}_features")
    return cut


def _model_input_spec(model: Any) -> tuple[tuple[int, int] | None, int | None]:
    """(fixed H, W or None, channels or None) of the model's input."""
    shape = tuple(model.inputs[0].shape)
    hw = (int(shape[1]), int(shape[2])) if len(shape) == 4 and shape[1] and shape[2] else None
    ch = int(shape[-1]) if shape[-1] else None
    return hw, ch


# --------------------------------------------------------------------------------------------
# images


def load_image_files(paths: Sequence[str | Path], image_size: tuple[int, int] | None,
                     channels: int = 3) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Read image files to a float32 0..255 batch; unreadable files are reported, not fatal.

    Args:
        paths: image files.
        image_size: ``(H, W)`` to resize to (required unless every file has the same size).
        channels: 1 or 3.

    Returns:
        ``(images, ok_paths, skipped)`` where ``skipped`` holds ``(path, reason)``.

    Example:
        >>> x, ok, skipped = load_image_files(["a.jpg"], (64, 64))  # doctest: +SKIP
    """
    from PIL import Image

    out, ok, skipped = [], [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size is not None and im.size != (image_size[1], image_size[0]):
                    im = im.resize((image_size[1], image_size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype="float32")
        except Exception as exc:  # PIL raises many types for bad files
            skipped.append((str(p), f"{type(exc).__name__}: {exc}"))
            continue
        out.append(arr[..., None] if arr.ndim == 2 else arr)
        ok.append(str(p))
    if not out:
        h, w = image_size or (1, 1)
        return np.zeros((0, h, w, channels), "float32"), ok, skipped
    try:
        return np.stack(out), ok, skipped
    except ValueError:
        raise DataError("images have different sizes; pass image_size=(H, W)") from None


def file_batches(paths: Sequence[str | Path], image_size: tuple[int, int], batch_size: int = 64
                 ) -> Iterator[tuple[list[str], np.ndarray, list[tuple[str, str]]]]:
    """``(ok_paths, float32 batch, newly skipped)`` over image files, read like training reads them.

    Uses :func:`kerasclf.data.pipeline.image_batches_for_predict` (the training reader and TF's
    bilinear resize) when available, else PIL. Unreadable files are reported, never fatal.

    Example:
        >>> for ok, x, skipped in file_batches(["a.jpg", "b.png"], (224, 224)):  # doctest: +SKIP
        ...     print(ok, x.shape, skipped)
    """
    paths = [str(p) for p in paths]
    try:
        from kerasclf.data.pipeline import image_batches_for_predict
    except ImportError:
        image_batches_for_predict = None
    if image_batches_for_predict is None:
        for s in range(0, len(paths), batch_size):
            x, ok, skipped = load_image_files(paths[s:s + batch_size], image_size, 3)
            yield ok, x, skipped
        return
    batches = image_batches_for_predict(paths, tuple(image_size), batch_size)
    seen = 0
    for ok, x in batches:
        skipped = list(getattr(batches, "skipped", []))
        yield list(ok), np.asarray(x, dtype="float32"), skipped[seen:]
        seen = len(skipped)
    rest = list(getattr(batches, "skipped", []))[seen:]
    if rest:
        yield [], np.zeros((0, image_size[0], image_size[1], 3), "float32"), rest


def _fix_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    c = x.shape[-1]
    if channels in (None, c):
        return x if channels is not None or c != 1 else np.repeat(x, 3, axis=-1)
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    if c == 4 and channels == 3:
        return x[..., :3]
    if c in (3, 4) and channels == 1:
        return x[..., :3].mean(axis=-1, keepdims=True)
    raise DataError(f"images have {c} channels but the model takes {channels}")


def image_batches(spec: Any, index: np.ndarray | None = None, *, image_size: tuple[int, int] | None = None,
                  channels: int | None = 3, batch_size: int = 64) -> Iterator[np.ndarray]:
    """float32 0..255 batches ``(B, H, W, channels)`` of a spec's images, in order.

    In-memory images are resized only when ``image_size`` differs from theirs; files go through
    :func:`kerasclf.data.pipeline.make_dataset` when it is available, else through PIL.
    Grayscale is repeated to 3 channels when ``channels=3`` (or ``None``).

    Example:
        >>> import numpy as np
        >>> from kerasclf.data.spec import DataSpec
        >>> spec = DataSpec.from_arrays(np.zeros((5, 8, 8, 1), "uint8"), np.arange(5) % 2)
        >>> [b.shape for b in image_batches(spec, batch_size=4)]
        [(4, 8, 8, 3), (1, 8, 8, 3)]
    """
    n = len(spec)
    idx = np.arange(n) if index is None else np.asarray(index, dtype=int)
    if spec.images is not None:
        for s in range(0, len(idx), batch_size):
            x = spec.images[idx[s:s + batch_size]].astype("float32")
            x = _fix_channels(x, channels)
            if image_size is not None and tuple(x.shape[1:3]) != tuple(image_size):
                import tensorflow as tf

                x = tf.image.resize(x, image_size).numpy()
            yield x
        return
    if image_size is None:
        raise DataError(f"{spec.source or 'data'}: image files need an image size; pass image_size=(H, W)")
    try:
        from kerasclf.data.pipeline import make_dataset
    except ImportError:
        make_dataset = None
    if make_dataset is not None:
        ds = make_dataset(spec, idx, image_size=tuple(image_size), channels=channels or 3,
                          batch_size=batch_size, shuffle=False, cache=None)
        for images, _ in ds:
            yield _fix_channels(np.asarray(images, dtype="float32"), channels)
        return
    paths = spec.ids()
    for s in range(0, len(idx), batch_size):
        batch = [paths[i] for i in idx[s:s + batch_size]]
        x, ok, skipped = load_image_files(batch, image_size, channels or 3)
        if skipped:
            raise DataError(f"cannot read {skipped[0][0]} ({skipped[0][1]}); remove or fix the file")
        yield x


def _run_batch(fmodel: Any, x: np.ndarray) -> np.ndarray:
    """One forward pass (a separate function so tests can count the calls)."""
    return np.asarray(fmodel.predict_on_batch(x), dtype="float32")


def features_for_images(fmodel: Any, images: np.ndarray, *, batch_size: int = 64,
                        image_size: tuple[int, int] | None = None, channels: int | None = 3) -> np.ndarray:
    """Features of an in-memory batch of images (no cache), as float32 ``(N, D)``.

    Example:
        >>> feats = features_for_images(fs.extractor, images, image_size=(32, 32))  # doctest: +SKIP
    """
    from kerasclf.data.spec import DataSpec

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    spec = DataSpec(class_names=["_"], labels=np.zeros(len(images), int), images=images,
                    source="images")  # float pixels are kept as they are (no re-quantisation)
    outs = [_run_batch(fmodel, x) for x in image_batches(spec, image_size=image_size,
                                                        channels=channels, batch_size=batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), "float32")


# --------------------------------------------------------------------------------------------
# extraction


def _model_identity(model_or_name: Any, model: Any) -> str:
    import keras

    if isinstance(model_or_name, str):
        p = Path(model_or_name)
        return str(p.resolve()) if p.suffix in (".keras", ".h5", ".hdf5") else model_or_name
    if hasattr(model_or_name, "path") and hasattr(model_or_name, "meta"):
        return str(Path(model_or_name.path).resolve())
    assert isinstance(model, keras.Model)
    return f"memory:{model.name}"


def _zoo_feature_layer(name: str) -> str | None:
    """The registered model's ``ModelCfg.feature_layer`` (e.g. ``encoder`` for an autoencoder)."""
    try:
        from kerasclf.zoo import get_cfg

        return get_cfg(name).feature_layer
    except Exception:  # not registered (a keras.applications name) or no zoo yet
        return None


def _resolve_image_size(model: Any, spec: Any, image_size: tuple[int, int] | None,
                        identity: str) -> tuple[int, int] | None:
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    fixed, _ = _model_input_spec(model)
    if fixed is not None:
        return fixed
    try:  # the zoo knows the size a model resizes to
        from kerasclf.zoo import input_size

        return tuple(int(v) for v in input_size(model))  # type: ignore[return-value]
    except Exception:
        pass
    try:
        layer = model.get_layer("resize")
        return int(layer.height), int(layer.width)
    except Exception:
        pass
    if spec.images is not None:
        return None  # native size of the arrays
    raise DataError(f"cannot tell which image size '{identity}' wants; pass image_size=(H, W)")


def extract_features(model_or_name: Any, spec: Any, *, index: np.ndarray | None = None,
                     layer: str | None = "features", batch_size: int = 64,
                     cache_dir: str | Path | None = DEFAULT_CACHE,
                     image_size: tuple[int, int] | None = None, weights: Any = "default",
                     build_kwargs: dict[str, Any] | None = None, verbose: int = 1) -> FeatureSet:
    """Features of ``spec``'s images from ``model_or_name`` cut at ``layer``, cached on disk.

    Args:
        model_or_name: a ``keras.Model``, a :class:`~kerasclf.io.LoadedModel`, a ``.keras``/``.h5``
            path, or a zoo name (``"resnet50_features"``).
        spec: a :class:`~kerasclf.data.spec.DataSpec` (files or in-memory images).
        index: optional positions of the items to extract (a split); default all.
        layer: layer whose output are the features (pooled if spatial); ``None``: model output.
            For a zoo name the default follows its ``ModelCfg.feature_layer``.
        batch_size: images per forward pass.
        cache_dir: the cache folder (default ``~/.cache/kerasclf/features``, or
            ``$KERASCLF_FEATURE_CACHE``); a run folder works too; ``None`` turns caching off.
        image_size: ``(H, W)`` to resize images to; default the model's own input size, else the
            size of in-memory images.
        weights: for a zoo name, passed to the builder (``"imagenet"``, ``None``, a file).
        build_kwargs: other keyword arguments for the zoo builder.
        verbose: 1 shows a ``keras.utils.Progbar``; 0 is silent.

    Returns:
        A :class:`FeatureSet`; ``from_cache`` says whether the model ran.

    Raises:
        ModelError: unknown layer / unloadable model. DataError: unreadable images.

    Example:
        >>> fs = extract_features(model, spec, cache_dir="runs/x/features")   # doctest: +SKIP
        >>> fs.features.shape, fs.from_cache, round(fs.images_per_second)  # doctest: +SKIP
    """
    import keras

    kwargs = dict(build_kwargs or {})
    if weights != "default":
        kwargs["weights"] = weights
    model = load_any_model(model_or_name, **kwargs)
    identity = _model_identity(model_or_name, model)
    if layer == "features" and isinstance(model_or_name, str) and identity == model_or_name:
        layer = _zoo_feature_layer(model_or_name) or layer
    fmodel = feature_model(model, layer)
    size = _resolve_image_size(model, spec, image_size, identity)
    _, channels = _model_input_spec(model)
    channels = channels or 3
    idx = np.arange(len(spec)) if index is None else np.asarray(index, dtype=int)
    skipped: list[tuple[str, str]] = []
    if spec.paths is not None:  # unusable files are left out (and listed), as in training
        idx, skipped = _usable(spec, idx)
        if skipped and verbose:
            print(f"features: skipping {len(skipped)} unusable file(s), e.g. {skipped[0][0]} ({skipped[0][1]})")
    ids_all = spec.ids()
    ids = [ids_all[i] for i in idx]
    labels = np.asarray(spec.labels)[idx]
    wfp = weights_fingerprint(fmodel)
    if identity.startswith("memory:"):
        rec_weights = None
    elif not isinstance(model_or_name, str) or Path(identity).suffix in (".keras", ".h5", ".hdf5"):
        rec_weights = "file"
    else:
        w = kwargs.get("weights", "default")
        rec_weights = None if w is None else str(w)
    record = ExtractorRecord(
        model=identity, layer=layer, image_size=size, channels=channels, weights=rec_weights,
        weights_fingerprint=wfp, class_names=list(spec.class_names), task=spec.task,
        build_kwargs={k: v for k, v in kwargs.items() if k != "weights"})
    key_parts = {
        # an in-memory model is known by architecture + weights only, not by its (maybe auto) name
        "version": RECORD_VERSION,
        "model": "memory" if identity.startswith("memory:") else identity,
        "arch": config_fingerprint(fmodel), "weights": wfp, "layer": layer, "image_size": list(size) if size else None,
        "channels": channels,
        "data": data_fingerprint(spec, None if index is None and not skipped else idx),
    }
    key = hash_json(key_parts)
    folder: Path | None = None
    if cache_dir is not None:
        root = Path(cache_dir).expanduser() if str(cache_dir) != DEFAULT_CACHE else default_cache_dir()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(identity).stem)[:40]
        folder = root / f"{safe}-{key[:20]}"
        hit = _read_cache(folder, key)
        if hit is not None:
            feats, meta = hit
            if verbose:
                print(f"features: cache hit {folder} ({feats.shape[0]} x {feats.shape[1]})")
            return FeatureSet(features=feats, labels=labels, ids=ids, record=record, from_cache=True,
                              key=key, path=folder, seconds=float(meta.get("seconds", 0.0)),
                              info=dict(meta, skipped=skipped), extractor=fmodel)
    start = time.perf_counter()
    batches = image_batches(spec, idx, image_size=size, channels=channels, batch_size=batch_size)
    bar = keras.utils.Progbar(len(idx), verbose=1 if verbose else 0, unit_name="image")
    if folder is None:
        outs = []
        for x in batches:
            outs.append(_run_batch(fmodel, x))
            bar.add(len(x))
        feats = np.concatenate(outs) if outs else np.zeros((0, 0), "float32")
        secs = time.perf_counter() - start
        return FeatureSet(features=feats, labels=labels, ids=ids, record=record, key=key,
                          seconds=secs, extractor=fmodel, info={"skipped": skipped})
    feats, secs = _write_cache(folder, key, key_parts, batches, fmodel, len(idx), bar,
                               labels=labels, ids=ids, record=record)
    return FeatureSet(features=feats, labels=labels, ids=ids, record=record, from_cache=False,
                      key=key, path=folder, seconds=secs, extractor=fmodel,
                      info={"skipped": skipped, "images_per_second": len(ids) / secs if secs else None})


def _usable(spec: Any, idx: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Positions of readable files (header check) and the ``(path, reason)`` of the others."""
    try:
        from kerasclf.data.pipeline import prevalidate
    except ImportError:
        return idx, []
    paths = [spec.paths[i] for i in idx]
    flags, bad = prevalidate(paths)
    keep = np.asarray(flags) >= 0
    if not keep.any():
        raise DataError(f"{spec.source or 'data'}: none of the {len(paths)} files is a readable image; "
                        f"e.g. {bad[0][0]}: {bad[0][1]}")
    return idx[keep], list(bad)


def _read_cache(folder: Path, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            return None
        feats = np.load(folder / "features.npy", mmap_mode="r")
        if feats.shape[0] != meta["n"]:
            return None
        return feats, meta
    except (OSError, ValueError, KeyError):
        return None  # unreadable entry: recompute (it is replaced atomically)


def _write_cache(folder: Path, key: str, key_parts: dict[str, Any], batches: Iterator[np.ndarray],
                 fmodel: Any, n: int, bar: Any, *, labels: np.ndarray, ids: list[str],
                 record: ExtractorRecord) -> tuple[np.ndarray, float]:
    """Stream batches into ``<tmp>/features.npy`` then rename the folder into place."""
    from numpy.lib.format import open_memmap

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    start = time.perf_counter()
    try:
        mm = None
        pos = 0
        for x in batches:
            out = _run_batch(fmodel, x).reshape(len(x), -1)
            if mm is None:
                mm = open_memmap(tmp / "features.npy", mode="w+", dtype="float32",
                                 shape=(n, out.shape[1]))
            mm[pos:pos + len(out)] = out
            pos += len(out)
            bar.add(len(x))
        if mm is None:
            raise DataError("no images to extract features from")
        if pos != n:
            raise DataError(f"expected {n} images but the data yielded {pos}; "
                            f"were files unreadable? run `kerasclf check` on the data")
        mm.flush()
        dim = int(mm.shape[1])
        del mm
        secs = time.perf_counter() - start
        np.save(tmp / "labels.npy", np.asarray(labels))
        meta = {"key": key, "key_parts": key_parts, "n": n, "dim": dim, "seconds": secs,
                "images_per_second": n / secs if secs > 0 else None, "ids": ids,
                "record": record.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same entry first, or a stale one
            if _read_cache(folder, key) is None:
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return np.load(folder / "features.npy", mmap_mode="r"), secs
