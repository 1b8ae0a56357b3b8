"""Training and inference throughput: kerasclf's default fast path beside plain Keras.

Trustworthy timing: every timed training round lasts at least ``--min-seconds`` (steps chosen
from the warm-up's rate), a second plain-Keras arm (``baseline_twin``) is an A/A control whose
difference to the baseline is the noise a speed-up must beat (``train_check``), rounds alternate
who goes first, each arm's process CPU time per wall second is recorded (a loaded host shows as
≪ 1), and identical rates in every round of both arms are reported as a floor (void), not a
result. ``--ablate`` times each ``auto`` setting alone (bf16, steps per execution, the pipeline);
``--save-profile`` stores those ratios as the host profile ``speed: auto`` follows
(:func:`kerasclf.train.speed.host_profile`).

For each model — ``simple_cnn`` at 32×32 (the real CIFAR-10 subset of ``../shared/assets/cifar``
written to a temporary folder of PNGs), ``efficientnet_b0_head`` and ``backbone_head``
(MobileNet, ``--alpha``, ``weights=None``) at 224×224 (real cats-vs-dogs JPEGs when
``../shared/assets/cats_vs_dogs`` is there, else generated images) — it measures images/second

* **baseline** (what a Keras tutorial writes): ``keras.utils.image_dataset_from_directory`` on the
  folder, float32, ``compile(jit_compile=False)``, ``model.fit`` / ``model.predict`` at batch 32;
* **kerasclf** (the defaults): ``kerasclf.data.pipeline.make_dataset`` (parallel decode, memory
  cache, prefetch) on the same folder, the speed settings chosen by
  :func:`kerasclf.train.speed.apply_speed_settings` for this device (``"auto"``: mixed precision,
  XLA, steps per execution), and batched inference (``--infer-batch``) with the same settings —
  XLA on GPUs and on JAX; not with TensorFlow on a CPU, where it measured 3–10× slower.

Both run side by side in one process, round by round alternately, so load from other processes
hits both alike; the first call of each (compilation, cache fill) is warm-up and not timed; the
best round is reported. After training, both models (same steps, same batch) are scored on the
held-out CIFAR-10 test images: the accuracy-parity check. Peak memory (max RSS) of training
``simple_cnn`` and the MobileNet head with the default pipeline is measured in fresh
subprocesses (``--no-memory`` skips it).

With ``--backend jax`` (``KERAS_BACKEND=jax``; TensorFlow need not be installed) the input is
in-memory uint8 arrays served by a ``keras.utils.PyDataset`` (generated images unless Pillow and
the asset folders are there), the baseline is float32 ``fit`` on NumPy arrays (JAX always
compiles, so "no XLA" is not a meaningful baseline there), and the fast path is the chosen policy
(``mixed_bfloat16`` on a GPU of compute capability ≥ 8) with ``steps_per_execution``.

Example:
    $ python benchmarks/train.py --out benchmarks/results/train.json
    $ python benchmarks/train.py --quick                       # seconds-to-minutes smoke run
    $ KERAS_BACKEND=jax python benchmarks/train.py --backend jax --models efficientnet_b0_head \\
          --batch-size 256 --infer-batch 512 --out benchmarks/results/train_jax_gpu.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _provenance import add_allow_dirty, commit_or_exit  # benchmarks/: one rule for every recorded result

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("KERASCLF_ASSETS", ROOT.parent / "shared" / "assets"))
MODELS = ("simple_cnn", "efficientnet_b0_head", "mobilenet_head")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("tensorflow", "jax"), default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}")
    p.add_argument("--alpha", type=float, default=1.0, help="MobileNet width (1.0 or 0.25)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--infer-batch", type=int, default=64, help="kerasclf's batched-inference batch size")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per round (default: enough "
                   "for --min-seconds at the warm-up's rate)")
    p.add_argument("--min-seconds", type=float, default=4.0, help="each timed training round lasts at least this")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ablate", action="store_true", help="also time each auto setting alone (bf16, steps per "
                   "execution) on kerasclf's pipeline: what --save-profile records")
    p.add_argument("--save-profile", action="store_true", help="write the measured per-setting speed-ups as this "
                   "host's profile (kerasclf.train.speed.host_profile), which speed 'auto' then follows")
    p.add_argument("--n-images", type=int, default=None, help="images per model folder")
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", default=None, help="write the JSON results here")
    add_allow_dirty(p)
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: one model, RSS
    args = p.parse_args(argv)
    args.commit = commit_or_exit(p, args.allow_dirty) if args.out and not args.memory_probe else None
    return args


ARGS = parse_args()
os.environ["KERAS_BACKEND"] = ARGS.backend
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def have_tf() -> bool:
    return _have("tensorflow")


# ----------------------------------------------------------------------------- data


def cifar_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The real CIFAR-10 subset, or a generated stand-in of the same shapes."""
    path = ASSETS / "cifar" / "cifar10_subset.npz"
    if path.is_file():
        d = np.load(path)
        keys = set(d.files)
        xk = next(k for k in ("x_train", "train_images", "images") if k in keys)
        yk = next(k for k in ("y_train", "train_labels", "labels") if k in keys)
        xt = next((k for k in ("x_test", "test_images") if k in keys), None)
        yt = next((k for k in ("y_test", "test_labels") if k in keys), None)
        return (d[xk], d[yk].reshape(-1).astype("int32"),
                d[xt] if xt else d[xk][:500], d[yt].reshape(-1).astype("int32") if yt else d[yk][:500].reshape(-1))
    rng = np.random.RandomState(0)
    y = rng.randint(0, 10, 3000).astype("int32")
    x = (rng.uniform(0, 120, (3000, 32, 32, 3)) + 12 * y[:, None, None, None]).astype("uint8")
    return x[:2500], y[:2500], x[2500:], y[2500:]


def write_folder(x: np.ndarray, y: np.ndarray, folder: Path, ext: str = "png") -> Path:
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y)):
        d = folder / str(int(label))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.{ext}")
    return folder


def photo_folder(n: int, tmp: Path) -> tuple[Path, str]:
    """``n`` real cats-vs-dogs JPEGs linked into a temp folder (or generated JPEGs)."""
    src = ASSETS / "cats_vs_dogs"
    folder = tmp / "photos"
    if src.is_dir():
        rng = np.random.RandomState(0)
        for cls in ("cat", "dog"):
            files = sorted((src / cls).glob("*.jpg"))
            (folder / cls).mkdir(parents=True, exist_ok=True)
            for f in rng.permutation(files)[: n // 2]:
                os.symlink(f, folder / cls / f.name)
        return folder, f"cats_vs_dogs ({n} real JPEGs, 180x180 -> 224x224)"
    rng = np.random.RandomState(0)
    y = np.arange(n) % 2
    x = (rng.uniform(0, 200, (n, 180, 180, 3)) + 40 * y[:, None, None, None]).astype("uint8")
    write_folder(x, y, folder, "jpg")
    return folder, f"generated ({n} JPEGs, 180x180 -> 224x224)"


def load_folder_arrays(folder: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode a class folder into uint8 arrays with Pillow (the JAX path, no TensorFlow)."""
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    xs, ys = [], []
    for c, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()):
            xs.append(np.asarray(Image.open(f).convert("RGB").resize(size[::-1], Image.BILINEAR)))
            ys.append(c)
    return np.stack(xs), np.asarray(ys, "int32")


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled batches of in-memory uint8 images (the model casts on the device)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0, **kw: Any):
        super().__init__(**kw)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order = np.random.RandomState(seed).permutation(len(x))

        self.batches = max(1, len(x) // batch_size)

    def __len__(self) -> int:  # endless in practice: fit / predict are bounded by steps
        return self.batches * 10_000

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        i %= self.batches
        idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        return self.x[idx], self.y[idx]


# ----------------------------------------------------------------------------- models


def build(name: str, num_classes: int, size: int) -> keras.Model:
    from kerasclf.zoo import build as zoo_build

    if name == "simple_cnn":
        return zoo_build("simple_cnn", num_classes=num_classes, input_shape=(size, size, 3))
    if name == "efficientnet_b0_head":
        return zoo_build("efficientnet_b0_head", num_classes=num_classes, input_shape=(size, size, 3),
                         weights=None, task="multiclass")
    return zoo_build("backbone_head", num_classes=num_classes, backbone="MobileNet", alpha=ARGS.alpha,
                     weights=None, trainable=True, input_shape=(size, size, 3), task="multiclass")


def compile_model(model: keras.Model, *, jit: Any, spe: int) -> None:
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit, steps_per_execution=spe)


# ----------------------------------------------------------------------------- timing


def timed_fit(model: keras.Model, data: Any, steps: int, cpu: list[float] | None = None) -> float:
    """Wall seconds of ``steps`` training steps; appends the process CPU seconds / wall to ``cpu``."""
    t, c = time.perf_counter(), time.process_time()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    wall = time.perf_counter() - t
    if cpu is not None:
        cpu.append((time.process_time() - c) / wall)
    return wall


def verdict(rounds: dict[str, list[float]], changed: list[str]) -> dict[str, Any]:
    """Is the kerasclf / baseline difference real? Judged against the A/A spread (baseline vs its twin).

    ``floor``: every round of both arms at the same rate (within 0.2 %) is a measurement floor
    (a throttled or I/O-bound process), not two rates: the comparison is void.
    """
    base, twin, ours = (np.array(rounds[k]) for k in ("baseline", "baseline_twin", "kerasclf"))
    noise = float(abs(np.log(max(base) / max(twin))))  # what two identical arms differ by here, now
    noise = max(noise, float(np.std(np.log(base))), 0.02)
    ratio = float(max(ours) / max(base))
    both = np.concatenate([base, ours])
    floor = bool(both.max() / both.min() - 1 < 0.002)
    out = {"speedup": round(ratio, 3), "noise": round(float(np.exp(noise)) - 1, 3), "floor": floor,
           "changed_settings": changed}
    if floor:
        out["reading"] = "void: identical rates in every round of both arms (a floor, not a measurement)"
    elif abs(np.log(ratio)) <= 2 * noise:
        out["reading"] = "within the A/A noise: no measured difference"
    else:
        out["reading"] = (f"{'faster' if ratio > 1 else 'slower'} beyond twice the A/A noise; what differs: "
                          + (", ".join(changed) or "nothing (suspect the measurement)"))
    return out


def timed_predict(model: keras.Model, data: Any, steps: int) -> float:
    t = time.perf_counter()
    model.predict(data, steps=steps, verbose=0)
    return time.perf_counter() - t


def run_model(name: str, tmp: Path, quick: bool) -> dict[str, Any]:
    """Baseline and fast path for one model, interleaved; returns rates, settings, accuracy."""
    from types import SimpleNamespace

    from kerasclf.train.speed import apply_speed_settings

    tf_ok = have_tf() and ARGS.backend == "tensorflow"
    b = ARGS.batch_size
    if name == "simple_cnn":
        size, num_classes = 32, 10
        x, y, x_test, y_test = cifar_arrays()
        n = ARGS.n_images or (640 if quick else len(x))
        x, y = x[:n], y[:n]
        folder = write_folder(x, y, tmp / name) if tf_ok else None
        data_desc = f"CIFAR-10 subset ({n} PNGs, 32x32)"
        steps = ARGS.steps or (8 if quick else 48)
    else:
        size, num_classes = 224, 2
        n = ARGS.n_images or (96 if quick else 320)
        if tf_ok or ((ASSETS / "cats_vs_dogs").is_dir() and _have("PIL")):
            folder, data_desc = photo_folder(n, tmp) if not (tmp / "photos").exists() else (tmp / "photos", "")
            data_desc = data_desc or f"cats_vs_dogs ({n} real JPEGs, 180x180 -> 224x224)"
        else:
            folder, data_desc = None, f"generated in memory ({n} uint8 images, 224x224)"
        x_test = y_test = None
        steps = ARGS.steps or (2 if quick else 6)

    # --- inputs
    if tf_ok:
        from kerasclf.data import pipeline, sources

        base_ds = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=b, shuffle=True, seed=0, verbose=False)
        base_train = base_ds.repeat()
        spec = sources.from_folder(folder)
        fast_train = pipeline.make_dataset(spec, image_size=(size, size), batch_size=b, shuffle=True, seed=0,
                                           cache="memory", repeat=True, drop_remainder=True)
        # inference is one pass in real use: no cache, both decode every image every time
        fast_infer = pipeline.make_dataset(spec, image_size=(size, size), batch_size=ARGS.infer_batch,
                                           shuffle=False, cache=None, repeat=True)
        base_infer = base_train
        input_desc = "baseline: image_dataset_from_directory; kerasclf: make_dataset (cache=memory for training, none for inference)"
    else:
        if name == "simple_cnn":
            xa, ya = x, y
        elif folder is not None:
            xa, ya = load_folder_arrays(folder, (size, size))
        else:
            rng = np.random.RandomState(0)
            ya = (np.arange(n) % 2).astype("int32")
            xa = rng.randint(0, 255, (n, size, size, 3)).astype("uint8")
        xa = np.resize(xa, (max(len(xa), ARGS.infer_batch * 2, b * 8), *xa.shape[1:]))
        ya = np.resize(ya, (len(xa),))
        base_train = ArrayBatches(xa.astype("float32"), ya, b)
        fast_train = ArrayBatches(xa, ya, b)
        base_infer = ArrayBatches(xa.astype("float32"), ya, b)
        fast_infer = ArrayBatches(xa, ya, ARGS.infer_batch)
        input_desc = "in-memory arrays via keras.utils.PyDataset (baseline float32, kerasclf uint8)"

    # --- models (policy set before each build)
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    base = build(name, num_classes, size)
    compile_model(base, jit=(ARGS.backend == "jax") or False, spe=1)
    chosen = apply_speed_settings(SimpleNamespace(mixed_precision="auto", jit_compile="auto",
                                                  steps_per_execution="auto"), model=name)
    keras.utils.set_random_seed(0)
    fast = build(name, num_classes, size)
    spe = chosen["steps_per_execution"]
    compile_model(fast, jit=chosen["jit_compile"], spe=spe)
    keras.mixed_precision.set_global_policy("float32")

    # --- training: a warm-up of one full pass (compilation; fills kerasclf's cache), then
    # interleaved timed rounds. Both see the same number of steps, a multiple of spe.
    def whole(k: int) -> int:
        return max(spe, -(-k // spe) * spe)

    keras.utils.set_random_seed(0)
    twin = build(name, num_classes, size)  # the A/A control: a second plain-Keras arm
    compile_model(twin, jit=(ARGS.backend == "jax") or False, spe=1)
    arms = {"baseline": (base, base_train), "baseline_twin": (twin, base_train), "kerasclf": (fast, fast_train)}
    if ARGS.ablate:  # each auto setting alone, on kerasclf's pipeline
        for label, policy, spe_alone in (("pipeline_only", None, 1), ("bf16_only", "mixed_bfloat16", 1),
                                         ("spe8_only", None, 8)):
            keras.mixed_precision.set_global_policy(policy or "float32")
            keras.utils.set_random_seed(0)
            m = build(name, num_classes, size)
            compile_model(m, jit=chosen["jit_compile"], spe=spe_alone)
            arms[label] = (m, fast_train)
        keras.mixed_precision.set_global_policy("float32")
    warm = whole(-(-n // b))
    warm_rate = {k: warm * b / timed_fit(m, d, warm) for k, (m, d) in arms.items()}
    if not ARGS.steps:  # enough steps that the slowest arm's round lasts --min-seconds
        steps = max(steps, int(ARGS.min_seconds * min(warm_rate.values()) / b))
    steps = whole(steps)
    train: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(ARGS.rounds):
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]  # alternate who goes first
        for k in order:
            m, d = arms[k]
            train[k].append(steps * b / timed_fit(m, d, steps, cpu[k]))
    changed = ["pipeline (make_dataset, cache=memory)"] + [
        f"{k}={v}" for k, v in (("mixed_precision", chosen["mixed_precision"]), ("jit_compile", chosen["jit_compile"]),
                                ("steps_per_execution", spe)) if v not in (None, False, 1)]
    train_verdict = verdict(train, changed)
    if train_verdict["floor"]:
        print(f"WARNING {name}: {train_verdict['reading']}", flush=True)
    ablation = None
    if ARGS.ablate:
        alone = max(train["pipeline_only"])
        ablation = {"mixed_bfloat16": round(max(train["bf16_only"]) / alone, 3),
                    "steps_per_execution_8": round(max(train["spe8_only"]) / alone, 3),
                    "pipeline": round(alone / max(train["baseline"]), 3)}

    acc = None
    if x_test is not None:
        acc = {"baseline": float(base.evaluate(x_test.astype("float32"), y_test, batch_size=256, verbose=0)[1]),
               "kerasclf": float(fast.evaluate(x_test.astype("float32"), y_test, batch_size=256, verbose=0)[1]),
               "test_images": int(len(y_test)),
               "train_steps_each": int(warm + ARGS.rounds * steps)}
    for k in list(arms):
        if k not in ("baseline", "kerasclf"):
            del arms[k]  # free the extra arms before inference

    # --- inference: baseline batch b, no XLA; kerasclf batch infer_batch, the chosen jit setting
    compile_model(fast, jit=chosen["jit_compile"], spe=1)
    infer_images = max(n, 8 * ARGS.infer_batch)  # enough batches for decoding to overlap compute
    infer_steps_base = -(-infer_images // b)
    fast_infer_steps = max(2, infer_images // ARGS.infer_batch)
    timed_predict(base, base_infer, 2)
    timed_predict(fast, fast_infer, 2)
    infer = {"baseline": [], "kerasclf": []}
    for _ in range(ARGS.rounds):
        infer["baseline"].append(infer_steps_base * b / timed_predict(base, base_infer, infer_steps_base))
        infer["kerasclf"].append(fast_infer_steps * ARGS.infer_batch / timed_predict(fast, fast_infer, fast_infer_steps))

    best = {k: {s: max(v) for s, v in d.items() if s in ("baseline", "kerasclf")}
            for k, d in (("train", train), ("infer", infer))}
    if ARGS.ablate and chosen["mixed_precision"] is None:  # inference in bf16 alone, same batch as kerasclf's
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        keras.utils.set_random_seed(0)
        m16 = build(name, num_classes, size)
        compile_model(m16, jit=chosen["jit_compile"], spe=1)
        keras.mixed_precision.set_global_policy("float32")
        timed_predict(m16, fast_infer, 2)
        r16 = max(fast_infer_steps * ARGS.infer_batch / timed_predict(m16, fast_infer, fast_infer_steps)
                  for _ in range(ARGS.rounds))
        ablation["mixed_bfloat16_inference"] = round(r16 / best["infer"]["kerasclf"], 3)
    return {
        "model": name if name != "mobilenet_head" else f"backbone_head(MobileNet, alpha={ARGS.alpha})",
        "image_size": size, "data": data_desc, "input": input_desc, "batch_size": b,
        "infer_batch": ARGS.infer_batch, "train_steps_per_round": steps, "warmup_steps": warm,
        "settings": chosen, "inference_jit": chosen["jit_compile"],
        "train_img_s": {k: round(v, 1) for k, v in best["train"].items()},
        "infer_img_s": {k: round(v, 1) for k, v in best["infer"].items()},
        "train_speedup": round(best["train"]["kerasclf"] / best["train"]["baseline"], 2),
        "train_check": train_verdict, "train_cpu_per_wall": {k: round(float(np.median(v)), 2) for k, v in cpu.items()},
        "ablation": ablation,
        "infer_speedup": round(best["infer"]["kerasclf"] / best["infer"]["baseline"], 2),
        "rounds": {"train": {k: [round(a, 1) for a in v] for k, v in train.items()},
                   "infer": [[round(a, 1) for a in v] for v in infer.values()]},
        "accuracy": acc,
    }


# ----------------------------------------------------------------------------- memory


def _vm_hwm() -> float:
    """Peak resident memory of this process in MiB (VmHWM; unlike ru_maxrss it is not inherited
    from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(name: str) -> None:
    """Train ``name`` with the default pipeline and settings for a few steps; print max RSS (MiB)."""
    from types import SimpleNamespace

    from kerasclf.train.speed import apply_speed_settings

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        size = 32 if name == "simple_cnn" else 224
        if name == "simple_cnn":
            x, y, _, _ = cifar_arrays()
            folder = write_folder(x, y, tmp / name)
            steps = 40
        else:
            folder, _ = photo_folder(ARGS.n_images or 320, tmp)
            steps = 6
        rss0 = _vm_hwm()
        chosen = apply_speed_settings(SimpleNamespace(mixed_precision="auto", jit_compile="auto",
                                                      steps_per_execution="auto"), model=name)
        model = build(name, 10 if name == "simple_cnn" else 2, size)
        compile_model(model, jit=chosen["jit_compile"], spe=chosen["steps_per_execution"])
        if have_tf() and ARGS.backend == "tensorflow":
            from kerasclf.data import pipeline, sources

            spec = sources.from_folder(folder)
            data = pipeline.make_dataset(spec, image_size=(size, size), batch_size=ARGS.batch_size, shuffle=True,
                                         seed=0, cache="memory", repeat=True, drop_remainder=True)
        else:
            xa, ya = load_folder_arrays(folder, (size, size))
            data = ArrayBatches(xa, ya, ARGS.batch_size)
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        rss = _vm_hwm()
        print(json.dumps({"model": name, "peak_rss_mib": round(rss, 1), "rss_after_import_and_data_mib": round(rss0, 1),
                          "images": len(list(folder.rglob("*.*"))), "batch_size": ARGS.batch_size,
                          "steps": steps, "settings": chosen}))


def measure_memory() -> list[dict[str, Any]]:
    out = []
    for name in ("simple_cnn", "mobilenet_head"):
        cmd = [sys.executable, __file__, "--backend", ARGS.backend, "--memory-probe", name, "--alpha", str(ARGS.alpha),
               "--batch-size", str(ARGS.batch_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        out.append(json.loads(lines[-1]) if lines else {"model": name, "error": proc.stderr[-500:]})
    return out


# ----------------------------------------------------------------------------- main


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'model':34s} {'size':>4s} | {'train base':>10s} {'train ours':>10s} {'x':>5s} | "
            f"{'infer base':>10s} {'infer ours':>10s} {'x':>5s} | {'acc base':>8s} {'acc ours':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        a = r.get("accuracy") or {}
        lines.append(f"{r['model']:34s} {r['image_size']:4d} | {r['train_img_s']['baseline']:10.1f} "
                     f"{r['train_img_s']['kerasclf']:10.1f} {r['train_speedup']:5.2f} | "
                     f"{r['infer_img_s']['baseline']:10.1f} {r['infer_img_s']['kerasclf']:10.1f} "
                     f"{r['infer_speedup']:5.2f} | {a.get('baseline', float('nan')):8.3f} "
                     f"{a.get('kerasclf', float('nan')):8.3f}")
    return "\n".join(lines)


def save_profile(rows: list[dict[str, Any]]) -> None:
    """This host's measured speed-up of each setting alone (``--ablate``) -> its speed profile."""
    from kerasclf.train.speed import save_host_profile

    measured: dict[str, dict[str, float]] = {}
    for r in rows:
        a = r.get("ablation")
        if not a or r["train_check"]["floor"]:
            continue
        kind = "conv" if r["model"] == "simple_cnn" else "depthwise"
        # bf16 must win both training and inference to count as faster (the slower of the two)
        measured.setdefault("mixed_bfloat16", {})[kind] = min(a["mixed_bfloat16"],
                                                              a.get("mixed_bfloat16_inference", a["mixed_bfloat16"]))
        old = measured.setdefault("steps_per_execution", {}).get("8", a["steps_per_execution_8"])
        measured["steps_per_execution"]["8"] = min(old, a["steps_per_execution_8"])
    if not measured:
        print("no profile written: run with --ablate (and no void measurement)")
        return
    print(f"wrote this host's speed profile {save_host_profile(measured)}: {measured}")


def main() -> None:
    if ARGS.memory_probe:
        memory_probe(ARGS.memory_probe)
        return
    names = [m.strip() for m in ARGS.models.split(",") if m.strip()]
    unknown = set(names) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown --models {sorted(unknown)}; choose from {MODELS}")
    from kerasclf.train.speed import device_info

    t0, load0 = time.time(), list(os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="kerasclf_bench_") as d:
        for name in names:
            print(f"[{time.time() - t0:6.0f}s] {name} ...", flush=True)
            rows.append(run_model(name, Path(d), ARGS.quick))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    memory = [] if ARGS.no_memory else measure_memory()
    print()
    print(table(rows))
    for r in rows:
        print(f"{r['model']}: training {r['train_check']['reading']} (x{r['train_check']['speedup']}, "
              f"A/A noise {r['train_check']['noise']:.1%}); ablation {r['ablation']}")
    if ARGS.save_profile:
        save_profile(rows)
    for m in memory:
        print(f"peak RSS training {m['model']}: {m.get('peak_rss_mib', '?')} MiB")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable) if False else "python", *sys.argv]),
        "backend": keras.backend.backend(), "keras": keras.__version__,
        "device": device_info(), "cpus": os.cpu_count(), "machine": platform.platform(),
        "load_avg_start_end": [load0, list(os.getloadavg())], "seconds": round(time.time() - t0, 1),
        "results": rows, "peak_memory": memory, "commit": ARGS.commit,
    }
    if "tensorflow" in sys.modules:
        result["tensorflow"] = sys.modules["tensorflow"].__version__
    if ARGS.out:
        Path(ARGS.out).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.out).write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {ARGS.out}")


if __name__ == "__main__":
    main()
