"""``kerasclf analyze RUN_OR_MODEL``: the full analysis of a finished run (or a model on a folder).

For a run folder the recipe and split manifest say which images are validation and test; the
report is written to ``<run>/analysis/report.html``.

Example:
    >>> from kerasclf.analysis.run_analysis import analyze_run      # doctest: +SKIP
    >>> result = analyze_run("runs/demo")
    >>> result["report"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.errors import DataError

__all__ = ["analyze_run", "split_arrays"]


def split_arrays(spec: Any, index: np.ndarray | None, image_size: tuple[int, int],
                 batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The images (float32 0..255, resized) and labels of one split, in manifest order."""
    from kerasclf.data.pipeline import make_dataset

    ds = make_dataset(spec, index, image_size=image_size, batch_size=batch_size, shuffle=False, cache=None)
    xs, ys = [], []
    for x, y in ds:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
    if not xs:
        raise DataError(f"{spec.source}: no readable images in this split")
    return np.concatenate(xs), np.concatenate(ys)


def analyze_run(target: str | Path, data: str | Path | None = None, *, split: str = "test",
                out_dir: str | Path | None = None, explain_methods: tuple[str, ...] = ("gradcam", "gradcam++", "smoothgrad"),
                max_gallery: int = 10) -> dict[str, Any]:
    """Analyse a run folder (its own split) or a model file on a folder of class subfolders."""
    from kerasclf.analysis.analyze import analyze
    from kerasclf.data import sources, splits
    from kerasclf.io import load_model
    from kerasclf.train.recipe import load_recipe
    from kerasclf.zoo import get_cfg, is_registered

    target = Path(target)
    if target.is_dir() and (target / "recipe.yaml").is_file():
        run = target
        loaded = load_model(run / "model.keras")
        recipe = load_recipe(run / "recipe.yaml")
        spec = sources.load({"source": recipe.data.source, **recipe.data.options})
        parts = splits.read_manifest(run / "split.csv", spec)
        history = run / "history.csv"
        batch_losses = run / "batch_loss.csv"
        evaluated = split if len(parts.get(split, [])) else "val"
        images, labels = split_arrays(spec, parts[evaluated], loaded.image_size)
        val = split_arrays(spec, parts["val"], loaded.image_size) if evaluated != "val" and len(parts.get("val", [])) else None
        out = Path(out_dir) if out_dir else run / "analysis"
        title = f"{recipe.name}: {recipe.model.name}"
    else:
        if data is None:
            raise DataError(f"{target} is a model file: give the folder to analyse it on, "
                            f"e.g. `kerasclf analyze {target} held_out/`")
        from kerasclf.predict import folder_for_model

        loaded = load_model(target)
        spec, remap = folder_for_model(loaded, data)
        images, labels = split_arrays(spec, None, loaded.image_size)
        labels = remap[labels.reshape(-1).astype(int)]
        if loaded.task == "binary":
            labels = labels.reshape(-1, 1).astype("float32")
        val, history, batch_losses, evaluated = None, None, None, "data"
        out = Path(out_dir) if out_dir else target.parent / f"analysis_{Path(data).name}"
        title = f"{target.name} on {data}"
    if loaded.task == "autoencoder":
        raise DataError(f"{target} is an autoencoder: `analyze` explains classifiers; see its "
                        f"reconstructions.png, or cluster its features with `kerasclf cluster`")
    model_name = loaded.meta.get("model_name")
    layer = get_cfg(model_name).gradcam_layer if model_name and is_registered(model_name) else None
    result = analyze(loaded.model, (images, labels), out_dir=out, class_names=loaded.class_names,
                     task=loaded.task, history_csv=history if history and Path(history).is_file() else None,
                     batch_losses=batch_losses if batch_losses and Path(batch_losses).is_file() else None,
                     val_data=val, split=evaluated, title=title, explain_layer=layer,
                     explain_methods=explain_methods, max_gallery=max_gallery)
    return result
