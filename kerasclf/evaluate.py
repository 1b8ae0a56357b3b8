"""Score a saved model or a finished run on labelled data: ``kerasclf evaluate`` and ``kerasclf analyze``.

:func:`evaluate_model` gives the metrics of a saved model on a folder of class subfolders;
:func:`analyze_run` writes the full analysis (figures, ``metrics.json``, ``report.html``) of a run
folder on its own split, or of a saved model on a folder. Both read images with the one pipeline
(:mod:`kerasclf.data.pipeline`) at the model's own input size, and map folder names to the
model's classes by name (:func:`folder_for_model`).

Example:
    >>> from kerasclf.evaluate import analyze_run, evaluate_model          # doctest: +SKIP
    >>> evaluate_model("runs/demo/model.keras", "held_out/")["accuracy"]   # doctest: +SKIP
    >>> analyze_run("runs/demo")["report"]                                  # doctest: +SKIP
    PosixPath('runs/demo/analysis/report.html')
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kerasclf._files import write_rows
from kerasclf.analysis.analyze import analyze
from kerasclf.analysis.metrics import classification_metrics
from kerasclf.data import sources, splits
from kerasclf.data.pipeline import spec_batches, split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import DataError, ModelError
from kerasclf.io import LoadedModel, load_model
from kerasclf.train.recipe import load_recipe
from kerasclf.zoo import get_cfg, is_registered

__all__ = ["folder_for_model", "evaluate_model", "analyze_run"]

EXPLAIN_DEFAULT = ("gradcam", "gradcam++", "smoothgrad")


def folder_for_model(loaded: LoadedModel, data: str | Path) -> tuple[DataSpec, np.ndarray]:
    """A folder of class subfolders read for a saved model: ``(spec, remap)``.

    ``remap[folder_label]`` is the model's class index. Folder classes must be model classes (by
    name; a subset in any order is fine), else a one-line ModelError names them.
    """
    spec = sources.from_folder(data)
    names = loaded.class_names
    unknown = [c for c in spec.class_names if c not in names]
    if unknown:
        raise ModelError(f"{data}: class folder(s) {', '.join(unknown)} are not classes of {loaded.path} "
                         f"(it knows: {', '.join(names[:20])}); rename the folders to match")
    return spec, np.array([names.index(c) for c in spec.class_names])


def _folder_arrays(loaded: LoadedModel, data: str | Path, batch_size: int) -> tuple[np.ndarray, np.ndarray, DataSpec]:
    """Images and labels (in the model's class indices) of a folder, at the model's input size."""
    spec, remap = folder_for_model(loaded, data)
    images, labels = split_arrays(spec, image_size=loaded.image_size, batch_size=batch_size)
    labels = remap[labels.reshape(-1).astype(int)]
    if loaded.task == "binary":
        labels = labels.reshape(-1, 1).astype("float32")
    return images, labels, spec


def evaluate_model(model: str | Path, data: str | Path, *, batch_size: int = 32) -> dict[str, Any]:
    """Accuracy and per-class metrics of a saved model on a folder of class subfolders.

    The folder's class names must be among the model's; they are mapped by name, so the
    folder may hold a subset of the classes in any order.
    """
    loaded = load_model(model)
    spec, remap = folder_for_model(loaded, data)
    ys, ps = [], []  # streamed: a large folder never sits in memory as float32
    for images, labels in spec_batches(spec, image_size=loaded.image_size, batch_size=batch_size):
        ps.append(loaded.predict(images, batch_size))
        ys.append(remap[labels.reshape(-1).astype(int)])
    y, p = np.concatenate(ys), np.concatenate(ps)
    if loaded.task == "binary":
        y = y.reshape(-1, 1)
    metrics = classification_metrics(y, p, loaded.task, loaded.class_names)
    metrics["n_images"] = int(len(y))
    metrics["skipped_files"] = len(spec.skipped)
    return metrics


def analyze_run(target: str | Path, data: str | Path | None = None, *, split: str = "test",
                out_dir: str | Path | None = None, explain_methods: tuple[str, ...] = EXPLAIN_DEFAULT,
                max_gallery: int = 10) -> dict[str, Any]:
    """Analyse a run folder (on its own split) or a model file on a folder of class subfolders.

    For a run folder the recipe and split manifest say which images are validation and test; the
    report goes to ``<run>/analysis/report.html``.
    """
    target = Path(target)
    history = batch_losses = val = None
    if target.is_dir() and (target / "recipe.yaml").is_file():
        loaded = load_model(target / "model.keras")
        recipe = load_recipe(target / "recipe.yaml")
        spec = sources.load({"source": recipe.data.source, **recipe.data.options})
        parts = splits.read_manifest(target / "split.csv", spec)
        evaluated = split if len(parts.get(split, [])) else "val"
        images, labels = split_arrays(spec, parts[evaluated], image_size=loaded.image_size)
        if evaluated != "val" and len(parts.get("val", [])):
            val = split_arrays(spec, parts["val"], image_size=loaded.image_size)
        history, batch_losses = target / "history.csv", target / "batch_loss.csv"
        out = Path(out_dir) if out_dir else target / "analysis"
        title = f"{recipe.name}: {recipe.model.name}"
    else:
        if data is None:
            raise DataError(f"{target} is a model file: give the folder to analyse it on, "
                            f"e.g. `kerasclf analyze {target} held_out/`")
        loaded = load_model(target)
        images, labels, spec = _folder_arrays(loaded, data, 64)
        evaluated = "data"
        out = Path(out_dir) if out_dir else target.parent / f"analysis_{Path(data).name}"
        title = f"{target.name} on {data}"
    if loaded.task == "autoencoder":
        raise DataError(f"{target} is an autoencoder: `analyze` explains classifiers; see its "
                        f"reconstructions.png, or cluster its features with `kerasclf cluster`")
    model_name = loaded.meta.get("model_name")
    layer = get_cfg(model_name).gradcam_layer if model_name and is_registered(model_name) else None
    result = analyze(loaded.model, (images, labels), out_dir=out, class_names=loaded.class_names,
                     task=loaded.task, history_csv=history if history and history.is_file() else None,
                     batch_losses=batch_losses if batch_losses and batch_losses.is_file() else None,
                     val_data=val, split=evaluated, title=title, explain_layer=layer,
                     explain_methods=explain_methods, max_gallery=max_gallery)
    result["skipped"] = list(spec.skipped)  # unusable files (bombs, 1x1, truncated ...) with the reason
    if spec.skipped:
        result["skipped_csv"] = str(write_rows(out / "skipped.csv", [{"path": p, "reason": r} for p, r in spec.skipped],
                                               ["path", "reason"]))
    return result
