"""Compare several models on one split: a leaderboard, TTA and ensembles as candidates, one honest test score.

A comparison recipe is a normal recipe (``data``, ``train`` defaults) plus a ``models`` list.
Each entry names a zoo model and a ``mode``: ``scratch`` (train from random init),
``feature_extraction`` (frozen backbone + new head), ``fine_tune`` (then unfreeze the top
with a lower LR) or ``sklearn`` (a scikit-learn head on cached backbone features). Every model
trains on the same split manifest; finished models are not retrained.

Then every single model, each with flip TTA (``tta: true``) and the mean of the top
``ensemble: k`` models (scikit-learn heads included; see :mod:`kerasclf.candidates`) are scored
on validation with one function; every gain is measured against the best single model. Only
the chosen configuration (the best on validation) is evaluated on the test split, once, and it
is saved as one model in ``<comparison>/chosen/``.

Example:
    >>> from kerasclf.experiment import compare          # doctest: +SKIP
    >>> board = compare("compare_digits")
    >>> board.best, board.chosen, board.test["accuracy"]
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

from kerasclf.analysis.comparison import ChosenEvidence, comparison_report
from kerasclf.analysis.metrics import classification_metrics
from kerasclf.candidates import (
    KINDS,
    Configuration,
    Member,
    candidate_configs,
    config_probs,
    load_configuration,
    predict_probs,
    save_configuration,
)
from kerasclf.data import splits
from kerasclf.data.pipeline import split_arrays
from kerasclf.errors import ConfigError, KerasclfError, RunExistsError
from kerasclf.features.extract import extract_features
from kerasclf.features.heads import evaluate_head, fit_head, save_head
from kerasclf.recipes import builtin_path
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe, apply_overrides, recipe_changes, tree_changes
from kerasclf.zoo import build, get_cfg

__all__ = ["compare", "Leaderboard", "load_comparison", "MODES", "RecipeChangedError"]

MODES = ("scratch", "feature_extraction", "fine_tune", "sklearn")
_ENTRY_KEYS = {"name", "label", "mode", "train", "data", "head", "layer"}


@dataclass
class Leaderboard:
    """The comparison's result.

    ``rows``: one per model, best first by validation; ``best``: the best single model;
    ``candidates``: every single model, TTA and ensemble scored on validation (best first), each
    with its ``gain`` over ``best``; ``chosen``: the first candidate, the only one evaluated on
    test (``test``) and saved as one model (``saved``: path, format, parity with the tested scores).
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    best: str
    test: dict[str, Any]
    chosen: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=dict)

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
            changes = tree_changes(stored, yaml.safe_load(as_run))
            if changes:
                raise RecipeChangedError(out, changes[0])
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.yaml").write_text(as_run)


def _check_entry(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to reuse a model's folder (metrics, checkpoints) that another recipe made."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    stored_path = run_dir / "recipe.yaml"
    if not stored_path.is_file():
        raise RecipeChangedError(run_dir, "it holds no recipe.yaml to compare with")
    changes = recipe_changes(yaml.safe_load(stored_path.read_text()) or {}, recipe.to_dict())
    if changes:
        raise RecipeChangedError(run_dir, changes[0])


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
    if manifest.is_file():  # a resumed comparison: the labels (review decisions included) as they were
        splits.read_manifest(manifest, spec, same_labels=True)
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

    board = _choose(out, rows, spec, manifest, tta=raw.get("tta", False) if tta is None else tta,
                    ensemble=int(raw.get("ensemble", 0) if ensemble is None else ensemble))
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
    """The images and labels of a split at an image size, read once and reused by every candidate
    and the final test evaluation."""

    def __init__(self, spec: Any, manifest: Path):
        self.spec, self.parts = spec, splits.read_manifest(manifest, spec)
        self._memo: dict[tuple[str, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, part: str, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        key = (part, tuple(int(v) for v in image_size))
        if key not in self._memo:
            self._memo[key] = split_arrays(self.spec, self.parts[part], image_size=key[1])
        return self._memo[key]


def _choose(out: Path, rows: list[dict[str, Any]], spec: Any, manifest: Path, *, tta: bool,
            ensemble: int) -> Leaderboard:
    """Score every model, TTA and ensemble on validation with one function; test the chosen one once.

    The single models' validation scores are recomputed here on the same images as every other
    candidate, so a gain is always a difference of two numbers measured the same way.
    """
    arrays = _SplitArrays(spec, manifest)
    if len(arrays.parts.get("val", [])) == 0:
        raise ConfigError(f"{out}: compare chooses by validation, and the split has no validation images; "
                          f"set data.split.val above 0")
    members = {r["label"]: Member(r["label"], Path(r["run_dir"])) for r in rows}
    task, names = spec.task, spec.class_names
    memo_val: dict[tuple[str, bool], np.ndarray] = {}

    def on_val(cfg: Configuration) -> tuple[np.ndarray, dict[str, Any]]:
        p = config_probs(cfg, members, lambda size: arrays("val", size)[0], task, memo_val)
        y = arrays("val", members[cfg.members[0]].image_size)[1]
        return p, classification_metrics(y, p, task, names)

    for r in rows:
        m = on_val(Configuration(r["label"], "single", [r["label"]]))[1]
        r["val_acc"], r["val_loss"] = float(m["accuracy"]), float(m["loss"])
    rows.sort(key=lambda r: (-r["val_acc"], r["val_loss"]))
    best = rows[0]
    candidates = []
    for cfg in candidate_configs([r["label"] for r in rows], tta=tta, ensemble=ensemble):
        m = on_val(cfg)[1]
        candidates.append({**cfg.to_dict(), "val_acc": float(m["accuracy"]), "val_loss": float(m["loss"]),
                           "gain": float(m["accuracy"]) - best["val_acc"]})
    # ties in accuracy go to the simpler configuration: TTA or an ensemble must earn its extra cost
    candidates.sort(key=lambda c: (-c["val_acc"], KINDS.index(c["kind"]) + c["tta"] * (c["kind"] == "ensemble"),
                                   c["val_loss"]))
    pick = candidates[0]
    cfg = Configuration(pick["configuration"], pick["kind"], pick["members"], tta=pick["tta"])

    # the one look at the test split: the chosen configuration, scored as it was on validation
    size = members[cfg.members[0]].image_size
    x_test, y_test = arrays("test", size)
    p_test = config_probs(cfg, members, lambda s: arrays("test", s)[0], task, {})
    test = classification_metrics(y_test, p_test, task, names)
    test.update({"model": cfg.label, "configuration": cfg.label, "kind": cfg.kind, "members": cfg.members,
                 "tta": cfg.tta, "val_acc": pick["val_acc"], "best_single": best["label"],
                 "best_single_val_acc": best["val_acc"], "gain": pick["gain"]})
    saved = save_configuration(cfg, members, out / "chosen", class_names=names, task=task)
    if saved["format"] != "members":  # the saved file reproduces the tested probabilities
        loaded = load_configuration(out / "chosen")
        again = predict_probs(loaded, arrays("test", loaded.image_size)[0], task)
        saved["test_max_abs_diff"] = float(np.max(np.abs(again - p_test)))
    board = Leaderboard(out_dir=out, rows=rows, best=best["label"], test=test, chosen=cfg.label,
                        candidates=candidates, saved=saved)
    keras_member = next((members[m] for m in cfg.members if not members[m].sklearn), None)
    evidence = ChosenEvidence(
        images=x_test if keras_member is None else arrays("test", keras_member.image_size)[0], labels=y_test,
        probs=p_test, val_labels=arrays("val", size)[1], val_probs=on_val(cfg)[0], task=task, class_names=names,
        explain_model=None if keras_member is None else keras_member.predictor(False).model,
        explain_note=_explain_note(cfg, keras_member),
        histories={r["label"]: Path(r["run_dir"]) / "history.csv" for r in rows
                   if (Path(r["run_dir"]) / "history.csv").is_file()})
    _write_outputs(board, evidence)
    return board


def _explain_note(cfg: Configuration, keras_member: Member | None) -> str:
    if keras_member is None:
        return (f"No attribution heatmaps: {cfg.label} is a scikit-learn head, and Grad-CAM needs the gradient "
                f"of a Keras model's output.")
    if cfg.one_member and not cfg.tta:
        return ""
    why = "the ensemble's members" if not cfg.one_member else "the model"
    return (f"Heatmaps are Grad-CAM of {keras_member.label} on the unflipped image (the best Keras model among "
            f"{why}), for the class the chosen configuration predicts.")


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


def _write_outputs(board: Leaderboard, evidence: ChosenEvidence) -> None:
    out = board.out_dir
    with (out / "leaderboard.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(board.rows[0]))
        w.writeheader()
        w.writerows(board.rows)
    summary = {"best": board.best, "chosen": board.chosen, "test": board.test, "saved": board.saved,
               "candidates": board.candidates, "leaderboard": board.rows}
    (out / "leaderboard.json").write_text(json.dumps(summary, indent=2, default=float))
    comparison_report(board, out / "report.html", evidence=evidence)
