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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from numpy.lib.format import open_memmap

from kerasclf._progress import progress
from kerasclf.data.pipeline import prevalidate, spec_batches
from kerasclf.data.spec import DataSpec
from kerasclf.errors import DataError, ModelError
from kerasclf.features.artifacts import (
    RECORD_VERSION,
    ExtractorRecord,
    config_fingerprint,
    data_fingerprint,
    hash_json,
    weights_fingerprint,
)
from kerasclf.io import LoadedModel, load_any_model, load_model
from kerasclf.zoo.cut import AUTO, feature_layer_for, feature_model, fixed_input, input_size

__all__ = ["FeatureSet", "extract_features", "default_cache_dir", "features_for_images"]

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


def _run_batch(fmodel: Any, x: np.ndarray) -> np.ndarray:
    """One forward pass (a separate function so tests can count the calls)."""
    return np.asarray(fmodel.predict_on_batch(x), dtype="float32")


def features_for_images(fmodel: Any, images: np.ndarray, *, batch_size: int = 64,
                        image_size: tuple[int, int] | None = None, channels: int | None = 3) -> np.ndarray:
    """Features of an in-memory batch of images (no cache), as float32 ``(N, D)``.

    Example:
        >>> feats = features_for_images(fs.extractor, images, image_size=(32, 32))  # doctest: +SKIP
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    spec = DataSpec(class_names=["_"], labels=np.zeros(len(images), int), images=images,
                    source="images")  # float pixels are kept as they are (no re-quantisation)
    outs = [_run_batch(fmodel, x) for x, _ in spec_batches(spec, image_size=image_size, channels=channels or 3,
                                                           batch_size=batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), "float32")


# --------------------------------------------------------------------------------------------
# extraction


def _model_identity(model_or_name: Any, model: Any) -> str:
    if isinstance(model_or_name, str):
        p = Path(model_or_name)
        return str(p.resolve()) if p.suffix in (".keras", ".h5", ".hdf5") else model_or_name
    if hasattr(model_or_name, "path") and hasattr(model_or_name, "meta"):
        if getattr(model_or_name, "adapted", None):  # preprocessing put in front: not the file's model
            return f"memory:{model.name}"
        return str(Path(model_or_name.path).resolve())
    assert isinstance(model, keras.Model)
    return f"memory:{model.name}"


def resolve_image_size(model_or_name: Any, model: Any, spec: Any,
                       image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The size images are read at: ``image_size``, else a loaded file's recorded size, else the
    model's own input size (the arrays' size for a size-free model on in-memory images).

    Raises:
        DataError: none of those is known (a size-free model on image files).
    """
    if image_size is None and isinstance(model_or_name, LoadedModel) and model_or_name.meta.get("image_size"):
        image_size = tuple(model_or_name.meta["image_size"])  # recorded, or given as --image-size
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    if spec.images is not None:
        return input_size(model, default=tuple(spec.images.shape[1:3]))
    try:
        return input_size(model)
    except ModelError:
        raise DataError(f"cannot tell which image size '{_model_identity(model_or_name, model)}' wants; "
                        f"pass image_size=(H, W) (--image-size H W)") from None


def extract_features(model_or_name: Any, spec: Any, *, index: np.ndarray | None = None,
                     layer: str | None = AUTO, batch_size: int = 64,
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
            ``"auto"`` (default): the registry's feature layer for a zoo model, else ``features``
            when the model has it, else the model output (see :func:`kerasclf.zoo.cut.feature_model`).
        batch_size: images per forward pass.
        cache_dir: the cache folder (default ``~/.cache/kerasclf/features``, or
            ``$KERASCLF_FEATURE_CACHE``); a run folder works too; ``None`` turns caching off.
        image_size: ``(H, W)`` to resize images to; default the model's own input size, else the
            size of in-memory images.
        weights: for a zoo name, passed to the builder (``"imagenet"``, ``None``, a file).
        build_kwargs: other keyword arguments for the zoo builder.
        verbose: 1 shows a progress bar (on a terminal, :mod:`kerasclf._progress`); 0 is silent.

    Returns:
        A :class:`FeatureSet`; ``from_cache`` says whether the model ran.

    Raises:
        ModelError: unknown layer / unloadable model. DataError: unreadable images.

    Example:
        >>> fs = extract_features(model, spec, cache_dir="runs/x/features")   # doctest: +SKIP
        >>> fs.features.shape, fs.from_cache, round(fs.images_per_second)  # doctest: +SKIP
    """
    kwargs = dict(build_kwargs or {})
    if weights != "default":
        kwargs["weights"] = weights
    if isinstance(model_or_name, (str, Path)) and Path(model_or_name).suffix in (".keras", ".h5", ".hdf5"):
        model_or_name = load_model(model_or_name)  # its metadata may record the image size
    model = load_any_model(model_or_name, **kwargs)
    identity = _model_identity(model_or_name, model)
    if layer == AUTO:
        layer = feature_layer_for(model)
    fmodel = feature_model(model, layer)
    size = resolve_image_size(model_or_name, model, spec, image_size)
    _, channels = fixed_input(model)
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
    batches = (x for x, _ in spec_batches(spec, idx, image_size=size, channels=channels, batch_size=batch_size))
    bar = progress(total=len(idx), desc="features", show=bool(verbose))
    if folder is None:
        outs = []
        with bar:
            for x in batches:
                outs.append(_run_batch(fmodel, x))
                bar.update(len(x))
        feats = np.concatenate(outs) if outs else np.zeros((0, 0), "float32")
        secs = time.perf_counter() - start
        return FeatureSet(features=feats, labels=labels, ids=ids, record=record, key=key,
                          seconds=secs, extractor=fmodel, info={"skipped": skipped})
    with bar:
        feats, secs = _write_cache(folder, key, key_parts, batches, fmodel, len(idx), bar,
                                   labels=labels, ids=ids, record=record)
    return FeatureSet(features=feats, labels=labels, ids=ids, record=record, from_cache=False,
                      key=key, path=folder, seconds=secs, extractor=fmodel,
                      info={"skipped": skipped, "images_per_second": len(ids) / secs if secs else None})


def _usable(spec: Any, idx: np.ndarray) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Positions of readable files (header check) and the ``(path, reason)`` of the others."""
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
        feats = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
        if feats.shape[0] != meta["n"]:
            return None
        return feats, meta
    except (OSError, ValueError, KeyError):
        return None  # unreadable entry: recompute (it is replaced atomically)


def _write_cache(folder: Path, key: str, key_parts: dict[str, Any], batches: Iterator[np.ndarray],
                 fmodel: Any, n: int, bar: Any, *, labels: np.ndarray, ids: list[str],
                 record: ExtractorRecord) -> tuple[np.ndarray, float]:
    """Stream batches into ``<tmp>/features.npy`` then rename the folder into place."""
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
            bar.update(len(x))
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
    return np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False), secs
