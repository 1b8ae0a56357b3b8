"""Runtime options for EfficientNetB0 at 224 (issue 12's 2.5x goal): Keras ``predict`` beside ONNX
Runtime (default vs 2 threads, all graph optimisations, no spinning), OpenVINO (LATENCY vs
THROUGHPUT hint, synchronous vs an async queue of 4 requests of 8 images, f32 vs bf16) and
LiteRT (XNNPACK, 2 threads), in one process on the same 32 random images, every runner timed
in 3 alternated rounds, best kept. Random weights (``weights=None``); needs the [export] extra.

Example:
    $ python benchmarks/infer_options.py
"""
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov

from kerasclf.export import convert, open_session
from kerasclf.zoo import build


def main() -> None:
    model = build("efficientnet_b0_head", num_classes=10, weights=None)
    x = np.random.RandomState(0).uniform(0, 255, (32, 224, 224, 3)).astype("float32")
    tmp = Path(tempfile.mkdtemp())
    onnx, xml, tfl = tmp / "m.onnx", tmp / "m.xml", tmp / "m.tflite"
    for f, fmt in ((onnx, "onnx"), (xml, "openvino"), (tfl, "litert")):
        convert(model, fmt, f, image_size=(224, 224))
    runners = {"keras predict": lambda v: model.predict(v, batch_size=32, verbose=0)}
    runners["ort default"] = open_session(onnx, "onnxruntime")
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(str(onnx), o, providers=["CPUExecutionProvider"]); n = s.get_inputs()[0].name
    runners["ort 2 threads, all opts, no spin"] = lambda v: s.run(None, {n: v})[0]
    core = ov.Core()
    for hint in ("THROUGHPUT", "LATENCY"):
        c = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint})
        if hint == "THROUGHPUT":
            def run_async(v, c=c):
                q = ov.AsyncInferQueue(c, 0); out = [None] * 4
                q.set_callback(lambda r, i: out.__setitem__(i, r.get_output_tensor(0).data.copy()))
                for i in range(4):
                    q.start_async({0: v[i * 8:(i + 1) * 8]}, i)
                q.wait_all(); return out
            runners["openvino THROUGHPUT hint, async 4x8"] = run_async
        runners[f"openvino {hint} hint"] = lambda v, c=c: c(v)[0]
    c16 = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    runners["openvino bf16 (avx512_bf16)"] = lambda v: c16(v)[0]
    runners["litert 2 threads"] = open_session(tfl, "litert", threads=2)
    rates = {k: 0.0 for k in runners}
    for k, f in runners.items():
        f(x)
    for r in range(3):
        for k, f in runners.items():
            t = time.perf_counter(); f(x); rates[k] = max(rates[k], 32 / (time.perf_counter() - t))
    print("load", os.getloadavg())
    for k, v in rates.items():
        print(f"{k:40s} {v:7.1f} img/s  {v / rates['keras predict']:.2f}x")


if __name__ == "__main__":
    main()
