"""Inference speed of exported artefacts beside Keras ``predict``: one process, same inputs.

For each model — ``simple_cnn`` at 32 px, MobileNet α0.25 at 224 with the real ImageNet weights
(``../shared/assets/keras``; random weights when the asset is absent, said in the row),
MobileNet α1.0 and EfficientNetB0 at 224 (``weights=None``) — Keras ``model.predict``, the model as
a compiled ``tf.function`` and every runtime, float and int8 (LiteRT full-integer; OpenVINO with
NNCF when ``nncf`` is installed), on the same float32 batch of 32
random images (0..255), timed in alternating rounds so background load hits all alike: throughput
in images/s and the ratio to Keras ``predict``; latency p50/p95 of one image; max abs difference
of the outputs to Keras on those inputs.

Example:
    $ python benchmarks/infer.py --out benchmarks/results/infer.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import kerasclf
from kerasclf.export import convert, installed, open_session
from kerasclf.testing import MOBILENET_025_FILE, assets_dir, seed_keras_home, tiny_transfer
from kerasclf.zoo import build
from _provenance import add_allow_dirty, commit_or_exit  #  (benchmarks/: one rule for every recorded result)
from _timing import best_rates  # benchmarks/: one way to time competing runners



def _mobilenet_025() -> tuple[Any, str]:
    """MobileNet α0.25 at 224 with the real ImageNet weights when the asset is here."""
    assets = assets_dir()
    weights = assets / "keras" / "models" / MOBILENET_025_FILE if assets else None
    if weights is None or not weights.is_file():
        return tiny_transfer(10, input_shape=(224, 224, 3)), "random weights (asset absent)"
    seed_keras_home(tempfile.mkdtemp(prefix="kerasclf_keras_home_"), [weights])
    return tiny_transfer(10, input_shape=(224, 224, 3), weights="imagenet"), "ImageNet weights"


MODELS = {
    "simple_cnn@32": lambda: (build("simple_cnn", num_classes=10), "random weights"),
    "mobilenet_a0.25@224": _mobilenet_025,
    "mobilenet_a1.0@224": lambda: (build("backbone_head", num_classes=10, backbone="MobileNet", alpha=1.0,
                                         weights=None, input_shape=(224, 224, 3)), "random weights"),
    "efficientnet_b0@224": lambda: (build("efficientnet_b0_head", num_classes=10, weights=None), "random weights"),
}
#: (label, export format, runtime, int8)
ROUTES = [("onnx/onnxruntime", "onnx", "onnxruntime", False), ("onnx/openvino", "onnx", "openvino", False),
          ("openvino", "openvino", "openvino", False), ("litert", "litert", "litert", False),
          ("litert int8", "litert", "litert", True), ("openvino int8 (nncf)", "openvino", "openvino", True)]
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}


def bench(name: str, batch: int, rounds: int, tmp: Path, latency_calls: int = 30) -> list[dict[str, Any]]:
    model, weights = MODELS[name]()
    size = int(name.split("@")[1])
    x = np.random.RandomState(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    keras_fn = lambda v: model.predict(v, batch_size=batch, verbose=0)  # noqa: E731
    ref = keras_fn(x)
    compiled = tf.function(lambda v: model(v, training=False))
    runners = {"keras predict": keras_fn, "keras tf.function": lambda v: compiled(v).numpy()}
    for label, fmt, runtime, int8 in ROUTES:
        if not installed(runtime) or (int8 and fmt == "openvino" and importlib.util.find_spec("nncf") is None):
            continue
        path = tmp / f"{name.replace('@', '_')}{'_int8' if int8 else ''}{SUFFIX[fmt]}"
        if not path.exists():
            convert(model, fmt, path, image_size=(size, size), int8_images=x if int8 else None)
        runners[label] = open_session(path, runtime)
    rates = best_rates({k: (lambda fn=fn: fn(x)) for k, fn in runners.items()}, len(x), 2 * rounds)
    rows = []
    for k, fn in runners.items():
        diff = float(np.max(np.abs(np.asarray(fn(x)) - ref)))
        one = x[:1]
        fn(one)
        lat = []
        for _ in range(latency_calls):
            t = time.perf_counter()
            fn(one)
            lat.append((time.perf_counter() - t) * 1000)
        rows.append({"model": name, "weights": weights, "runtime": k, "img_per_s": round(rates[k], 1),
                     "vs_keras": round(rates[k] / rates["keras predict"], 2), "max_abs_diff": diff,
                     "p50_ms": round(float(np.percentile(lat, 50)), 2), "p95_ms": round(float(np.percentile(lat, 95)), 2)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| model | runtime | img/s (batch 32) | × Keras predict | batch-1 p50 / p95 ms | max abs diff |",
           "|---|---|---|---|---|---|"]
    out += [f"| {r['model']} | {r['runtime']} | {r['img_per_s']:.1f} | {r['vs_keras']:.2f}× | "
            f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} | {r['max_abs_diff']:.1e} |" for r in rows]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/infer.json")
    add_allow_dirty(p)
    args = p.parse_args()
    commit = commit_or_exit(p, args.allow_dirty)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += bench(name, args.batch, args.rounds, Path(tmp))
            print(table([r for r in rows if r["model"] == name]), flush=True)
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "kerasclf": kerasclf.__version__, "commit": commit}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
