"""Label audit and OOD flag, measured on real photos (issue 13). One command:

    python benchmarks/label_quality.py [--assets ../shared/assets] [--run RUN_DIR]

Label audit: 5% of the labels of ``cats_vs_dogs`` and ``flowers`` are flipped (seeded) in a label
list — the image files are only read — and the audit's code (:mod:`kerasclf.features.audit`:
cached features of ``--features`` (default: the audit's own, EfficientNet-Lite0), plain or
flip-averaged, k-fold logistic regression, cleanlab) must find the flipped files. Printed and saved:
precision/recall of the flagged set for each cleanlab filter, and the precision/recall curve along
the audit's ranking, for the issue's baseline (5-fold LR, C=1, plain features,
``find_label_issues`` defaults), plain features with C by out-of-fold log-loss, flip-averaged
pooled features, and flip-averaged pooled features plus the extractor's taps (the mean of an LR on
all and one on the pooled). The row the audit uses by default is marked.

OOD: a flowers run (``--run``, e.g. the flowers_ft run of benchmarks/accuracy.py; else trained here:
EfficientNet-Lite0 ImageNet frozen + head, 3 epochs) scores flowers test images against
cats-vs-dogs and CIFAR-10 images with each score of :mod:`kerasclf.analysis.ood`; the threshold is
fitted on the run's validation split.

Writes ``benchmarks/results/label_quality.json``. Needs the assets folder (README there).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from kerasclf.analysis.ood import KINDS, auroc, fit_detector, model_outputs, ood_model
from kerasclf.data.pipeline import split_arrays
from kerasclf.data.sources import from_folder
from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import read_manifest
from kerasclf.features.audit import FILTERS, audit_probabilities, out_of_fold_probabilities
from kerasclf.features.enriched import DEFAULT_FEATURES, default_taps, default_tta, enriched_features, known_taps
from kerasclf.io import load_model
from kerasclf.testing import MOBILENET_025_FILE, seed_keras_home
from kerasclf.train import load_recipe, train
from _provenance import add_allow_dirty, commit_or_exit  #  (benchmarks/: one rule for every recorded result)

ROOT = Path(__file__).resolve().parents[1]
RECALLS = (0.5, 0.6, 0.7, 0.8, 0.9)


def flip_labels(labels: np.ndarray, k: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``labels`` with ``share`` of them moved to another class at random; and which moved."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    moved = rng.choice(len(labels), int(round(share * len(labels))), replace=False)
    for i in moved:
        noisy[i] = rng.choice([c for c in range(k) if c != labels[i]])
    truth = np.zeros(len(labels), bool)
    truth[moved] = True
    return noisy, truth


def baseline_probabilities(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The issue's baseline: 5-fold plain LogisticRegression (C=1) on raw pooled features."""
    probs = np.zeros((len(y), int(y.max()) + 1))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        probs[te] = LogisticRegression(max_iter=1000).fit(x[tr], y[tr]).predict_proba(x[te])
    return probs


def pr_curve(scores: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision at each recall of RECALLS walking down the ranking (lowest score first)."""
    order = np.argsort(scores, kind="stable")
    hits = np.cumsum(truth[order])
    recall, precision = hits / truth.sum(), hits / np.arange(1, len(order) + 1)
    out = {}
    for r in RECALLS:
        i = int(np.argmax(recall >= r))
        out[f"{r:.1f}"] = {"precision": round(float(precision[i]), 3), "flagged": i + 1}
    return out


def flagged(is_issue: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(is_issue & truth))
    return {"flagged": int(is_issue.sum()), "precision": round(tp / max(1, int(is_issue.sum())), 3),
            "recall": round(tp / int(truth.sum()), 3)}


def label_audit(assets: Path, name: str, image_size: int, seed: int, features: str = DEFAULT_FEATURES) -> dict[str, Any]:
    spec = from_folder(assets / name)
    k = len(spec.class_names)
    default = (default_tta(features), bool(default_taps(features)))  # what `kerasclf audit` uses
    out: dict[str, Any] = {"images": len(spec), "classes": k, "image_size": image_size, "features": features}
    build_kwargs = {"alpha": 0.25} if features == "MobileNet" else {}
    for tta in (False, True):
        t0 = time.perf_counter()
        taps = known_taps(features) if tta else ()
        fs = enriched_features(spec, features, build_kwargs=build_kwargs, weights="imagenet", tta=tta,
                               taps=taps, image_size=(image_size, image_size), verbose=0)  # the default feature cache
        secs = time.perf_counter() - t0
        x, clean = np.asarray(fs.features), np.asarray(fs.labels, int)
        pooled = int(fs.info["pooled_columns"])
        noisy, truth = flip_labels(clean, k, 0.05, seed)
        variants = {}
        mark = {True: " [audit default]", False: ""}
        if not tta:
            probs = baseline_probabilities(x, noisy)
            variants["baseline (C=1, plain features)"] = (probs, {"C": 1.0})
            variants["plain features, tuned C" + mark[default == (False, False)]] = out_of_fold_probabilities(
                x, noisy, folds=5)
        else:  # the pooled features are the last columns of the tapped ones
            variants["flip-averaged pooled features, tuned C" + mark[default == (True, False)]] = \
                out_of_fold_probabilities(x[:, -pooled:], noisy, folds=5)
            if taps:
                variants["flip-averaged, pooled + taps, mean of two LRs" + mark[default == (True, True)]] = \
                    out_of_fold_probabilities(x, noisy, folds=5, last=pooled)
        for label, (probs, info) in variants.items():
            row: dict[str, Any] = {"features_s": round(secs, 1), "from_cache": fs.from_cache,
                                   "oof_accuracy_vs_given": round(float(np.mean(probs.argmax(1) == noisy)), 4),
                                   "C": info.get("C"), "flipped": int(truth.sum()), "filters": {}}
            for f in FILTERS:
                is_issue, scores, shares = audit_probabilities(noisy, probs, filter_by=f)
                row["filters"][f] = flagged(is_issue, truth)
            row["curve"] = pr_curve(scores, truth)
            row["estimated_error_share"] = [round(float(s), 3) for s in shares]
            out[label] = row
    return out


FLOWERS_RECIPE = {
    "name": "flowers_lite0_ood", "description": "flowers, EfficientNet-Lite0 (ImageNet, frozen) + head",
    "data": {"source": "folder", "image_size": [224, 224], "batch_size": 64, "augment": "light",
             "split": {"train": 0.7, "val": 0.1, "test": 0.2, "seed": 42}},
    "model": {"name": "efficientnet_lite0", "weights": "imagenet"},
    "train": {"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 0.001}},
}


def ood_benchmark(assets: Path, run: str | None, runs_dir: Path, n_ood: int = 500, seed: int = 0) -> dict[str, Any]:
    """Each OOD score of a flowers model: AUROC (flowers test vs cats-vs-dogs + CIFAR-10) and test FPR."""
    if run is None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        (runs_dir / "flowers_ood.yaml").write_text(yaml.safe_dump(FLOWERS_RECIPE))
        recipe = load_recipe(runs_dir / "flowers_ood.yaml", [f"data.path={assets / 'flowers'}", f"output_dir={runs_dir}"])
        run = str(train(recipe, overwrite=True, verbose=0).run_dir)
    run_dir = Path(run)
    loaded = load_model(run_dir / "model.keras")
    spec = load_recipe(run_dir / "recipe.yaml").data.load_spec()
    parts = read_manifest(run_dir / "split.csv", spec)
    size = loaded.image_size
    net = ood_model(loaded.model)
    outs = {}
    t0 = time.perf_counter()
    for name in ("train", "val", "test"):
        x, y = split_arrays(spec, parts[name], image_size=size)
        outs[name] = (model_outputs(loaded.model, x, net=net), np.asarray(y, int))
    rng = np.random.default_rng(seed)
    cvd = from_folder(assets / "cats_vs_dogs")
    x_cvd, _ = split_arrays(cvd, rng.choice(len(cvd), n_ood, replace=False), image_size=size)
    with np.load(assets / "cifar" / "cifar10_subset.npz", allow_pickle=False) as z:
        key = "x_test" if "x_test" in z else sorted(k for k in z.files if k.startswith("x"))[0]
        cifar = z[key][rng.choice(len(z[key]), n_ood, replace=False)]
    x_cifar, _ = split_arrays(DataSpec(class_names=["_"], labels=np.zeros(len(cifar), int), images=cifar,
                                       source="cifar10"), image_size=size)
    ood_outs = {"cats_vs_dogs": model_outputs(loaded.model, x_cvd, net=net),
                "cifar10": model_outputs(loaded.model, x_cifar, net=net)}
    res: dict[str, Any] = {"run": str(run_dir), "test_accuracy": round(float(np.mean(
        outs["test"][0]["probs"].argmax(1) == outs["test"][1])), 4),
        "sizes": {k: len(v[1]) for k, v in outs.items()} | {k: n_ood for k in ood_outs},
        "forward_s": round(time.perf_counter() - t0, 1), "scores": {}}
    for kind in KINDS:
        if kind == "energy" and "logits" not in outs["val"][0]:
            continue
        det = fit_detector(kind, outs["train"][0], outs["train"][1], outs["val"][0], target_fpr=0.03)
        s_test, f_test = det.flag(outs["test"][0])
        row = {"threshold": det.threshold, "val_fpr": det.val_fpr, "test_fpr": round(float(f_test.mean()), 4)}
        all_out = []
        for name, o in ood_outs.items():
            s, f = det.flag(o)
            row[f"auroc_{name}"] = round(auroc(s_test, s), 4)
            row[f"flagged_{name}"] = round(float(f.mean()), 4)
            all_out.append(s)
        row["auroc"] = round(auroc(s_test, np.concatenate(all_out)), 4)
        row["ood_tpr"] = round(float(np.mean(np.concatenate(all_out) > det.threshold)), 4)
        res["scores"][kind] = row
    return res


def print_tables(results: dict[str, Any]) -> None:
    for name, res in results["label_audit"].items():
        print(f"\n{name}: {res['images']} images, {res['classes']} classes, 5% flipped, {res['image_size']} px")
        for label, row in res.items():
            if not isinstance(row, dict):
                continue
            f = row["filters"]["prune_by_noise_rate"]
            print(f"  {label}: oof acc {row['oof_accuracy_vs_given']:.3f}, C={row['C']}; flagged set "
                  f"(prune_by_noise_rate): precision {f['precision']:.2f} recall {f['recall']:.2f} ({f['flagged']})")
            print("    recall    " + "".join(f"{r:>8}" for r in row["curve"]))
            print("    precision " + "".join(f"{v['precision']:>8.2f}" for v in row["curve"].values()))
            best = max(row["filters"].items(), key=lambda kv: kv[1]["precision"] if kv[1]["recall"] >= 0.6 else -1)
            print(f"    best filter at recall >= 0.6: {best[0]} {best[1]}")
    if "ood" in results:
        print("\nOOD (flowers model): in-distribution flowers test vs cats-vs-dogs + CIFAR-10")
        for kind, row in results["ood"]["scores"].items():
            print(f"  {kind:>12}: AUROC {row['auroc']:.3f}  test FPR {row['test_fpr']:.3f}  "
                  f"OOD flagged {row['ood_tpr']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", default=str(ROOT.parent / "shared" / "assets"))
    ap.add_argument("--image-size", type=int, default=224, help="decode size (the audit's default: 224, Lite0's)")
    ap.add_argument("--features", default=DEFAULT_FEATURES, help="the extractor (default: the audit's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", nargs="+", default=["cats_vs_dogs", "flowers"])
    ap.add_argument("--run", help="a flowers run folder for the OOD part (default: trained here)")
    ap.add_argument("--no-ood", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_quality.json"))
    add_allow_dirty(ap)
    args = ap.parse_args()
    commit = commit_or_exit(ap, args.allow_dirty)
    assets = Path(args.assets)
    seed_keras_home(Path(tempfile.mkdtemp(prefix="kerasclf_keras_home_")), [assets / "keras" / "models" / MOBILENET_025_FILE])
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, shared and loaded",
                               "label_audit": {}, "commit": commit}
    for name in args.datasets:
        results["label_audit"][name] = label_audit(assets, name, args.image_size, args.seed, args.features)
    if not args.no_ood:
        results["ood"] = ood_benchmark(assets, args.run, ROOT / "benchmarks" / ".runs")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    print_tables(results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
