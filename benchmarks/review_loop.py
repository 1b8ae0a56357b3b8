"""The data-centric loop, measured (issue 27): noisy labels -> audit -> review -> retrain. One command:

    python benchmarks/review_loop.py [--assets ../shared/assets] [--seeds 0 1 2] [--allow-dirty]

For ``cats_vs_dogs`` and ``flowers``: one seeded stratified 70/10/20 split of the folder labels;
5% of the *training* labels are flipped to another class (seeded) in a decisions file (relabel
rows written by :func:`kerasclf.data.decisions.append_decisions`) — the image files are only
read. Then, as a user would:

1. audit the noisy data: :func:`kerasclf.features.audit.audit` on the whole folder with the
   noise applied, with its defaults (EfficientNet-Lite0 features, 5-fold logistic regression,
   cleanlab ``prune_by_noise_rate``);
2. review every flagged photo: :func:`kerasclf.review.open_review` on the audit folder, and each
   decision posted through :meth:`kerasclf.review.server.ReviewServer.decide` — the code behind
   the page's keys — with the folder label as the oracle (relabel to it when the given label
   differs, keep otherwise);
3. retrain with the decisions: ``data.decisions`` = the noise file, then the review's.

The model retrained is a scikit-learn logistic-regression head (:func:`kerasclf.features.commands.run_head`,
what ``kerasclf head`` fits: C by validation log-loss, refitted on train + val) on the cached
EfficientNet-Lite0 features, once per arm: noisy labels, reviewed labels, clean labels; all three
on the same split and scored on the same (clean) test images. The features do not depend on the
labels, so they are extracted once (the feature cache) and every arm costs seconds.

Reported per dataset (the mean over ``--seeds`` and each seed): test accuracy of the three arms,
the share of the noisy-clean gap the review recovers, the photos shown (the audit's flagged set)
against the flipped labels, and how many flips the review caught. ``--budgets`` (default 1 2 3):
the same for a person who reviews only the page's first ``budget`` x (flipped labels) photos, in
the page's order (the audit's rank) — what a reviewer with a fixed amount of time gets. Writes
``benchmarks/results/review_loop.json`` (with the git commit; a tree with uncommitted changes is
refused unless ``--allow-dirty``) and the table between the ``review_loop`` markers of
``docs/benchmarks.md``.
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

from _provenance import add_allow_dirty, commit_or_exit, write_block  # benchmarks/: one rule for every recorded result
from kerasclf.data.decisions import append_decisions, apply_decisions
from kerasclf.data.sources import from_folder
from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import sample_indices, split_indices
from kerasclf.features.audit import audit
from kerasclf.features.commands import run_head
from kerasclf.features.enriched import DEFAULT_FEATURES
from kerasclf.features.extract import DEFAULT_CACHE
from kerasclf.review import open_review

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "review_loop.json"
DOCS = ROOT / "docs" / "benchmarks.md"
GOALS = {"recovered": 0.80, "shown_per_flip": 3.0}


def flip_training_labels(spec: DataSpec, train: np.ndarray, share: float, seed: int, path: Path) -> dict[str, str]:
    """Write a decisions file that moves ``share`` of the training images to another class (seeded);
    returns ``{path: true class}`` of the flipped images."""
    rng = np.random.default_rng(seed)
    moved = np.sort(rng.choice(train, int(round(share * len(train))), replace=False))
    k = len(spec.class_names)
    rows, truth = [], {}
    for i in moved:
        true = int(spec.labels[i])
        wrong = int(rng.choice([c for c in range(k) if c != true]))
        rows.append({"path": spec.paths[i], "action": "relabel", "new_label": spec.class_names[wrong],
                     "reason": f"benchmark noise (seed {seed})"})
        truth[spec.paths[i]] = spec.class_names[true]
    append_decisions(path, rows)
    return truth


def review_with_oracle(audit_dir: Path, review_dir: Path, clean: dict[str, str],
                       limit: int | None = None) -> dict[str, int]:
    """Decide the photos of the audit's review page in the page's order (the audit's rank: the most
    likely label error first), all of them or the first ``limit``, the folder label being the oracle,
    through the page's server code; returns the counts."""
    review = open_review([audit_dir], out=review_dir)
    server = review.server()
    items = review.found.items[:limit]
    counts = {"shown": len(items), "relabelled": 0, "kept": 0}
    try:
        for item in items:
            true = clean[item.path]
            action = "relabel" if true != item.given else "keep"
            server.decide({"path": item.path, "action": action, "new_label": true if action == "relabel" else "",
                           "reason": ", ".join(item.reasons)})
            counts["relabelled" if action == "relabel" else "kept"] += 1
    finally:
        server.close()
    return counts


def head_accuracy(spec: DataSpec, parts: dict[str, np.ndarray], out: Path) -> dict[str, Any]:
    """Test accuracy of ``kerasclf head``'s logistic regression fitted on ``spec``'s labels (the audit's
    default features, C by validation log-loss, refit on train + val)."""
    res = run_head(spec, features_model=DEFAULT_FEATURES, out_dir=out, tta="auto", taps="auto", C="auto",
                   parts=parts, cache_dir=DEFAULT_CACHE, overwrite=True, verbose=0)
    return {"accuracy": round(float(res["metrics"]["accuracy"]), 4), "C": res["C"], "n_test": res["n_test"]}


def one_seed(spec: DataSpec, parts: dict[str, np.ndarray], seed: int, share: float, work: Path,
             budgets: tuple[float, ...] = ()) -> dict[str, Any]:
    """Noisy -> audit -> review -> retrain on one flip seed: the whole flagged set reviewed, and,
    per budget ``b`` in ``budgets``, only the page's first ``b`` x (flipped labels) photos."""
    work.mkdir(parents=True, exist_ok=True)
    clean = {p: spec.class_names[int(y)] for p, y in zip(spec.paths, spec.labels)}
    noise = work / "noise.csv"
    noise.unlink(missing_ok=True)
    flipped = flip_training_labels(spec, parts["train"], share, seed, noise)
    noisy = apply_decisions(spec, noise)
    t0 = time.perf_counter()
    result = audit(noisy, out_dir=work / "audit", overwrite=True, gallery=0, verbose=0)
    audit_s = time.perf_counter() - t0
    review_dir = work / "review"
    (review_dir / "decisions.csv").unlink(missing_ok=True)
    t0 = time.perf_counter()
    counts = review_with_oracle(work / "audit", review_dir, clean)
    review_s = time.perf_counter() - t0
    reviewed = apply_decisions(spec, [noise, review_dir / "decisions.csv"])
    for arm in (noisy, reviewed):  # the noise and the review touch training labels only
        assert np.array_equal(arm.labels[parts["test"]], spec.labels[parts["test"]])
    caught = sum(reviewed.class_names[reviewed.labels[reviewed.paths.index(p)]] == t for p, t in flipped.items())
    arms = {name: head_accuracy(s, parts, work / f"head_{name}")
            for name, s in (("noisy", noisy), ("reviewed", reviewed), ("clean", spec))}
    cuts = []
    for b in budgets:
        cut_dir = work / f"review_first_{b:g}x"
        (cut_dir / "decisions.csv").unlink(missing_ok=True)
        cut = review_with_oracle(work / "audit", cut_dir, clean, limit=int(round(b * len(flipped))))
        labels = apply_decisions(spec, [noise, cut_dir / "decisions.csv"])
        cuts.append({"budget": b, "shown": cut["shown"], "flips_caught": cut["relabelled"],
                     "reviewed_accuracy": head_accuracy(labels, parts, work / f"head_first_{b:g}x")["accuracy"]})
    return {"cuts": cuts, "seed": seed, "flipped": len(flipped), "flagged": len(result.issues), **counts, "flips_caught": caught,
            "flips_left": len(flipped) - caught, "audit_oof_accuracy": result.info["accuracy"],
            "audit_s": round(audit_s, 1), "review_s": round(review_s, 1),
            **{f"{k}_accuracy": v["accuracy"] for k, v in arms.items()}, "C": {k: v["C"] for k, v in arms.items()},
            "n_test": arms["clean"]["n_test"]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds; the recovered share is that of the mean accuracies. ``cuts``: the same for
    each budgeted review (the page's first photos only); the goals count as met when the whole
    flagged set, or some budget of at most 3x, recovers >= 80% of the gap."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in
            ("noisy_accuracy", "reviewed_accuracy", "clean_accuracy", "flipped", "shown", "flips_caught")}
    gap = mean["clean_accuracy"] - mean["noisy_accuracy"]
    mean["recovered"] = (mean["reviewed_accuracy"] - mean["noisy_accuracy"]) / gap if gap > 0 else float("nan")
    mean["shown_per_flip"] = mean["shown"] / mean["flipped"]
    mean["goals_met"] = {"recovered": bool(mean["recovered"] >= GOALS["recovered"]),
                         "shown_per_flip": bool(mean["shown_per_flip"] <= GOALS["shown_per_flip"])}
    mean["cuts"] = []
    for j, cut in enumerate(rows[0].get("cuts", [])):
        c = {k: float(np.mean([r["cuts"][j][k] for r in rows])) for k in ("shown", "flips_caught", "reviewed_accuracy")}
        c["budget"] = cut["budget"]
        c["recovered"] = (c["reviewed_accuracy"] - mean["noisy_accuracy"]) / gap if gap > 0 else float("nan")
        c["shown_per_flip"] = c["shown"] / mean["flipped"]
        mean["cuts"].append(c)
    mean["goals_met_by"] = next((f"first {c['budget']:g}x" for c in mean["cuts"]
                                 if c["shown_per_flip"] <= GOALS["shown_per_flip"]
                                 and c["recovered"] >= GOALS["recovered"]),
                                "all flagged" if all(mean["goals_met"].values()) else None)
    return mean


def render(results: dict[str, Any]) -> str:
    """The markdown table (and its command) of ``results``."""
    lines = [f"`{results['command']}` (commit {results['commit']}, {results['machine']}; "
             f"{results['share']:.0%} of the training labels flipped, seeds {', '.join(map(str, results['seeds']))}; "
             f"results: `benchmarks/results/review_loop.json`).", "",
             "| data | test accuracy: noisy / reviewed / clean | gap recovered (goal >= 80%) | photos shown / "
             "flipped labels (goal <= 3x) | flips caught by the review |", "|---|---|---|---|---|"]
    for name, res in results["datasets"].items():
        m = res["mean"]
        ok = {k: "met" if v else "missed" for k, v in m["goals_met"].items()}
        lines.append(f"| {name} ({res['images']:,} images, {res['classes']} classes) | {m['noisy_accuracy']:.4f} / "
                     f"{m['reviewed_accuracy']:.4f} / {m['clean_accuracy']:.4f} | {m['recovered']:.0%} ({ok['recovered']}) | "
                     f"{m['shown']:.0f} / {m['flipped']:.0f} = {m['shown_per_flip']:.2f}x ({ok['shown_per_flip']}) | "
                     f"{m['flips_caught']:.0f} of {m['flipped']:.0f} |")
    if any(res["mean"].get("cuts") for res in results["datasets"].values()):
        lines += ["", "A person who stops early: only the page's first photos (its order is the audit's rank, the "
                      "most likely label error first), as many as the budget times the flipped labels; the rest "
                      "of the flagged set is left as it is (means over the seeds):", "",
                  "| data | photos reviewed | flips caught | test accuracy | gap recovered | both goals |",
                  "|---|---|---|---|---|---|"]
        for name, res in results["datasets"].items():
            m = res["mean"]
            rows = [(f"first {c['budget']:g}x", c) for c in m.get("cuts", [])]
            rows.append(("all flagged", {**m, "flips_caught": m["flips_caught"]}))
            for label, c in rows:
                met = (c["shown_per_flip"] <= GOALS["shown_per_flip"] and c["recovered"] >= GOALS["recovered"])
                lines.append(f"| {name} | {label}: {c['shown']:.0f} ({c['shown_per_flip']:.2f}x) | "
                             f"{c['flips_caught']:.0f} of {m['flipped']:.0f} | {c['reviewed_accuracy']:.4f} | "
                             f"{c['recovered']:.0%} | {'met' if met else 'missed'} |")
    lines += ["", "Per seed (noisy / reviewed / clean test accuracy; photos shown; flips caught):", ""]
    for name, res in results["datasets"].items():
        per = "; ".join(f"seed {r['seed']}: {r['noisy_accuracy']:.4f} / {r['reviewed_accuracy']:.4f} / "
                        f"{r['clean_accuracy']:.4f}, {r['shown']} shown, {r['flips_caught']}/{r['flipped']} caught"
                        for r in res["seeds"])
        lines.append(f"- {name}: {per}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", default=str(ROOT.parent / "shared" / "assets"))
    ap.add_argument("--datasets", nargs="+", default=["cats_vs_dogs", "flowers"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="flip seeds")
    ap.add_argument("--share", type=float, default=0.05, help="share of the training labels flipped")
    ap.add_argument("--budgets", nargs="*", type=float, default=[1.0, 2.0, 3.0],
                    help="also review only the page's first BUDGET x (flipped labels) photos")
    ap.add_argument("--max-images", type=int, help="a seeded stratified sample of each folder (a trial run; "
                                                   "not recorded)")
    ap.add_argument("--work", help="where audits, reviews and heads go (default: a temporary folder)")
    add_allow_dirty(ap)
    args = ap.parse_args(argv)
    commit = commit_or_exit(ap, args.allow_dirty or bool(args.max_images))
    assets = Path(args.assets)
    work = Path(args.work or tempfile.mkdtemp(prefix="kerasclf_review_loop_"))
    command = ("python benchmarks/review_loop.py"
               + ("" if args.seeds == [0, 1, 2] else " --seeds " + " ".join(map(str, args.seeds)))
               + ("" if args.budgets == [1.0, 2.0, 3.0] else " --budgets " + " ".join(f"{b:g}" for b in args.budgets)))
    results: dict[str, Any] = {"command": command, "commit": commit, "seeds": args.seeds, "share": args.share,
                               "machine": f"{platform.machine()}, 2 shared cores", "features": DEFAULT_FEATURES,
                               "datasets": {}}
    t_all = time.perf_counter()
    for name in args.datasets:
        spec = from_folder(assets / name)
        if args.max_images:
            spec = spec.subset(sample_indices(spec, args.max_images, seed=0))
        parts = split_indices(spec, (0.7, 0.1, 0.2), seed=42)
        rows = []
        for seed in args.seeds:
            rows.append(one_seed(spec, parts, seed, args.share, work / name / f"seed{seed}", tuple(args.budgets)))
            r = rows[-1]
            print(f"{name} seed {seed}: {r['flipped']} flipped, {r['shown']} shown, {r['flips_caught']} caught; "
                  f"test accuracy noisy {r['noisy_accuracy']:.4f} reviewed {r['reviewed_accuracy']:.4f} "
                  f"clean {r['clean_accuracy']:.4f} (audit {r['audit_s']:.0f} s)", flush=True)
        results["datasets"][name] = {"images": len(spec), "classes": len(spec.class_names),
                                     "split": {k: int(len(v)) for k, v in parts.items()},
                                     "seeds": rows, "mean": summarise(rows)}
    results["seconds"] = round(time.perf_counter() - t_all, 1)
    table = render(results)
    print("\n" + table)
    if args.max_images or args.datasets != ["cats_vs_dogs", "flowers"]:
        print("(a trial run: not recorded)")
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float))
    write_block(DOCS, "review_loop", table)
    print(f"wrote {RESULTS} and the review_loop block of {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
