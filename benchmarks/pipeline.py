"""Input-pipeline throughput: kerasclf's ``make_dataset`` beside a plain tutorial-style baseline.

Measures images/second for

* CIFAR-sized arrays (32×32, the real CIFAR-10 subset in ``../shared/assets/cifar``) — baseline
  ``tf.data.Dataset.from_tensor_slices((x, y)).batch(B).map(aug)`` (plain map: no parallelism, no
  cache, no prefetch), and
* the real JPEG photos of ``../shared/assets/cats_vs_dogs`` resized to 224×224 (a subset,
  ``--n-images``) — baseline ``keras.utils.image_dataset_from_directory(...).map(aug)``;

each with (a) no augmentation, (b) a Keras-layer policy and (c) an albumentations policy. The
baseline's augmentation is what a tutorial writes, independent of kerasclf: a ``keras.Sequential``
of ``RandomFlip`` / ``RandomTranslation(0.1)`` / ``RandomRotation(15°)``, or the seed's
albumentations ``Compose`` through ``tf.numpy_function`` in a plain ``map``. Ours is
``make_dataset(..., shuffle=True, seed=0, cache="memory", augment=policy)`` with our named policy
(``cifar``: one fused ``RandomAffine``; ``seed_effnet``: ``ElasticTransform(approximate=True)``)
and, in the ``stock`` / ``literal`` rows, with exactly the baseline's transforms, so the gain from
the pipeline alone and from the policy implementation can be told apart. Both pipelines run side by side in one process, epoch by epoch alternately,
so load from other processes hits both alike. Epoch 1 (which includes building the dataset:
listing, header checks, first decode) is reported separately from the steady state (mean of the
later epochs, where our cache serves decoded images). Steady state is the median of epochs 2..n.

It also measures the training-step rate of ``kerasclf.zoo.simple_cnn`` at 32×32 fed from memory
and fed by our pipeline, to tell whether training waits for data (``--data ""`` runs only that part).

Example:
    $ python benchmarks/pipeline.py --out benchmarks/results/pipeline.json
    $ python benchmarks/pipeline.py --quick          # a smoke run (seconds)
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from _provenance import add_allow_dirty, commit_or_exit  # noqa: E402  (one rule for every recorded result)

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("KERASCLF_ASSETS") or ROOT.parent / "shared" / "assets")
#: the seed's EfficientNet albumentations policy written literally (ElasticTransform exact)
SEED_EFFNET_LITERAL = [
    {"name": "albumentations.HorizontalFlip", "p": 0.5},
    {"name": "albumentations.Affine", "translate_percent": (-0.1, 0.1), "scale": (0.9, 1.1), "rotate": (-15, 15),
     "p": 0.5},
    {"name": "albumentations.GridDistortion", "p": 0.2},
    {"name": "albumentations.ElasticTransform", "p": 0.2},
]
#: row label -> (our policy, the baseline's augmentation kind)
POLICIES: dict[str, tuple[Any, str | None]] = {
    "none": (None, None),
    "keras": ("cifar", "keras"),                      # ours: fused RandomAffine
    "keras, stock layers": ("cifar_layers", "keras"),  # ours: the same three stock layers as the baseline
    "albumentations": ("seed_effnet", "albumentations"),          # ours: ElasticTransform approximate
    "albumentations, literal": (SEED_EFFNET_LITERAL, "albumentations"),  # ours: the same Compose as the baseline
}


def _tutorial_aug(kind: str | None) -> Callable[[Any, Any], Any] | None:
    """The augmentation a tutorial writes, independent of kerasclf (for the baseline)."""
    import tensorflow as tf

    if kind is None:
        return None
    if kind == "keras":
        import keras

        seq = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=0),
                                keras.layers.RandomTranslation(0.1, 0.1, seed=1),
                                keras.layers.RandomRotation(15 / 360, seed=2)])
        return lambda x, y: (seq(x, training=True), y)
    import albumentations as A

    comp = A.Compose([A.HorizontalFlip(p=0.5),
                      A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), rotate=(-15, 15), p=0.5),
                      A.GridDistortion(p=0.2), A.ElasticTransform(p=0.2)], seed=0)

    def np_aug(batch: np.ndarray) -> np.ndarray:
        return np.stack([comp(image=im.astype(np.uint8))["image"] for im in batch]).astype(np.float32)

    def f(x: Any, y: Any) -> Any:
        out = tf.numpy_function(np_aug, [x], tf.float32)
        out.set_shape(x.shape)
        return out, y

    return f


def _time_epoch(ds: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
    return time.perf_counter() - t0, n


def _naive(aug: Callable[[Any, Any], Any] | None) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    def f(x: Any, y: Any) -> Any:
        x = tf.cast(x, tf.float32)
        return aug(x, y) if aug is not None else (x, y)

    return f


def _side_by_side(build_ours: Callable[[], Any], build_base: Callable[[], Any], epochs: int) -> dict[str, Any]:
    """Build both (timed, added to epoch 1), then alternate epochs: ours, baseline, ours ..."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    ours = build_ours()
    b_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = build_base()
    b_base = time.perf_counter() - t0
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    counts: dict[str, int] = {}
    for e in range(epochs):
        order = (("ours", ours), ("baseline", base)) if e % 2 == 0 else (("baseline", base), ("ours", ours))
        for name, ds in order:
            dt, n = _time_epoch(ds)
            times[name].append(dt)
            counts[name] = n
    for name, build in (("ours", b_ours), ("baseline", b_base)):
        ts = times[name]
        n = counts[name]
        e1 = ts[0] + build
        steady = float(np.median(ts[1:])) if len(ts) > 1 else ts[0]
        out[name] = {"images": n, "build_s": round(build, 3), "epoch_s": [round(t, 3) for t in ts],
                     "epoch1_ips": round(n / e1, 1), "steady_ips": round(n / steady, 1)}
    return out


def bench_arrays(x: np.ndarray, y: np.ndarray, batch: int, epochs: int) -> list[dict[str, Any]]:
    import tensorflow as tf

    from kerasclf.data.augment import get_policy
    from kerasclf.data.pipeline import make_dataset
    from kerasclf.data.spec import DataSpec

    spec = DataSpec.from_arrays(x, y)
    rows = []
    for label, (pol, kind) in POLICIES.items():
        size = x.shape[1:3]
        ours = lambda: make_dataset(spec, image_size=size, batch_size=batch, shuffle=True, seed=0,  # noqa: E731
                                    cache="memory", augment=get_policy(pol, image_size=size, seed=0))
        base = lambda: (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0)  # noqa: E731
                        .batch(batch).map(_naive(_tutorial_aug(kind))))
        r = _side_by_side(ours, base, epochs)
        rows.append({"data": f"cifar10 arrays {size[0]}x{size[1]} (n={len(x)})", "augment": label,
                     "policy": _name(pol), **r})
        _print_row(rows[-1])
    return rows


def bench_jpegs(folder: Path, n_images: int, size: int, batch: int, epochs: int) -> list[dict[str, Any]]:
    import keras

    from kerasclf.data.augment import get_policy
    from kerasclf.data.pipeline import make_dataset
    from kerasclf.data.sources import from_folder

    full = from_folder(folder)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(full), size=min(n_images, len(full)), replace=False))
    spec = full.subset(idx)
    # the baseline reads a directory: link the same subset into a temporary tree (originals untouched)
    tmp = Path(tempfile.mkdtemp(prefix="kerasclf_bench_"))
    for p, lab in zip(spec.paths, spec.labels):
        d = tmp / spec.class_names[int(lab)]
        d.mkdir(exist_ok=True)
        os.symlink(os.path.abspath(p), d / os.path.basename(p))
    rows = []
    try:
        for label, (pol, kind) in POLICIES.items():
            ours = lambda: make_dataset(spec, image_size=(size, size), batch_size=batch, shuffle=True,  # noqa: E731
                                        seed=0, cache="memory",
                                        augment=get_policy(pol, image_size=(size, size), seed=0))
            base = lambda: keras.utils.image_dataset_from_directory(  # noqa: E731
                str(tmp), image_size=(size, size), batch_size=batch, shuffle=True, seed=0,
                verbose=False).map(_naive(_tutorial_aug(kind)))
            r = _side_by_side(ours, base, epochs)
            rows.append({"data": f"cats_vs_dogs JPEG -> {size}x{size} (n={len(spec)})", "augment": label,
                         "policy": _name(pol), **r})
            _print_row(rows[-1])
    finally:
        for d in tmp.iterdir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
        tmp.rmdir()
    return rows


def _simple_cnn(num_classes: int) -> Any:
    from kerasclf.zoo import build

    return build("simple_cnn", num_classes=num_classes, input_shape=(32, 32, 3)), "kerasclf.zoo simple_cnn"


def bench_training(x: np.ndarray, y: np.ndarray, batch: int, steps: int, rounds: int = 2) -> dict[str, Any]:
    """Training images/s of simple_cnn fed from memory vs fed by our pipeline (best of ``rounds``)."""
    import tensorflow as tf

    from kerasclf.data.augment import get_policy
    from kerasclf.data.pipeline import make_dataset
    from kerasclf.data.spec import DataSpec

    n_cls = int(y.max()) + 1
    model, what = _simple_cnn(n_cls)
    model.compile("adam", "sparse_categorical_crossentropy")
    xb = tf.constant(x[:batch].astype("float32"))
    yb = tf.constant(y[:batch].astype("int32"))
    model.train_on_batch(xb, yb)  # build + trace
    feeds: dict[str, Any] = {"memory": tf.data.Dataset.from_tensors((xb, yb)).repeat()}
    spec = DataSpec.from_arrays(x, y)
    for label in ("none", "keras", "albumentations"):
        pol = POLICIES[label][0]
        feeds[f"pipeline_{label}"] = make_dataset(
            spec, image_size=(32, 32), batch_size=batch, shuffle=True, seed=0, cache="memory",
            augment=get_policy(pol, image_size=(32, 32), seed=0), repeat=True, drop_remainder=True)
    for ds in feeds.values():  # trace, fill part of the cache
        model.fit(ds.take(5), verbose=0)
    best: dict[str, float] = {k: 0.0 for k in feeds}
    for _ in range(rounds):  # interleaved rounds; the best round is the least disturbed by other load
        for key, ds in feeds.items():
            t0 = time.perf_counter()
            model.fit(ds.take(steps), verbose=0)
            best[key] = max(best[key], steps * batch / (time.perf_counter() - t0))
    out: dict[str, Any] = {"model": what, "batch": batch, "steps": steps, "rounds": rounds}
    out.update({f"{k}_ips": round(v, 1) for k, v in best.items()})
    return out


def _name(pol: Any) -> str:
    return "none" if pol is None else pol if isinstance(pol, str) else "seed_effnet literal"


def _print_row(r: dict[str, Any]) -> None:
    o, b = r["ours"], r["baseline"]
    print(f"{r['data']:<38} {r['augment']:<24} "
          f"{o['epoch1_ips']:>9.0f} {b['epoch1_ips']:>9.0f} {o['epoch1_ips'] / b['epoch1_ips']:>6.2f}x   "
          f"{o['steady_ips']:>9.0f} {b['steady_ips']:>9.0f} {o['steady_ips'] / b['steady_ips']:>6.2f}x",
          flush=True)


def table(rows: list[dict[str, Any]], train: dict[str, Any] | None) -> str:
    """Markdown table of the results."""
    lines = ["| data | augmentation | epoch 1 ours | epoch 1 baseline | × | steady ours | steady baseline | × |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        o, b = r["ours"], r["baseline"]
        lines.append(f"| {r['data']} | {r['augment']} ({r['policy']}) | {o['epoch1_ips']:.0f} | "
                     f"{b['epoch1_ips']:.0f} | {o['epoch1_ips'] / b['epoch1_ips']:.2f} | {o['steady_ips']:.0f} | "
                     f"{b['steady_ips']:.0f} | {o['steady_ips'] / b['steady_ips']:.2f} |")
    if train:
        lines += ["", f"Training ({train['model']}, batch {train['batch']}, {train['steps']} steps, best of "
                  f"{train.get('rounds', 1)} interleaved rounds), images/s:", "",
                  "| fed from | images/s |", "|---|---:|", f"| memory (one constant batch) | {train['memory_ips']:.0f} |"]
        for label in ("none", "keras", "albumentations"):
            lines.append(f"| our pipeline, {label} | {train[f'pipeline_{label}_ips']:.0f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark for parsed ``args`` and return the JSON-able results."""
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message=".*shuffle=True.*")
    print(f"{'data':<38} {'augment':<24} {'ep1 ours':>9} {'ep1 base':>9} {'×':>7}   "
          f"{'steady':>9} {'st. base':>9} {'×':>7}   (images/s)", flush=True)
    rows: list[dict[str, Any]] = []
    cifar = np.load(ASSETS / "cifar" / "cifar10_subset.npz")
    keys = list(cifar.keys())
    xk = next(k for k in ("x_train", "train_images", "images", "x") if k in keys)
    yk = next(k for k in ("y_train", "train_labels", "labels", "y") if k in keys)
    x, y = cifar[xk], np.asarray(cifar[yk]).reshape(-1).astype("int64")
    if args.quick:
        x, y = x[:512], y[:512]
    if "cifar" in args.data:
        rows += bench_arrays(x, y, args.batch_size, args.epochs)
    if "catsdogs" in args.data:
        rows += bench_jpegs(ASSETS / "cats_vs_dogs", 128 if args.quick else args.n_images, args.size,
                            args.batch_size, args.epochs)
    train = None if args.skip_train else bench_training(x, y, args.batch_size, 10 if args.quick else args.train_steps)
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "env": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "args": vars(args), "rows": rows, "train": train, "commit": args.commit,
    }
    print()
    print(table(rows, train))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
        print(f"\nwritten {args.out}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results/pipeline.json", help="JSON output ('' for none)")
    ap.add_argument("--data", default="cifar,catsdogs", help="comma list: cifar, catsdogs")
    ap.add_argument("--n-images", type=int, default=1000, help="cats_vs_dogs subset size (all: 4999)")
    ap.add_argument("--size", type=int, default=224, help="JPEG resize side")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per pipeline (>= 2: epoch 1 + steady state)")
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    add_allow_dirty(ap)
    args = ap.parse_args(argv)
    args.commit = commit_or_exit(ap, args.allow_dirty) if args.out else None
    args.data = [d.strip() for d in args.data.split(",") if d.strip()]
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
