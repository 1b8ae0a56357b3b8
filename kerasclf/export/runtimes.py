"""Run exported artefacts (ONNX, LiteRT, OpenVINO) with the same interface as a Keras model.

The runtime libraries are optional (``pip install 'kerasclf[export]'``) and imported only when
an artefact is opened. An artefact's class names, task and input size come from its model card
(:func:`kerasclf.io.read_card`), so a prediction CSV is the same whichever runtime made it.

Example:
    >>> from kerasclf.export.runtimes import open_model           # doctest: +SKIP
    >>> m = open_model("runs/demo/model.onnx", runtime="auto")
    >>> m.runtime, m.class_names, m.predict(images).shape
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.errors import ModelError
from kerasclf.formats import EXTRA_HINT, FORMATS, artefact_format, require
from kerasclf.io import LoadedModel, ModelFacts, chosen_model, is_run_folder, load_model, read_card
from kerasclf.security import check_model

__all__ = ["FORMATS", "RUNTIMES", "EXTRA_HINT", "artefact_format", "runtimes_for", "installed", "require",
           "open_session", "open_model", "ExportedModel", "pick_runtime"]

#: runtime -> the module it needs
RUNTIMES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai_edge_litert", "keras": "keras"}
#: format -> runtimes that read it, fastest first (measured in docs/benchmarks.md)
_READERS = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",), "litert": ("litert",),
            "savedmodel": ("keras",), "keras": ("keras",)}


def installed(runtime: str) -> bool:
    """Whether ``runtime``'s library can be imported here."""
    return importlib.util.find_spec(RUNTIMES[runtime]) is not None


def runtimes_for(fmt: str) -> tuple[str, ...]:
    """The runtimes that can run a ``fmt`` artefact, fastest first."""
    return _READERS[fmt]


def pick_runtime(path: str | Path, fmt: str, runtime: str = "auto") -> str:
    """The runtime that will run a ``fmt`` artefact: ``runtime`` checked, or the fastest installed (``auto``)."""
    readers = runtimes_for(fmt)
    if runtime == "auto":
        usable = [r for r in readers if installed(r)]
        if not usable:
            raise ModelError(f"{path}: running a {fmt} artefact needs one of {', '.join(readers)}; {EXTRA_HINT}")
        return usable[0]
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime '{runtime}'; use auto, {', '.join(RUNTIMES)}")
    if runtime not in readers:
        raise ModelError(f"{path}: the {runtime} runtime cannot read a {fmt} artefact; use "
                         f"--runtime {' or '.join(readers)} (or auto)")
    return runtime


def open_session(path: str | Path, runtime: str, *, threads: int | None = None,
                 trust: bool | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``float32 images (N, H, W, 3) -> outputs (N, K)`` running ``path`` in ``runtime``.

    The file passes the security gate first (:func:`kerasclf.security.check_model`; ``trust`` as
    there): an artefact with a custom or Flex op, a custom-op domain, an extension opset or a file
    outside its folder is refused before the runtime reads it.

    Example:
        >>> run = open_session("model.onnx", "onnxruntime")          # doctest: +SKIP
        >>> run(np.zeros((2, 32, 32, 3), "float32")).shape
        (2, 10)
    """
    check_model(path, trust=trust)
    path = str(path)
    if runtime == "onnxruntime":
        ort = require("onnxruntime", "ONNX Runtime")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    if runtime == "openvino":
        return _openvino_session(path, threads)
    if runtime == "litert":
        require("ai_edge_litert", "LiteRT")
        interp = importlib.import_module("ai_edge_litert.interpreter").Interpreter(model_path=path, num_threads=threads)
        inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
        shape: list[tuple[int, ...]] = [()]

        def run(x: np.ndarray) -> np.ndarray:
            if tuple(x.shape) != shape[0]:
                interp.resize_tensor_input(inp, x.shape)
                interp.allocate_tensors()
                shape[0] = tuple(x.shape)
            interp.set_tensor(inp, np.ascontiguousarray(x, dtype=np.float32))
            interp.invoke()
            return interp.get_tensor(out).copy()
        return run
    raise ModelError(f"open_session: no session for runtime '{runtime}'; use onnxruntime, openvino or litert")


def _openvino_session(path: str, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO compiled with the THROUGHPUT hint: a batch is split over the infer requests it
    suggests and run asynchronously (EfficientNetB0 at 224 on 2 cores: 3.0x Keras ``predict``,
    against 1.8x for one synchronous call with the LATENCY hint, docs/benchmarks.md); a batch
    smaller than twice the number of requests runs as one call."""
    ov = require("openvino", "OpenVINO")
    # f32: on CPUs with bf16 units OpenVINO would otherwise compute in bf16 (measured 4.8e-4 off Keras)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "THROUGHPUT"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(path, "CPU", config)
    requests = [compiled.create_infer_request()
                for _ in range(max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if len(requests) == 1 or len(x) < 2 * len(requests):
            return np.asarray(compiled(x)[0])
        chunks = np.array_split(x, len(requests))
        for req, chunk in zip(requests, chunks):  # no Python callback: OpenVINO's threads never need
            req.start_async({0: chunk})            # the GIL (an AsyncInferQueue callback deadlocked
        outs = []                                  # the compiled model's destructor under pytest)
        for req in requests:
            req.wait()
            outs.append(req.get_output_tensor(0).data.copy())
        return np.concatenate(outs)
    return run


@dataclass
class ExportedModel(LoadedModel):
    """An exported artefact opened in a runtime; ``predict`` takes raw 0..255 RGB batches like Keras's."""

    runtime: str = ""

    @property
    def num_outputs(self) -> int:
        return int(self.meta.get("num_outputs") or len(self.meta.get("class_names") or []))

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.meta.get("image_size")
        if not size:
            raise ModelError(f"{self.path}: its model card records no image_size; export it again")
        return int(size[0]), int(size[1])

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        images = np.asarray(images, dtype="float32")
        outs = [self.model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        if not outs:
            return np.zeros((0, self.num_outputs), "float32")
        y = np.concatenate(outs)
        if self.num_outputs and y.shape[-1] != self.num_outputs:
            raise ModelError(f"{self.path} outputs {y.shape[-1]} values per image but its card lists "
                             f"{self.num_outputs} outputs; the card belongs to another model: export again")
        return y


def open_model(path: str | Path, runtime: str = "auto", *, threads: int | None = None,
               facts: ModelFacts | None = None, trust: bool | None = None) -> LoadedModel:
    """Any saved or exported model, ready to ``predict`` raw 0..255 RGB batches.

    ``.keras`` / ``.h5`` / SavedModel folders load through :func:`kerasclf.io.load_model`; a run folder
    opens the model it chose on validation (:func:`kerasclf.io.chosen_model`);
    ``.onnx`` / ``.tflite`` / ``.xml`` open in ``runtime`` (``auto``: the fastest installed).
    ``facts`` (class names, task, ... of a model kerasclf did not save) apply to Keras models only:
    an artefact's model card says them. Every file passes the security gate first (``trust``: see
    :func:`kerasclf.io.load_model`).

    Example:
        >>> open_model("runs/demo/model.tflite").runtime              # doctest: +SKIP
        'litert'
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model {path} not found; check the path (`kerasclf export` writes it beside the model)")
    if path.is_dir() and is_run_folder(path):
        path = chosen_model(path)[0]
    fmt = artefact_format(path)
    if fmt in ("keras", "savedmodel"):
        pick_runtime(path, fmt, runtime)  # Keras reads them: another --runtime is refused by name
        return load_model(path, facts=facts, trust=trust)
    if facts is not None and facts.given:
        raise ModelError(f"{path}: its model card gives class names, task and input; drop {', '.join(facts.given)}")
    card = read_card(path)  # first: an artefact without its card cannot be used whatever is installed
    chosen = pick_runtime(path, fmt, runtime)
    return ExportedModel(path=path, format=fmt, model=open_session(path, chosen, threads=threads, trust=trust),
                         meta=card, runtime=chosen)
