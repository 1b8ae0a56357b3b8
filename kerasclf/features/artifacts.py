"""The record of a feature extractor, and the fingerprints that key the feature cache.

A :class:`ExtractorRecord` says which model, which weights, which layer and which image size
produced a set of features, so that a scikit-learn head or a clustering model saved next to it
can rebuild the whole chain (images → features → prediction) in a fresh process.

Fingerprints are cheap hashes:

* :func:`weights_fingerprint` hashes, for *every* weight array in order, its shape and dtype, its
  float64 sum and sum of absolute values (these touch every value, so a change anywhere almost
  surely changes them), and a strided sample of at most ``sample`` raw values (bit-exact). Cost
  is one pass over the weights in numpy (~10 ms for ResNet50), never a full byte hash.
* :func:`data_fingerprint` hashes the item ids and labels (as the source gave them, before review
  decisions); for in-memory arrays also the pixel
  bytes, for files also each file's size and modification time (``stat`` only, no reading).

Example:
    >>> import numpy as np
    >>> from kerasclf.data.spec import DataSpec
    >>> spec = DataSpec.from_arrays(np.zeros((2, 4, 4, 1), "uint8"), np.array([0, 1]))
    >>> len(data_fingerprint(spec))
    40
    >>> rec = ExtractorRecord(model="simple_cnn", layer="features", image_size=(32, 32))
    >>> ExtractorRecord.from_dict(rec.to_dict()) == rec
    True
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io as skops_io

from kerasclf.errors import ConfigError, ModelError
from kerasclf.io import load_any_model
from kerasclf.zoo.cut import feature_model

__all__ = ["ExtractorRecord", "weights_fingerprint", "data_fingerprint", "config_fingerprint",
           "hash_json", "build_extractor", "save_extractor_files", "RECORD_VERSION", "ARTIFACT_SUFFIX", "LEGACY_SUFFIXES",
           "TRUSTED_TYPES", "save_artifact", "read_artifact", "load_artifact", "artifact_target",
           "convert_artifact"]

#: bumped whenever the way features are computed changes, so old caches are not reused
RECORD_VERSION = 1

#: heads and clusterings are skops files: loading one rebuilds only trusted types, never runs code
ARTIFACT_SUFFIX = ".skops"
#: the old formats, refused (a pickle runs code when loaded); ``convert_artifact`` converts one
LEGACY_SUFFIXES = (".joblib", ".pkl", ".pickle")
#: the types beyond skops' defaults (numpy, scikit-learn estimators) kerasclf's artefacts hold
TRUSTED_TYPES: tuple[str, ...] = (
    "kerasclf.features.heads.SoftmaxLinearSVC",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


@dataclass
class ExtractorRecord:
    """Everything needed to rebuild a feature extractor and to read its features.

    Attributes:
        model: registry name (``resnet50_features``), a saved-model path, or for an in-memory
            model its Keras name prefixed by ``memory:`` (then ``model_path`` must be set before
            the record can rebuild it: see :func:`save_extractor_files`).
        weights: what the builder was given (``"imagenet"``, a weights file, ``None``: random
            init, ``"default"``: the builder's default) or ``"file"`` when the weights live in
            a saved model file (``model`` or ``model_path``).
        weights_fingerprint: :func:`weights_fingerprint` of the model the features came from.
        layer: the layer whose (pooled) output are the features, or ``None`` for the output.
        image_size: ``(H, W)`` images were resized to before the model, or ``None`` (native).
        channels: colour channels fed to the model (grayscale is repeated to 3).
        class_names: class names of the labelled data the head / clusters were fitted on.
        task: ``binary`` | ``multiclass`` | ``multilabel`` | ``clusters``.
        model_path: a saved ``.keras`` file of the feature extractor (set when saved).
        build_kwargs: extra keyword arguments the zoo builder was called with.
    """
    model: str
    layer: str | None = "features"
    image_size: tuple[int, int] | None = None
    weights: str | None = None
    weights_fingerprint: str = ""
    channels: int = 3
    class_names: list[str] = field(default_factory=list)
    task: str = "multiclass"
    model_path: str | None = None
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExtractorRecord":
        """Inverse of :meth:`to_dict`; unknown keys are ignored (newer files stay readable)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("image_size"):
            known["image_size"] = tuple(int(x) for x in known["image_size"])
        return cls(**known)

    @property
    def rebuildable(self) -> bool:
        """Whether :func:`build_extractor` can make the same model again from this record."""
        if self.model_path:
            return True
        if self.model.startswith("memory:"):
            return False
        if Path(self.model).suffix in (".keras", ".h5", ".hdf5"):
            return True
        # a registry name rebuilds the same weights only when they are loaded (imagenet, a
        # file), not random or the builder's unknown default
        return self.weights not in (None, "", "none", "None", "default")


def hash_json(obj: Any) -> str:
    """sha1 of a canonical JSON dump (sorted keys; non-JSON values via ``str``)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()


def weights_fingerprint(model: Any, sample: int = 4096) -> str:
    """A cheap hash of a model's weight values (see the module docstring for what it covers).

    Args:
        model: a Keras model (or anything with ``.weights``).
        sample: at most this many raw values per array are hashed bit-exactly.

    Returns:
        A 40-character hex sha1.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> a = weights_fingerprint(m)
        >>> m.layers[0].kernel.assign(m.layers[0].kernel * 2)  # doctest: +ELLIPSIS
        <...>
        >>> a != weights_fingerprint(m)
        True
    """
    h = hashlib.sha1()
    for i, w in enumerate(getattr(model, "weights", [])):
        arr = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        # names are left out on purpose: auto-generated layer names (conv2d_3) change with
        # what else a process built, the values do not
        h.update(f"{i}:{arr.shape}:{arr.dtype}".encode())
        flat = arr.reshape(-1)
        if flat.size == 0:
            continue
        step = max(1, flat.size // sample)
        h.update(np.ascontiguousarray(flat[::step][:sample]).tobytes())
        f64 = flat.astype("float64", copy=False)
        h.update(np.array([f64.sum(), np.abs(f64).sum()]).tobytes())
    return h.hexdigest()


def _canonical_names(cfg: Any) -> Any:
    """``cfg`` with every ``name`` value (and references to it) replaced by its order of appearance.

    Auto-generated names (``conv2d_7``, ``functional_3``) depend on what else the process built;
    renaming them canonically keeps the topology and every layer option but not the accident.
    """
    order: dict[str, str] = {}

    def collect(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "name" and isinstance(v, str) and v not in order:
                    order[v] = f"<{len(order)}>"
                collect(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                collect(v)

    def rename(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: rename(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [rename(v) for v in o]
        if isinstance(o, str):
            return order.get(o, o)
        return o

    collect(cfg)
    return rename(cfg)


def config_fingerprint(model: Any) -> str:
    """sha1 of the model's architecture (``get_config()`` with names canonicalised).

    Falls back to the class name for subclassed models without ``get_config``.
    """
    try:
        cfg = model.get_config()
    except NotImplementedError:  # subclassed models without get_config
        cfg = {"class": type(model).__name__}
    return hash_json(_canonical_names(cfg))


def data_fingerprint(spec: Any, index: np.ndarray | None = None) -> str:
    """sha1 of a :class:`~kerasclf.data.spec.DataSpec` (optionally a subset): ids, labels, pixels/stats.

    Args:
        spec: the data.
        index: optional positions into ``spec`` (the subset that will be extracted).

    Returns:
        A 40-character hex sha1.

    Example:
        >>> import numpy as np
        >>> from kerasclf.data.spec import DataSpec
        >>> a = DataSpec.from_arrays(np.zeros((2, 4, 4, 1), "uint8"), np.array([0, 1]))
        >>> b = DataSpec.from_arrays(np.ones((2, 4, 4, 1), "uint8"), np.array([0, 1]))
        >>> data_fingerprint(a) != data_fingerprint(b)
        True
    """
    h = hashlib.sha1()
    ids = spec.ids()
    idx = np.arange(len(ids)) if index is None else np.asarray(index, dtype=int)
    h.update(np.ascontiguousarray(idx).tobytes())
    # the labels as the source gave them: review decisions (relabels) change no pixel, so the features
    # of a relabelled spec are the cached ones (FeatureSet labels always come from the spec itself)
    given = spec.labels if spec.given_labels is None else spec.given_labels
    labels = np.asarray(given)[idx]
    h.update(f"{labels.shape}:{labels.dtype}".encode())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update(json.dumps(list(spec.class_names)).encode())
    if spec.images is not None:
        imgs = spec.images if index is None else spec.images[idx]
        h.update(f"{imgs.shape}:{imgs.dtype}".encode())
        h.update(np.ascontiguousarray(imgs).tobytes())
    else:
        for i in idx:
            p = ids[i]
            try:
                st = os.stat(p)
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def save_extractor_files(record: ExtractorRecord, extractor: Any | None, folder: str | Path,
                         stem: str) -> ExtractorRecord:
    """Make ``record`` rebuildable: save ``extractor`` as ``<folder>/<stem>.extractor.keras`` if needed.

    A record that names a saved model file or pretrained zoo weights is returned unchanged; one of
    a randomly initialised or in-memory model needs the model itself, which is saved: the feature
    model (``FeatureSet.extractor``) or the full model, which is then cut at ``record.layer``.
    Raises :class:`~kerasclf.errors.ModelError` if none was given or its weights do not match
    ``record.weights_fingerprint``.

    Example:
        >>> rec = save_extractor_files(fs.record, fs.extractor, "runs/x", "head")  # doctest: +SKIP
        >>> rec.model_path  # doctest: +SKIP
        'head.extractor.keras'
    """
    if record.rebuildable:
        return record
    if extractor is None:
        raise ModelError(f"the feature extractor '{record.model}' (weights={record.weights}) cannot "
                         f"be rebuilt from its name; pass extractor=<the keras model> so it is saved "
                         f"next to the head / clusters")
    extractor = _as_feature_model(extractor, record)
    path = Path(folder) / f"{stem}.extractor.keras"
    tmp = path.with_name(path.name + ".tmp.keras")
    extractor.save(tmp)
    os.replace(tmp, path)
    new = ExtractorRecord.from_dict(record.to_dict())
    new.model_path = path.name  # relative to the folder, so the folder can be moved
    new.weights = "file"
    return new


def _as_feature_model(extractor: Any, record: ExtractorRecord) -> Any:
    """``extractor`` itself if it is the feature model of ``record``, else it cut at ``record.layer``."""
    model = load_any_model(extractor)
    if not record.weights_fingerprint or weights_fingerprint(model) == record.weights_fingerprint:
        return model
    cut = feature_model(model, record.layer)
    if weights_fingerprint(cut) != record.weights_fingerprint:
        raise ModelError(f"the extractor given ('{model.name}') is not the model the features were "
                         f"computed with (weights differ); pass FeatureSet.extractor")
    return cut


def build_extractor(record: ExtractorRecord, base_dir: str | Path | None = None) -> Any:
    """Rebuild the feature model (images → features) a record describes.

    Args:
        record: the record saved with a head or clustering model.
        base_dir: folder a relative ``model_path`` is resolved against.

    Returns:
        A Keras model mapping raw 0..255 RGB batches to feature vectors.

    Raises:
        ModelError: the model cannot be rebuilt, or its weights do not match the fingerprint.

    Example:
        >>> fmodel = build_extractor(pipe.record, base_dir="runs/x")  # doctest: +SKIP
        >>> fmodel.predict(images).shape  # doctest: +SKIP
    """
    if record.model_path:
        p = Path(record.model_path)
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        model = load_any_model(str(p))
        # the saved extractor already ends at the feature layer
        fmodel = feature_model(model, None) if p.name.endswith(".extractor.keras") else \
            feature_model(model, record.layer)
    else:
        if not record.rebuildable:
            raise ModelError(f"feature extractor '{record.model}' was not saved with this file and "
                             f"cannot be rebuilt from its name (random weights); re-save with extractor=")
        kwargs = dict(record.build_kwargs)
        if record.weights not in (None, "file", "default"):
            kwargs.setdefault("weights", record.weights)
        model = load_any_model(record.model, **kwargs)
        fmodel = feature_model(model, record.layer)
    if record.weights_fingerprint:
        got = weights_fingerprint(fmodel)
        if got != record.weights_fingerprint:
            raise ModelError(f"feature extractor '{record.model}' rebuilt with different weights than "
                             f"the features were computed with; use the same weights file / version")
    return fmodel


def save_artifact(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` (estimators, arrays, plain values) as a skops file, atomically.

    Example:
        >>> save_artifact({"info": {"kind": "kerasclf.head"}, "head": head}, "runs/x/head.skops")  # doctest: +SKIP
    """
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    skops_io.dump(obj, tmp)
    os.replace(tmp, path)
    return path


def _refuse_untrusted(path: Path) -> list[str]:
    """The non-default types ``path`` needs, after checking each is in :data:`TRUSTED_TYPES`."""
    try:
        needed = skops_io.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: a damaged kerasclf artefact ({type(exc).__name__}: {exc}); "
                         f"re-create it") from None
    extra = [t for t in needed if t not in TRUSTED_TYPES]
    if extra:
        raise ModelError(f"{path}: holds types kerasclf does not load ({', '.join(extra[:4])}); "
                         f"it was not written by kerasclf, so it is refused")
    return needed


def read_artifact(path: str | Path) -> dict[str, Any]:
    """Load a kerasclf artefact (``.skops``) without running code; refuse anything else.

    Only scikit-learn / numpy types skops trusts by default plus :data:`TRUSTED_TYPES` are
    rebuilt. An old joblib / pickle file is refused (loading one can run any code it holds):
    convert one you made yourself with ``kerasclf convert-artifact OLD.joblib --trust``.

    Raises:
        ModelError: missing file, old joblib/pickle format, unknown types, not a kerasclf artefact.

    Example:
        >>> read_artifact("runs/x/head.skops")["info"]["kind"]  # doctest: +SKIP
        'kerasclf.head'
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} not found; check the path")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            first = f.read(1)
        if first == b"\x80" or path.suffix in LEGACY_SUFFIXES:
            raise ModelError(f"{path}: an old joblib/pickle file, which can run code when loaded, so "
                             f"kerasclf refuses it; if you made it yourself, convert it once with "
                             f"`kerasclf convert-artifact {path} --trust`")
        raise ModelError(f"{path}: not a kerasclf head or clustering model (those are {ARTIFACT_SUFFIX} files)")
    trusted = _refuse_untrusted(path)
    try:
        obj = skops_io.load(path, trusted=trusted)
    except Exception as exc:  # skops raises many kinds on a malformed file; none is the user's code
        raise ModelError(f"{path}: cannot load this artefact ({type(exc).__name__}: {exc}); re-create it") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("info"), dict):
        raise ModelError(f"{path}: not a kerasclf head or clustering model")
    return obj


def load_artifact(path: str | Path, kind: str, what: str, hint: str) -> dict[str, Any]:
    """The dict a kerasclf artefact holds (:func:`read_artifact`), checked to be of ``kind``.

    Example:
        >>> load_artifact("missing.skops", "kerasclf.head", "head", "save_head")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} {path} not found; check the path")
    obj = read_artifact(path)
    if obj["info"].get("kind") != kind:
        raise ModelError(f"{path}: not a kerasclf {what} (save it with {hint})")
    return obj


def artifact_target(path: str | Path, what: str, overwrite: bool) -> Path:
    """Check where an artefact will be written: the ``.skops`` suffix, and no silent overwrite."""
    path = Path(path)
    if path.suffix != ARTIFACT_SUFFIX:
        raise ConfigError(f"{path}: a {what} is saved as a {ARTIFACT_SUFFIX} file; "
                          f"use e.g. {what.split()[-1]}{ARTIFACT_SUFFIX}")
    if path.exists() and not overwrite:
        raise ModelError(f"{path} already exists; pass overwrite=True (or --overwrite) or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def convert_artifact(path: str | Path, *, trust: bool = False) -> Path:
    """Re-save an old ``.joblib`` head / clustering model as ``.skops`` (``kerasclf convert-artifact``).

    Loading a joblib file runs whatever code it holds, so this needs ``trust=True``: pass it only
    for a file you made yourself. The new file is written beside the old one (same stem); the old
    file is left as it is.

    Raises:
        ConfigError: ``trust`` not given, or the ``.skops`` file exists.
        ModelError: the file is not a kerasclf head / clustering model.

    Example:
        >>> convert_artifact("runs/x/head.joblib", trust=True)  # doctest: +SKIP
        PosixPath('runs/x/head.skops')
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} not found; check the path")
    if not trust:
        raise ConfigError(f"{path}: converting loads the pickle inside, which runs any code it holds; "
                          f"pass --trust (trust=True) only for a file you made yourself")
    out = path.with_suffix(ARTIFACT_SUFFIX)
    if out.exists():
        raise ConfigError(f"{out} already exists; move it away to convert {path} again")
    try:
        obj = joblib.load(path)
    except Exception as exc:  # a trusted legacy file that is damaged: any unpickling error
        raise ModelError(f"{path}: cannot load this joblib file ({type(exc).__name__}: {exc})") from None
    kind = obj.get("info", {}).get("kind") if isinstance(obj, dict) else None
    if kind not in ("kerasclf.head", "kerasclf.clusters"):
        raise ModelError(f"{path}: not a kerasclf head or clustering model; nothing converted")
    save_artifact(obj, out)
    try:
        _refuse_untrusted(out)
    except ModelError:
        out.unlink()
        raise
    return out
