"""What the model gate costs: ``check_model`` on each format of one ~25 MB model, beside loading it.

EfficientNetB1 + the shared head (``weights=None``, 10 classes, 240 px: 6.6 M parameters, a ~26 MB
SavedModel) is written by kerasclf as a SavedModel, a ``.keras`` file and, where the ``[export]``
extra is installed, ONNX, LiteRT and OpenVINO artefacts. For each: the gate's first call in a fresh
process (after ``import kerasclf``, as a command pays it), the median of ``--rounds`` calls in this
process, and the time the runtime takes to load the same file the way kerasclf does
(``tf.saved_model.load``, ``keras.saving.load_model``, an ONNX Runtime session, a LiteRT
interpreter, an OpenVINO compiled model): the gate's share of opening a model.

Example:
    $ python benchmarks/gate.py --out benchmarks/results/gate.json
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import kerasclf
from kerasclf.export import convert, installed
from kerasclf.io import save_model
from kerasclf.security import check_model
from kerasclf.zoo import build

SIZE = 240
#: a fresh process times its first gate call (the imports before it are not counted)
FIRST_CALL = ("import sys, time, kerasclf\nfrom kerasclf.security import check_model\n"
              "t = time.perf_counter(); check_model(sys.argv[1]); print(time.perf_counter() - t)")


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if path.suffix == ".xml":
        files.append(path.with_suffix(".bin"))
    return sum(p.stat().st_size for p in files) / 2**20


def _loaders() -> dict[str, Callable[[Path], Any]]:
    """How kerasclf's loaders open each format (what the gate runs in front of)."""
    def onnx(p: Path) -> Any:
        ort = importlib.import_module("onnxruntime")
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])

    def litert(p: Path) -> Any:
        interp = importlib.import_module("ai_edge_litert.interpreter").Interpreter(model_path=str(p))
        interp.allocate_tensors()
        return interp

    def openvino(p: Path) -> Any:
        return importlib.import_module("openvino").Core().compile_model(str(p), "CPU")

    return {"savedmodel": lambda p: tf.saved_model.load(str(p)), "keras": lambda p: keras.saving.load_model(p),
            "onnx": onnx, "litert": litert, "openvino": openvino}


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(rounds: int, tmp: Path) -> list[dict[str, Any]]:
    model = build("backbone_head", backbone="EfficientNetB1", num_classes=10, weights=None,
                  input_shape=(SIZE, SIZE, 3))
    artefacts = {"savedmodel": save_model(model, tmp / "model.savedmodel"),
                 "keras": save_model(model, tmp / "model.keras")}
    for fmt, runtime, suffix in (("onnx", "onnxruntime", ".onnx"), ("litert", "litert", ".tflite"),
                                 ("openvino", "openvino", ".xml")):
        if installed(runtime) and (fmt != "onnx" or importlib.util.find_spec("tf2onnx")):
            artefacts[fmt] = convert(model, fmt, tmp / f"model{suffix}", image_size=(SIZE, SIZE))
    loaders = _loaders()
    rows = []
    for fmt, path in artefacts.items():
        fresh = subprocess.run([sys.executable, "-c", FIRST_CALL, str(path)], capture_output=True, text=True,
                               check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        first = float(fresh.stdout.strip().splitlines()[-1])
        times = [_time(lambda: check_model(path)) for _ in range(rounds)]
        report = check_model(path)
        load = _time(lambda: loaders[fmt](path))
        gate = statistics.median(times)
        rows.append({"format": fmt, "size_mb": round(_size_mb(path), 1), "passed": report.ok,
                     "gate_first_s": round(first, 4), "gate_median_s": round(gate, 4),
                     "gate_max_s": round(max(times), 4), "load_s": round(load, 3),
                     "gate_share_of_load": round(gate / load, 4), "contents": report.contents[:120]})
        print(f"{fmt:<11} {rows[-1]['size_mb']:>6.1f} MB  gate {first * 1000:7.1f} ms first (fresh process), "
              f"{gate * 1000:7.1f} ms median  load {load:6.2f} s  ({gate / load:.1%} of it)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed gate calls per format (median reported)")
    parser.add_argument("--out", default="benchmarks/results/gate.json")
    args = parser.parse_args()
    np.random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench(args.rounds, Path(tmp))
    result = {"model": f"backbone_head EfficientNetB1 @{SIZE}, weights=None, 10 classes",
              "rounds": args.rounds, "rows": rows,
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "load_average": [round(v, 2) for v in os.getloadavg()],
                          "python": platform.python_version(), "tensorflow": tf.__version__,
                          "keras": keras.__version__, "kerasclf": kerasclf.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| format | size | gate, first call (fresh process) | gate, median of {args.rounds} | loading it | gate / load |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['size_mb']:.1f} MB | {r['gate_first_s'] * 1000:.0f} ms | "
              f"{r['gate_median_s'] * 1000:.0f} ms | {r['load_s']:.2f} s | {r['gate_share_of_load']:.1%} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
