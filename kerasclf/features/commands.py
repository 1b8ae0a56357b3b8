"""Task functions for the CLI: ``kerasclf features``, a scikit-learn head run, and loading either
kind of feature pipeline for ``kerasclf predict``.

Example:
    >>> from kerasclf.features.commands import run_features, run_head, load_predictor
    >>> run_features("resnet50_features", "photos/", weights="imagenet")["n_images"]   # doctest: +SKIP
    >>> run_head("photos/", features_model="resnet50_features", kind="logreg",
    ...          out_dir="runs/photos_logreg")["metrics"]["accuracy"]                 # doctest: +SKIP
    >>> load_predictor("runs/photos_logreg/head.skops").predict_paths(["new/"])     # doctest: +SKIP
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.data.splits import split_indices
from kerasclf.errors import ConfigError, ModelError, RunExistsError
from kerasclf.features.artifacts import read_artifact
from kerasclf.features.cluster import ClusterModel, as_spec
from kerasclf.features.enriched import default_taps, default_tta, enriched_features
from kerasclf.features.extract import DEFAULT_CACHE, extract_features
from kerasclf.features.heads import HEAD_CS, choose_c, evaluate_head, fit_head, load_head, save_head

__all__ = ["run_features", "run_head", "load_predictor"]


def run_features(model: Any, data: Any, *, layer: str | None = "auto",
                 image_size: tuple[int, int] | None = None, weights: Any = "default",
                build_kwargs: dict[str, Any] | None = None,
                 cache_dir: str | Path | None = None, batch_size: int = 64,
                 verbose: int = 1) -> dict[str, Any]:
    """``kerasclf features MODEL DATA``: extract (or find cached) features and summarise them.

    Args:
        model: zoo name, ``.keras`` path or Keras model.
        data: a folder, ``"digits"`` or a DataSpec.
        layer, image_size, weights, batch_size: as in
            :func:`~kerasclf.features.extract.extract_features`.
        cache_dir: default ``~/.cache/kerasclf/features`` (``$KERASCLF_FEATURE_CACHE``).
        build_kwargs: extra keyword arguments for the zoo builder (``num_classes``).
        verbose: progress bar and one summary line.

    Returns:
        ``{"path", "n_images", "dim", "from_cache", "seconds", "images_per_second", "skipped"}``.

    Example:
        >>> run_features("resnet50_features", "photos/", weights="imagenet")  # doctest: +SKIP
        {'path': '...', 'n_images': 2000, 'dim': 2048, 'from_cache': False, ...}
    """
    spec = as_spec(data)
    fs = extract_features(model, spec, layer=layer, image_size=image_size, weights=weights,
                          build_kwargs=build_kwargs,
                          cache_dir=cache_dir if cache_dir is not None else DEFAULT_CACHE,
                          batch_size=batch_size, verbose=verbose)
    out = {"path": str(fs.path) if fs.path else None, "n_images": len(fs),
           "dim": int(fs.features.shape[1]), "from_cache": fs.from_cache,
           "seconds": round(fs.seconds, 3), "images_per_second": round(fs.images_per_second, 1),
           "skipped": len(fs.info.get("skipped", []))}
    if verbose:
        how = "cache hit" if fs.from_cache else f"{out['images_per_second']:.0f} images/s"
        print(f"features: {out['n_images']} x {out['dim']} ({how}) in {out['path']}")
    return out


def run_head(data: Any, *, features_model: Any, kind: str = "logreg", out_dir: str | Path,
             layer: str | None = "auto", image_size: tuple[int, int] | None = None,
             weights: Any = "default", build_kwargs: dict[str, Any] | None = None,
             cache_dir: str | Path | None = None, tta: bool | str = False, taps: tuple[str, ...] | str = (),
             C: float | str | Sequence[float] = 1.0,
             ratios: tuple[float, float, float] = (0.8, 0.0, 0.2), seed: int = 42,
             parts: dict[str, np.ndarray] | None = None, overwrite: bool = False, verbose: int = 1,
             **head_options: Any) -> dict[str, Any]:
    """Fit a scikit-learn head on cached features of a labelled data set; evaluate; save.

    Writes ``head.skops`` (+ ``head.json``, ``head.extractor.keras`` when needed) and
    ``metrics.json`` (same shape as a Keras run's) into ``out_dir``.

    Args:
        data: a folder of class subfolders, ``"digits"`` or a DataSpec.
        features_model: zoo name, ``.keras`` path or Keras model.
        kind: ``logreg`` | ``linear_svm`` | ``hgb``.
        out_dir: output folder.
        tta: features averaged with the mirror image's (:mod:`kerasclf.features.enriched`); the
            saved extractor flips too, so predictions match. ``"auto"``:
            :func:`~kerasclf.features.enriched.default_tta` (what measured best for the extractor).
        taps: backbone layers whose pooled outputs join the features; ``"auto"``:
            :func:`~kerasclf.features.enriched.default_taps` (MobileNet's four; none for EfficientNet-Lite0).
        C: the linear heads' inverse regularisation (``hgb`` has none); ``"auto"`` or a list: the value of
            :data:`~kerasclf.features.heads.HEAD_CS` (or the list) with the lowest validation
            log-loss of a head fitted on train (needs a validation part in ``ratios``).
        ratios: train/val/test fractions for :func:`kerasclf.data.splits.split_indices`; the head
            is fitted on train + val and scored on test.
        seed: split seed.
        parts: a fixed split (``{"train", "val", "test"}`` index arrays into the data, e.g. read from a
            manifest) instead of ``ratios`` and ``seed``: heads on differently labelled copies of one
            data set are then scored on the same images.
        overwrite: replace an existing ``head.skops``.
        **head_options: passed to :func:`~kerasclf.features.heads.fit_head` (``calibrate``).

    Returns:
        ``{"head": path, "metrics": {...}, "n_train", "n_test", "features_from_cache", "C"}``;
        with a validation part also ``"val"`` (the metrics of the head fitted on train alone), and
        with ``C`` chosen ``"val_log_loss"`` per ``C``.

    Example:
        >>> run_head("photos/", features_model="efficientnet_lite0", tta="auto", taps="auto", C="auto",
        ...          ratios=(0.7, 0.1, 0.2), out_dir="runs/h")  # doctest: +SKIP
    """
    spec = as_spec(data)
    out = Path(out_dir)
    if (out / "head.skops").exists() and not overwrite:
        raise RunExistsError(str(out))
    cs = HEAD_CS if C == "auto" else tuple(C) if isinstance(C, (list, tuple)) else None
    if cs is None and isinstance(C, str):
        raise ConfigError(f"C={C!r}: give a number, a list of numbers or 'auto'")
    taps = default_taps(features_model, layer) if taps == "auto" else tuple(taps)
    tta = default_tta(features_model) if tta == "auto" else bool(tta)
    fs = enriched_features(spec, features_model, layer=layer, image_size=image_size, weights=weights,
                           build_kwargs=build_kwargs, tta=tta, taps=taps,
                           cache_dir=cache_dir if cache_dir is not None else out / "features", verbose=verbose)
    parts = split_indices(spec, ratios, seed=seed) if parts is None else parts
    pos = {i: n for n, i in enumerate(spec.ids())}
    rows = np.array([pos[i] for i in fs.ids])  # feature rows follow fs.ids (files may be skipped)
    where = {int(r): n for n, r in enumerate(rows)}
    rows_of = {k: np.sort(np.array([where[i] for i in v if i in where], dtype=int)) for k, v in parts.items()}
    X, y = fs.features, fs.labels
    part = {k: (np.asarray(X[r]), y[r]) for k, r in rows_of.items()}
    chosen: dict[str, Any] = {}
    c: float | None
    if kind == "hgb":  # no C to choose: gradient boosting has no such knob
        c = None
    elif cs is not None:
        c, losses = choose_c(part["train"], part["val"], kind, cs, seed=seed, **head_options)
        chosen["val_log_loss"] = losses
    else:
        c = float(C)
    if len(part["val"][1]):  # the validation score of a head fitted on train alone
        fitted = fit_head(*part["train"], kind=kind, C=c or 1.0, seed=seed, **head_options)
        chosen["val"] = evaluate_head(fitted, *part["val"], spec.class_names, spec.task)
    tr = np.sort(np.r_[rows_of["train"], rows_of["val"]])
    te = rows_of["test"]
    head = fit_head(np.asarray(X[tr]), y[tr], kind=kind, C=c or 1.0, seed=seed, **head_options)
    metrics = evaluate_head(head, np.asarray(X[te]), y[te], spec.class_names, spec.task) if len(te) else {}
    path = save_head(out / "head.skops", head, fs.record, extractor=fs.extractor,
                     metrics={"accuracy": metrics.get("accuracy"), "C": c}, overwrite=overwrite)
    record = {"test": metrics, "C": c, **chosen, "features": {"tta": tta, "taps": list(taps), "dim": int(X.shape[1])}}
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=float))
    if verbose and metrics:
        print(f"{kind} head{f' (C={c:g})' if c is not None else ''} on {len(tr)} images: test accuracy {metrics['accuracy']:.3f} ({len(te)} images)")
    return {"head": str(path), "metrics": metrics, "n_train": int(len(tr)), "n_test": int(len(te)),
            "features_from_cache": fs.from_cache, "C": c, **chosen,
            "features_images_per_s": fs.images_per_second}


def load_predictor(path: str | Path) -> Any:
    """A saved head (:class:`~kerasclf.features.heads.HeadPipeline`) or clustering model
    (:class:`~kerasclf.features.cluster.ClusterModel`), by what the ``.skops`` file holds.

    Nothing in the file runs: see :func:`~kerasclf.features.artifacts.read_artifact`.

    Raises:
        ModelError: not a kerasclf feature pipeline, or an old joblib file (refused, with the
            ``kerasclf convert-artifact`` command to convert one you trust).

    Example:
        >>> type(load_predictor("runs/x/clusters.skops")).__name__  # doctest: +SKIP
        'ClusterModel'
    """
    path = Path(path)
    kind = read_artifact(path)["info"].get("kind")
    if kind == "kerasclf.head":
        return load_head(path)
    if kind == "kerasclf.clusters":
        return ClusterModel.load(path)
    raise ModelError(f"{path}: not a kerasclf head or clustering model")
