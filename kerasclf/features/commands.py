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
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.data.splits import split_indices
from kerasclf.errors import ModelError, RunExistsError
from kerasclf.features.artifacts import read_artifact
from kerasclf.features.cluster import ClusterModel, as_spec
from kerasclf.features.extract import DEFAULT_CACHE, extract_features
from kerasclf.features.heads import evaluate_head, fit_head, load_head, save_head

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
             weights: Any = "default",
                build_kwargs: dict[str, Any] | None = None, cache_dir: str | Path | None = None,
             ratios: tuple[float, float, float] = (0.8, 0.0, 0.2), seed: int = 42,
             overwrite: bool = False, verbose: int = 1, **head_options: Any) -> dict[str, Any]:
    """Fit a scikit-learn head on cached features of a labelled data set; evaluate; save.

    Writes ``head.skops`` (+ ``head.json``, ``head.extractor.keras`` when needed) and
    ``metrics.json`` (same shape as a Keras run's) into ``out_dir``.

    Args:
        data: a folder of class subfolders, ``"digits"`` or a DataSpec.
        features_model: zoo name, ``.keras`` path or Keras model.
        kind: ``logreg`` | ``linear_svm`` | ``hgb``.
        out_dir: output folder.
        ratios: train/val/test fractions for :func:`kerasclf.data.splits.split_indices`; the head
            is fitted on train + val and scored on test.
        seed: split seed.
        overwrite: replace an existing ``head.skops``.
        **head_options: passed to :func:`~kerasclf.features.heads.fit_head` (``C``, ``calibrate``).

    Returns:
        ``{"head": path, "metrics": {...}, "n_train", "n_test", "features_from_cache"}``.

    Example:
        >>> run_head("digits", features_model=model, kind="hgb", out_dir="runs/d")  # doctest: +SKIP
    """
    spec = as_spec(data)
    out = Path(out_dir)
    if (out / "head.skops").exists() and not overwrite:
        raise RunExistsError(str(out))
    fs = extract_features(features_model, spec, layer=layer, image_size=image_size, weights=weights,
                          build_kwargs=build_kwargs,
                          cache_dir=cache_dir if cache_dir is not None else out / "features",
                          verbose=verbose)
    parts = split_indices(spec, ratios, seed=seed)
    train, test = np.r_[parts["train"], parts["val"]], parts["test"]
    pos = {i: n for n, i in enumerate(spec.ids())}
    rows = np.array([pos[i] for i in fs.ids])  # feature rows follow fs.ids (files may be skipped)
    where = {int(r): n for n, r in enumerate(rows)}
    tr = np.array([where[i] for i in train if i in where], dtype=int)
    te = np.array([where[i] for i in test if i in where], dtype=int)
    X = fs.features
    head = fit_head(np.asarray(X[np.sort(tr)]), fs.labels[np.sort(tr)], kind=kind, seed=seed, **head_options)
    metrics = evaluate_head(head, np.asarray(X[np.sort(te)]), fs.labels[np.sort(te)],
                            spec.class_names, spec.task) if len(te) else {}
    path = save_head(out / "head.skops", head, fs.record, extractor=fs.extractor,
                     metrics={"accuracy": metrics.get("accuracy")}, overwrite=overwrite)
    (out / "metrics.json").write_text(json.dumps({"test": metrics}, indent=2, default=float))
    if verbose and metrics:
        print(f"{kind} head on {len(tr)} images: test accuracy {metrics['accuracy']:.3f} ({len(te)} images)")
    return {"head": str(path), "metrics": metrics, "n_train": int(len(tr)), "n_test": int(len(te)),
            "features_from_cache": fs.from_cache}


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
