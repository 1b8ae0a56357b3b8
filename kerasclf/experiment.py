"""Compare several models on one split: a leaderboard, TTA/ensemble gains, one honest test score.

A comparison recipe is a normal recipe (``data``, ``train`` defaults) plus a ``models`` list.
Each entry names a zoo model and a ``mode``: ``scratch`` (train from random init),
``feature_extraction`` (frozen backbone + new head), ``fine_tune`` (then unfreeze the top
with a lower LR) or ``sklearn`` (a scikit-learn head on cached backbone features). Every model
trains on the same split manifest; finished models are not retrained; only the best model by
validation accuracy is evaluated on the test split, once, at the end.

Example:
    >>> from kerasclf.experiment import compare          # doctest: +SKIP
    >>> board = compare("compare_digits")
    >>> board.rows[0]["label"], board.test["accuracy"]
"""
from __future__ import annotations

import copy
import csv
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kerasclf.analysis.metrics import classification_metrics
from kerasclf.analysis.report import comparison_report
from kerasclf.data import splits
from kerasclf.data.pipeline import split_arrays
from kerasclf.errors import ConfigError, KerasclfError, RunExistsError
from kerasclf.features.extract import extract_features
from kerasclf.features.heads import evaluate_head, fit_head, load_head, save_head
from kerasclf.io import load_model
from kerasclf.recipes import builtin_path
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe, apply_overrides
from kerasclf.zoo import build, get_cfg

__all__ = ["compare", "Leaderboard", "load_comparison", "MODES", "RecipeChangedError"]

MODES = ("scratch", "feature_extraction", "fine_tune", "sklearn")
_ENTRY_KEYS = {"name", "label", "mode", "train", "data", "head", "layer"}


@dataclass
class Leaderboard:
    """The comparison's result: one row per model (best first) and the test score of the best."""

    out_dir: Path
    rows: list[dict[str, Any]]
    best: str
    test: dict[str, Any]
    gains: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        cols = ("label", "mode", "train_acc", "val_acc", "val_loss", "params", "train_time_s", "images_per_s")
        cells = [[_fmt(r.get(c), c) for c in cols] for r in self.rows]
        w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols))]
        lines += ["  ".join(x[i].ljust(w[i]) for i in range(len(cols))) for x in cells]
        return "\n".join(lines)


def _fmt(v: Any, column: str = "") -> str:
    if v is None:
        return ""
    if column in ("train_time_s", "images_per_s"):
        return f"{float(v):,.1f}"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def load_comparison(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a comparison recipe (YAML) with ``--set`` overrides; validates every entry."""
    path = Path(path)
    if not path.is_file():
        path = builtin_path(str(path)) or path
    if not path.is_file():
        raise ConfigError(f"comparison recipe {path} not found")
    raw = apply_overrides(yaml.safe_load(path.read_text()) or {}, overrides or [])
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{path}: a comparison needs a non-empty 'models' list")
    for i, m in enumerate(models):
        if isinstance(m, str):
            models[i] = m = {"name": m}
        mode = m.get("mode", "scratch")
        if mode not in MODES:
            raise ConfigError(f"{path}: models[{i}].mode '{mode}' is not one of {', '.join(MODES)}")
    raw.setdefault("name", path.stem)
    return raw


def _entry_recipe(raw: dict[str, Any], entry: dict[str, Any], manifest: Path, out: Path) -> tuple[str, Recipe]:
    mode = entry.get("mode", "scratch")
    label = entry.get("label") or f"{entry['name']}_{mode}"
    train_cfg = copy.deepcopy(raw.get("train", {}))
    train_cfg.update(copy.deepcopy(entry.get("train", {})))
    model = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    model["name"] = entry["name"]
    if mode == "feature_extraction":
        model.setdefault("trainable", False)
        train_cfg["fine_tune"] = None
    elif mode == "fine_tune":
        model.setdefault("trainable", False)
        train_cfg.setdefault("fine_tune", {"epochs": max(1, int(train_cfg.get("epochs", 1))),
                                           "learning_rate": 1e-4, "unfreeze": 20})
        if not train_cfg["fine_tune"]:
            train_cfg["fine_tune"] = {"epochs": 1, "learning_rate": 1e-4, "unfreeze": 20}
    else:
        train_cfg["fine_tune"] = None
    data = copy.deepcopy(raw.get("data", {}))
    data.update(copy.deepcopy(entry.get("data", {})))
    data.setdefault("split", {})
    data["split"] = {**data["split"], "manifest": str(manifest)}
    recipe = Recipe.from_dict({"name": label, "output_dir": str(out / "models"), "data": data,
                               "model": model, "train": train_cfg}, where=f"models[{label}]")
    return label, recipe


class RecipeChangedError(RunExistsError):
    """A comparison folder holds results of another recipe; resuming would mix the two."""

    def __init__(self, path: str | Path, change: str):
        KerasclfError.__init__(self, f"{path} was run with a different recipe ({change}); pass --overwrite "
                                     f"to replace it, or give the comparison a new name")
        self.path, self.change = Path(path), change


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """Where two YAML trees first differ, as ``key.path: old -> new``; ``None`` when equal."""
    here = where or "recipe"
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{where}.{key}" if where else str(key)
            if key not in new or key not in old:
                return f"{path} {'removed' if key not in new else 'added'}"
            change = _first_difference(old[key], new[key], path)
            if change:
                return change
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            change = _first_difference(a, b, f"{where}[{i}]")
            if change:
                return change
        return None
    if isinstance(old, list) and isinstance(new, list):
        return f"{here}: {len(old)} -> {len(new)} entries"
    return None if old == new else f"{here}: {repr(old)[:60]} -> {repr(new)[:60]}"


def _stored_comparison(out: Path) -> dict[str, Any] | None:
    """The recipe as run that ``out/comparison.yaml`` holds; ``None`` if ``out`` is no comparison folder."""
    path = out / "comparison.yaml"
    if not path.is_file():
        return None
    try:
        stored = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return stored if isinstance(stored, dict) and isinstance(stored.get("models"), list) else None


def _claim_folder(out: Path, raw: dict[str, Any], *, overwrite: bool) -> None:
    """Make ``out`` this comparison's folder: a new one, the same recipe resumed, or (``overwrite``)
    a previous comparison replaced. A different recipe without ``overwrite`` is refused, and a
    folder that is not a kerasclf comparison is never deleted."""
    as_run = yaml.safe_dump(raw, sort_keys=False)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        stored = _stored_comparison(out) if out.is_dir() else None
        if stored is None:
            raise ConfigError(f"{out} exists and is not a kerasclf comparison folder (no valid comparison.yaml); "
                              f"refusing to touch it, even with --overwrite; give the comparison another name")
        if overwrite:
            shutil.rmtree(out)
        else:
            change = _first_difference(stored, yaml.safe_load(as_run))
            if change:
                raise RecipeChangedError(out, change)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.yaml").write_text(as_run)


def _check_entry(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to reuse a model's folder (metrics, checkpoints) that another recipe made."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    stored_path = run_dir / "recipe.yaml"
    if not stored_path.is_file():
        raise RecipeChangedError(run_dir, "it holds no recipe.yaml to compare with")
    change = _first_difference(yaml.safe_load(stored_path.read_text()), yaml.safe_load(recipe.to_yaml()))
    if change:
        raise RecipeChangedError(run_dir, change)


def compare(recipe_path: str | Path, *, overrides: list[str] | None = None, output_dir: str | None = None,
            overwrite: bool = False, tta: bool | None = None, ensemble: int | None = None,
            verbose: int = 0) -> Leaderboard:
    """Train every model of a comparison recipe on one split; write the leaderboard and report.

    Resuming: only the identical recipe (``comparison.yaml`` in the folder, and each model's
    ``recipe.yaml``) resumes, and a model whose folder holds ``metrics.json`` is read back, not
    retrained. After an edit, :class:`RecipeChangedError` names the folder; ``overwrite=True``
    (``--overwrite``) replaces a previous comparison folder (never any other folder).
    """
    raw = load_comparison(recipe_path, overrides)
    out = Path(output_dir or raw.get("output_dir", "runs")) / raw["name"]
    _claim_folder(out, raw, overwrite=overwrite)

    base = Recipe.from_dict({k: v for k, v in raw.items() if k in ("name", "data", "train")})
    spec = base.data.load_spec()
    s = base.data.split
    manifest = out / "split.csv"
    splits.split_or_reuse(spec, manifest, (s.train, s.val, s.test), s.seed)

    rows: list[dict[str, Any]] = []
    for entry in raw["models"]:
        label, recipe = _entry_recipe(raw, entry, manifest, out)
        run_dir = out / "models" / label
        _check_entry(run_dir, recipe)
        if (run_dir / "metrics.json").is_file():
            metrics = json.loads((run_dir / "metrics.json").read_text())
        elif entry.get("mode") == "sklearn":
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "recipe.yaml").write_text(recipe.to_yaml())  # the recipe as run (train writes its own)
            metrics = _sklearn_entry(entry, recipe, spec, manifest, run_dir)
        else:
            if run_dir.exists():  # an interrupted model: continue it
                result = train(recipe, spec=spec, resume=True, verbose=verbose, evaluate_test=False)
            else:
                result = train(recipe, spec=spec, verbose=verbose, evaluate_test=False)
            metrics = result.metrics
        rows.append(_row(label, entry.get("mode", "scratch"), run_dir, metrics))

    rows.sort(key=lambda r: (-(r["val_acc"] or 0.0), r["val_loss"] if r["val_loss"] is not None else 1e9))
    best = rows[0]
    gains: dict[str, Any] = {}
    want_tta = raw.get("tta", False) if tta is None else tta
    k = int(raw.get("ensemble", 0) if ensemble is None else ensemble)
    keras_rows = [r for r in rows if r["mode"] != "sklearn"]
    arrays = _SplitArrays(spec, manifest)
    if want_tta and keras_rows:
        gains["tta"] = _tta_gain(keras_rows[0], spec, arrays)
    if k >= 2 and len(keras_rows) >= 2:
        gains["ensemble"] = _ensemble_gain(keras_rows[:k], spec, arrays)
    test = _evaluate_best(best, spec, arrays)
    board = Leaderboard(out_dir=out, rows=rows, best=best["label"], test=test, gains=gains)
    _write_outputs(board)
    return board


def _row(label: str, mode: str, run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    train_acc = None
    hist = run_dir / "history.csv"
    if hist.is_file():
        rows = list(csv.DictReader(hist.open()))
        if rows and "accuracy" in rows[-1]:
            train_acc = float(rows[-1]["accuracy"])
    val = metrics.get("val", {})
    return {"label": label, "mode": mode, "train_acc": metrics.get("train_accuracy", train_acc),
            "val_acc": val.get("accuracy"), "val_loss": val.get("loss", _last(hist, "val_loss")),
            "params": metrics.get("params"), "train_time_s": metrics.get("train_time_s"),
            "images_per_s": metrics.get("train_images_per_s"), "run_dir": str(run_dir)}


def _last(hist: Path, key: str) -> float | None:
    if not hist.is_file():
        return None
    rows = list(csv.DictReader(hist.open()))
    return float(rows[-1][key]) if rows and rows[-1].get(key) not in (None, "") else None


class _SplitArrays:
    """The images and labels of a split at an image size, read once and reused by TTA, the
    ensemble and the final test evaluation."""

    def __init__(self, spec: Any, manifest: Path):
        self.spec, self.parts = spec, splits.read_manifest(manifest, spec)
        self._memo: dict[tuple[str, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, part: str, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        key = (part, tuple(int(v) for v in image_size))
        if key not in self._memo:
            self._memo[key] = split_arrays(self.spec, self.parts[part], image_size=key[1])
        return self._memo[key]


def _predictor(row: dict[str, Any]) -> Any:
    run_dir = Path(row["run_dir"])
    if row["mode"] == "sklearn":
        return load_head(run_dir / "head.skops")
    return load_model(run_dir / "model.keras")


def _predict(pred: Any, images: np.ndarray) -> np.ndarray:
    if hasattr(pred, "predict_proba_images"):
        return np.asarray(pred.predict_proba_images(images))
    return pred.predict(images)


def _accuracy(y: np.ndarray, p: np.ndarray, task: str, names: list[str]) -> float:
    return float(classification_metrics(y, p, task, names)["accuracy"])


def _tta_gain(row: dict[str, Any], spec: Any, arrays: _SplitArrays) -> dict[str, Any]:
    """Horizontal-flip TTA: average the predictions of the image and its mirror."""
    model = _predictor(row)
    x, y = arrays("val", model.image_size)
    p0 = model.predict(x)
    p1 = (p0 + model.predict(x[:, :, ::-1, :])) / 2.0
    a0, a1 = _accuracy(y, p0, spec.task, spec.class_names), _accuracy(y, p1, spec.task, spec.class_names)
    return {"model": row["label"], "val_acc": a0, "val_acc_tta": a1, "gain": a1 - a0}


def _ensemble_gain(rows: list[dict[str, Any]], spec: Any, arrays: _SplitArrays) -> dict[str, Any]:
    """Average of the top-k models' probabilities on validation, against the best single one."""
    probs, y = [], None
    for r in rows:
        model = _predictor(r)
        x, y = arrays("val", model.image_size)
        probs.append(model.predict(x))
    single = _accuracy(y, probs[0], spec.task, spec.class_names)
    mean = _accuracy(y, np.mean(probs, axis=0), spec.task, spec.class_names)
    return {"models": [r["label"] for r in rows], "val_acc_best_single": single, "val_acc_ensemble": mean,
            "gain": mean - single}


def _evaluate_best(row: dict[str, Any], spec: Any, arrays: _SplitArrays) -> dict[str, Any]:
    model = _predictor(row)  # a LoadedModel or a scikit-learn HeadPipeline: both know their size
    x, y = arrays("test", model.image_size)
    result = classification_metrics(y, _predict(model, x), spec.task, spec.class_names)
    result["model"] = row["label"]
    result["val_acc"] = row["val_acc"]
    return result


def _sklearn_entry(entry: dict[str, Any], recipe: Recipe, spec: Any, manifest: Path, run_dir: Path) -> dict[str, Any]:
    """A scikit-learn head on features of a (frozen) zoo model, scored like the Keras models."""
    run_dir.mkdir(parents=True, exist_ok=True)
    parts = splits.read_manifest(manifest, spec)
    size = tuple(recipe.data.image_size or get_cfg(recipe.model.name).input_shape[:2])
    opts = {k: v for k, v in recipe.model.options.items() if k != "trainable"}
    extractor = build(recipe.model.name, num_classes=max(2, spec.num_classes), input_shape=(*size, 3), **opts)
    t0 = time.perf_counter()
    feats = {p: extract_features(extractor, spec, index=parts[p], image_size=size, cache_dir=run_dir / "features")
             for p in ("train", "val")}
    head = fit_head(feats["train"].features, feats["train"].labels, kind=entry.get("head", "logreg"))
    elapsed = time.perf_counter() - t0
    val = evaluate_head(head, feats["val"].features, feats["val"].labels, task=spec.task,
                        class_names=spec.class_names)
    train_m = evaluate_head(head, feats["train"].features, feats["train"].labels, task=spec.task,
                            class_names=spec.class_names)
    save_head(run_dir / "head.skops", head, feats["train"].record, extractor=feats["train"].extractor,
              metrics={"val": val}, overwrite=True)
    metrics = {"model": recipe.model.name, "params": int(extractor.count_params()), "val": val,
               "train_accuracy": train_m["accuracy"], "train_time_s": round(elapsed, 2),
               "train_images_per_s": round(len(parts["train"]) / max(elapsed, 1e-9), 1)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics


def _write_outputs(board: Leaderboard) -> None:
    out = board.out_dir
    with (out / "leaderboard.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(board.rows[0]))
        w.writeheader()
        w.writerows(board.rows)
    summary = {"best": board.best, "test": board.test, "gains": board.gains, "leaderboard": board.rows}
    (out / "leaderboard.json").write_text(json.dumps(summary, indent=2, default=float))
    comparison_report(board, out / "report.html")
