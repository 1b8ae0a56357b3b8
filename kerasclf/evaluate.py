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
from kerasclf.analysis.metrics import choose_thresholds, classification_metrics, mean_attribute_accuracy
from kerasclf.data import sources, splits
from kerasclf.data.pipeline import spec_batches, split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import DataError, ModelError
from kerasclf.io import LoadedModel, ModelFacts, is_run_folder, load_model, read_meta
from kerasclf.train.recipe import load_recipe
from kerasclf.zoo import get_cfg, is_registered

__all__ = ["folder_for_model", "evaluate_model", "analyze_run", "run_split", "run_parts", "is_run_folder",
           "labelled_images", "attribute_accuracy"]

EXPLAIN_DEFAULT = ("gradcam", "gradcam++", "smoothgrad")


def folder_for_model(loaded: LoadedModel, data: str | Path) -> tuple[DataSpec, np.ndarray]:
    """A folder of class subfolders read for a saved model: ``(spec, remap)``.

    ``remap[folder_label]`` is the model's class index. Folder classes must be model classes (by
    name; a subset in any order is fine), else a one-line ModelError names them.
    """
    spec = sources.from_folder(data)
    names = loaded.class_names
    if not loaded.names_known:
        raise ModelError(f"{loaded.path} records no class names, so the folders {', '.join(spec.class_names[:10])} "
                         f"cannot be matched to its {len(names)} outputs; pass --classes with the names in "
                         f"output order (e.g. --classes {','.join(spec.class_names[:len(names)])})")
    unknown = [c for c in spec.class_names if c not in names]
    if unknown:
        raise ModelError(f"{data}: class folder(s) {', '.join(unknown)} are not classes of {loaded.path} "
                         f"(it knows: {', '.join(names[:20])}); rename the folders to match")
    return spec, np.array([names.index(c) for c in spec.class_names])


def _folder_arrays(loaded: LoadedModel, data: str | Path, batch_size: int,
                   max_images: int | None = None) -> tuple[np.ndarray, np.ndarray, DataSpec]:
    """Images and labels (in the model's class indices) of a folder, at the model's input size;
    with ``max_images``, a seeded stratified sample of them (:func:`kerasclf.data.splits.sample_indices`)."""
    spec, remap = folder_for_model(loaded, data)
    index = splits.sample_indices(spec, max_images) if max_images else None
    images, labels = split_arrays(spec, index, image_size=loaded.image_size, batch_size=batch_size)
    labels = remap[labels.reshape(-1).astype(int)]
    if loaded.task == "binary":
        labels = labels.reshape(-1, 1).astype("float32")
    return images, labels, spec


def evaluate_model(model: str | Path, data: str | Path, *, batch_size: int = 32,
                   facts: ModelFacts | None = None) -> dict[str, Any]:
    """Accuracy and per-class metrics of a saved model on a folder of class subfolders.

    The folder's class names must be among the model's; they are mapped by name, so the
    folder may hold a subset of the classes in any order. ``facts``: what a model kerasclf did
    not save cannot say (:class:`~kerasclf.io.ModelFacts`).
    """
    loaded = load_model(model, facts=facts)
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


def run_parts(run_dir: Path) -> tuple[Any, DataSpec, dict[str, np.ndarray]]:
    """A run folder's recipe, data spec (its ``data.decisions`` applied) and split manifest (train/val/test indices).

    Example:
        >>> recipe, spec, parts = run_parts(Path("runs/flowers"))   # doctest: +SKIP
    """
    recipe = load_recipe(run_dir / "recipe.yaml")
    spec = recipe.data.load_spec()
    return recipe, spec, splits.read_manifest(run_dir / "split.csv", spec)


def run_split(run_dir: str | Path, split: str = "val", *, image_size: tuple[int, int],
              max_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (float32 0..255) and labels of one split of a run folder, read as training read them.

    ``max_images``: a seeded stratified sample of the split (every class keeps its share).

    Example:
        >>> x, y = run_split("runs/demo", "val", image_size=(32, 32), max_images=100)  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    _, spec, parts = run_parts(run_dir)
    index = parts.get(split, [])
    if not len(index):
        raise DataError(f"{run_dir / 'split.csv'} has no '{split}' images; use --calibration val, test or a folder")
    return split_arrays(spec, splits.sample_indices(spec, max_images, index) if max_images else index,
                        image_size=image_size)


def labelled_images(model: str | Path, source: str | Path | None, *,
                    max_images: int = 256, facts: ModelFacts | None = None) -> tuple[Any, str]:
    """Real images to check an export on: ``((images, labels), name)``, or ``(folder, name)`` unlabelled.

    ``source``: ``None`` or ``val`` / ``test`` (that split of the model's run folder), a folder of
    the model's class subfolders (labelled), or any folder of images (unlabelled, read by the export).
    Labelled images are a seeded stratified sample of at most ``max_images`` (not the first files
    of a class-sorted folder).

    Example:
        >>> data, name = labelled_images("runs/demo/model.keras", None)    # doctest: +SKIP
        >>> name
        'runs/demo val split'
    """
    model, run = Path(model), Path(model).parent
    if source is None or str(source) in ("val", "test"):
        split = str(source or "val")
        if not is_run_folder(run):
            raise DataError(f"{model} is not inside a run folder (no recipe.yaml/split.csv beside it), so it has "
                            f"no {split} split; pass --calibration FOLDER of real images")
        size = tuple(read_meta(model).get("image_size") or load_model(model).image_size)
        return run_split(run, split, image_size=size, max_images=max_images), f"{run} {split} split"
    folder = Path(source)
    loaded = load_model(model, facts=facts)
    if folder.is_dir() and any(d.is_dir() and d.name in loaded.class_names for d in folder.iterdir()):
        images, labels, _ = _folder_arrays(loaded, folder, 64, max_images)
        return (images, labels), f"{folder} (labelled by class folder)"
    return folder, str(folder)


def analyze_run(target: str | Path, data: str | Path | None = None, *, split: str = "test",
                out_dir: str | Path | None = None, explain_methods: tuple[str, ...] = EXPLAIN_DEFAULT,
                max_gallery: int = 10, facts: ModelFacts | None = None) -> dict[str, Any]:
    """Analyse a run folder (on its own split) or a model file on a folder of class subfolders.

    ``facts``: for a model file kerasclf did not save, what it cannot say (class names, ...).

    For a run folder the recipe and split manifest say which images are validation and test; the
    report goes to ``<run>/analysis/report.html``.
    """
    target = Path(target)
    history = batch_losses = val = None
    if target.is_dir() and (target / "recipe.yaml").is_file():
        if facts is not None and facts.given:
            raise DataError(f"{target} is a run folder: its model records its facts; drop {', '.join(facts.given)}")
        loaded = load_model(target / "model.keras")
        recipe, spec, parts = run_parts(target)
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
        loaded = load_model(target, facts=facts)
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
                     explain_methods=explain_methods, max_gallery=max_gallery,
                     audit_dir=target / "audit" if target.is_dir() else None)  # `kerasclf audit --run` wrote it
    result["skipped"] = list(spec.skipped)  # unusable files (bombs, 1x1, truncated ...) with the reason
    if spec.skipped:
        result["skipped_csv"] = str(write_rows(out / "skipped.csv", [{"path": p, "reason": r} for p, r in spec.skipped],
                                               ["path", "reason"]))
    return result


def attribute_accuracy(run_dir: str | Path, *, batch_size: int = 64) -> dict[str, Any]:
    """A multi-label run's mean attribute accuracy on its test split at one threshold per attribute
    chosen on its validation split (maximising accuracy), beside the same at 0.5 and the
    per-attribute majority baseline (each attribute's more common value in the training split).

    Example:
        >>> attribute_accuracy("runs/celeba")["test_accuracy"]  # doctest: +SKIP
        0.87
    """
    run_dir = Path(run_dir)
    loaded = load_model(run_dir / "model.keras")
    if loaded.meta.get("task") != "multilabel":
        raise ModelError(f"{run_dir}: attribute_accuracy needs a multi-label run, this one is "
                         f"{loaded.meta.get('task')!r}")
    size = tuple(loaded.meta["image_size"])
    _, spec, split_index = run_parts(run_dir)  # read once: val/test images, training labels (no image decoded)
    for s in ("val", "test"):
        if not len(split_index.get(s, [])):
            raise DataError(f"{run_dir / 'split.csv'} has no '{s}' images; attribute_accuracy needs a "
                            f"run with validation and test splits")
    parts = {s: split_arrays(spec, split_index[s], image_size=size) for s in ("val", "test")}
    probs = {s: np.asarray(loaded.model.predict(parts[s][0], batch_size=batch_size, verbose=0))
             for s in ("val", "test")}
    thresholds = choose_thresholds(parts["val"][1], probs["val"], metric="accuracy")
    y_test = parts["test"][1] > 0.5
    majority = np.asarray(spec.labels)[split_index["train"]].mean(axis=0) >= 0.5
    return {"test_accuracy": mean_attribute_accuracy(y_test, probs["test"], thresholds),
            "test_accuracy_at_0_5": mean_attribute_accuracy(y_test, probs["test"], 0.5),
            "majority_baseline": mean_attribute_accuracy(y_test, np.broadcast_to(majority, y_test.shape)),
            "thresholds": dict(zip(loaded.meta["class_names"], thresholds))}
