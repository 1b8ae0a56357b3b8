"""Export a Keras model to ONNX, LiteRT, OpenVINO or a SavedModel, verify it, write its model card.

Every runtime format converts one frozen inference function (:func:`kerasclf.io.serving_function`):
ONNX through tf2onnx from the frozen graph (Keras's ``model.export(format="onnx")`` left
EfficientNet's Normalization constants as graph inputs, which ONNX Runtime and OpenVINO refuse),
LiteRT through TensorFlow's converter, OpenVINO through its own converter (weights kept float32).
An export then runs the artefact and the Keras model on the same real images; below the limits
(:class:`~kerasclf.export.parity.Thresholds`) the file is renamed ``*.rejected`` and
:class:`ExportCheckError` says why.

Example:
    >>> from kerasclf.export.convert import export_model               # doctest: +SKIP
    >>> r = export_model("runs/demo/model.keras", "onnx", calibration=(images, labels))
    >>> r.path, r.parity["top1_agreement"], r.parity["max_abs_diff"]
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from kerasclf._progress import progress
from kerasclf.data.pipeline import file_batches
from kerasclf.data.reader import collect_image_paths
from kerasclf.errors import DataError, ModelError
from kerasclf.export.compose import ensemble_model, float32_model, tta_model
from kerasclf.export.parity import Thresholds, judge, parity
from kerasclf.export.runtimes import FORMATS, artefact_format, open_session, pick_runtime, require, runtimes_for
from kerasclf.io import LoadedModel, ModelFacts, load_model, model_card, save_model, serving_function, write_card

__all__ = ["ExportCheckError", "ExportResult", "INT8_METHODS", "convert", "export_model", "calibration_images",
           "verify_artefact"]

ONNX_OPSET = 17

#: post-training int8 methods per format, in the order ``--int8-method auto`` tries them (fastest first):
#: ``full`` = LiteRT full-integer (int8 weights and activations, calibrated); ``dynamic`` = LiteRT
#: dynamic range (int8 weights, float activations, no calibration); ``nncf`` = OpenVINO with NNCF
#: post-training quantization (int8 weights and activations, calibrated, fast bias correction)
INT8_METHODS = {"litert": ("full", "dynamic"), "openvino": ("nncf",)}


class ExportCheckError(ModelError):
    """An exported artefact disagrees with its Keras model beyond the limits."""


@dataclass
class ExportResult:
    """What :func:`export_model` made: the artefact, its card and the parity figures."""

    path: Path
    card_path: Path
    parity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _frozen(model: Any, image_size: tuple[int, int]) -> Any:
    """The serving function with its variables folded into constants (what ONNX and LiteRT convert)."""
    return convert_variables_to_constants_v2(serving_function(model, image_size))


def convert(model: Any, fmt: str, out: str | Path, *, image_size: tuple[int, int],
            int8_images: np.ndarray | None = None, meta: dict[str, Any] | None = None,
            int8_method: str | None = None) -> Path:
    """Write ``model`` as a ``fmt`` artefact at ``out`` (no verification: see :func:`export_model`).

    ``int8_images`` turns on post-training int8 quantization calibrated on those images, by
    ``int8_method`` (one of :data:`INT8_METHODS` for ``fmt``; default its first); inputs and
    outputs stay float32.

    Example:
        >>> convert(tiny_cnn(2), "litert", "m.tflite", image_size=(16, 16))   # doctest: +SKIP
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if int8_images is not None:
        methods = INT8_METHODS.get(fmt, ())
        if not methods:
            raise ModelError(f"--int8 is supported for --format litert or openvino (asked: {fmt}); "
                             f"export with --format openvino --int8 or --format litert --int8")
        int8_method = int8_method or methods[0]
        if int8_method not in methods:
            raise ModelError(f"--int8-method {int8_method} does not apply to {fmt}; use auto or {', '.join(methods)}")
    if fmt in ("savedmodel", "keras"):
        return save_model(model, out, meta=meta, overwrite=True)
    try:
        return _write(model, fmt, out, image_size, int8_images, int8_method)
    except ModelError:
        raise
    except Exception as exc:  # the converters' own errors (tf.lite ConverterError, tf2onnx, OpenVINO)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(f"{out}: the {fmt} converter failed ({type(exc).__name__}: {first}); a custom layer "
                         f"without a {fmt} equivalent is the usual cause: try another --format") from exc


def _write(model: Any, fmt: str, out: Path, image_size: tuple[int, int], int8_images: np.ndarray | None,
           int8_method: str | None = None) -> Path:
    """One converter call per format (see :func:`convert`)."""
    if fmt == "onnx":
        require("tf2onnx", "ONNX export")
        import tf2onnx

        frozen = _frozen(model, image_size)
        tf2onnx.convert.from_graph_def(frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
                                       output_names=[t.name for t in frozen.outputs], opset=ONNX_OPSET,
                                       output_path=str(out))
        return out
    if fmt == "litert":
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(model, image_size)])
        if int8_images is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic range (int8 weights)
            if int8_method == "full":
                converter.representative_dataset = lambda: ([x[None]] for x in np.asarray(int8_images, "float32"))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        out.write_bytes(converter.convert())
        return out
    if fmt == "openvino":
        ov = require("openvino", "OpenVINO export")
        with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads the SavedModel; weights stay float32
            saved = save_model(model, Path(tmp) / "saved", overwrite=True)
            ov_model = ov.convert_model(str(saved))
        if int8_images is not None:
            nncf = require("nncf", "OpenVINO int8 (NNCF post-training quantization)")
            x = np.asarray(int8_images, "float32")
            data = nncf.Dataset([x[i:i + 1] for i in range(len(x))])
            ov_model = nncf.quantize(ov_model, data, subset_size=len(x), preset=nncf.QuantizationPreset.MIXED)
        ov.save_model(ov_model, str(out), compress_to_fp16=False)
        return out
    raise ModelError(f"unknown export format '{fmt}'; use {', '.join(FORMATS)}")


def calibration_images(folder: str | Path, image_size: tuple[int, int], *, max_images: int = 256) -> np.ndarray:
    """Up to ``max_images`` images of ``folder`` (any layout, a seeded random sample when it holds
    more), read by the one pipeline at ``image_size``.

    Example:
        >>> calibration_images("photos/", (224, 224), max_images=64).shape   # doctest: +SKIP
        (64, 224, 224, 3)
    """
    files = [str(p) for p in collect_image_paths(folder)] if Path(folder).is_dir() else []
    if len(files) > max_images:  # not the first files of a class-sorted folder
        files = [files[i] for i in np.sort(np.random.default_rng(0).permutation(len(files))[:max_images])]
    batches = [x for _, x in file_batches(files, image_size, 64)]
    if not batches:
        raise DataError(f"{folder}: no readable images for the export check; pass --calibration with a folder "
                        f"of real images like those the model will see")
    return np.concatenate(batches)


def verify_artefact(reference: Any, artefact: str | Path, images: np.ndarray, labels: np.ndarray | None, *,
                    task: str, int8: bool = False, runtime: str = "auto", threshold: float = 0.5,
                    limits: Thresholds = Thresholds()) -> dict[str, Any]:
    """Run ``reference`` (Keras) and the artefact on ``images``; the parity figures plus ``passed``/``reason``."""
    ref = np.asarray(reference.predict(images, batch_size=32, verbose=0))
    used = pick_runtime(artefact, artefact_format(artefact), runtime)
    if used == "keras":
        art = load_model(artefact).predict(images, 32)
    else:
        run = open_session(artefact, used)
        art = np.concatenate([run(images[i:i + 32]) for i in range(0, len(images), 32)])
    result = parity(ref, art, task, labels, threshold=threshold)
    passed, reason = judge(result, int8=int8, limits=limits)
    return {**result, "runtime": used, "int8": int8, "passed": passed, "reason": reason}


def _reject(out: Path, tag: str = "") -> Path:
    """Rename a failed artefact ``x.onnx`` -> ``x.onnx[.tag].rejected`` (OpenVINO: its .bin too)."""
    rejected = out.with_name(out.name + (f".{tag}" if tag else "") + ".rejected")
    if rejected.exists():
        shutil.rmtree(rejected) if rejected.is_dir() else rejected.unlink()
    out.rename(rejected)
    if out.suffix == ".xml" and out.with_suffix(".bin").exists():
        out.with_suffix(".bin").rename(out.with_name(out.stem + ".bin" + (f".{tag}" if tag else "") + ".rejected"))
    return rejected


def default_out(model_path: Path, fmt: str, *, int8: bool = False, tta: bool = False, ensemble: bool = False) -> Path:
    """``runs/x/model.keras`` -> ``runs/x/model[.tta][.ensemble][.int8].onnx`` (SavedModel: a folder)."""
    tags = "".join(t for t, on in ((".tta", tta), (".ensemble", ensemble), (".int8", int8)) if on)
    suffix = FORMATS[fmt] or ".savedmodel"
    return model_path.with_name(model_path.stem + tags + suffix)


def export_model(model: str | Path, fmt: str, out: str | Path | None = None, *,
                 calibration: str | Path | tuple[np.ndarray, np.ndarray | None] | None = None,
                 calibration_name: str | None = None, check: tuple[np.ndarray, np.ndarray | None] | None = None,
                 check_name: str | None = None, int8: bool = False, tta: Sequence[str] = (),
                 ensemble: Sequence[str | Path] = (), overwrite: bool = False, max_images: int = 256,
                 limits: Thresholds = Thresholds(), facts: ModelFacts | None = None,
                 int8_method: str = "auto") -> ExportResult:
    """Export a saved model, check it against Keras on real images, write ``card.json``/``card.md`` beside it.

    Args:
        model: a ``.keras`` / ``.h5`` file saved by kerasclf, or by anyone with ``facts`` (class
            names, task, image size, preprocessing: :class:`~kerasclf.io.ModelFacts`); the artefact
            then takes raw 0..255 RGB like every kerasclf artefact.
        fmt: ``onnx`` | ``litert`` | ``openvino`` | ``savedmodel`` | ``keras`` (a baked TTA/ensemble).
        out: the artefact path (default: beside ``model``, e.g. ``model.onnx``).
        calibration: a folder of images, or ``(images, labels or None)`` already read (a run's
            validation split: :func:`kerasclf.evaluate.run_split`).
        check: ``(images, labels or None)`` the artefact is judged on (default: the calibration
            images); give another split with ``int8`` so the quantizer is not judged on what it saw.
        int8: post-training int8 quantization calibrated on those images (LiteRT or OpenVINO);
            judged by its accuracy change against Keras on ``check``.
        int8_method: one of :data:`INT8_METHODS` for ``fmt``, or ``auto``: each in turn until one
            passes the check; each that fails is kept as ``*.<method>.rejected`` and listed in the
            card (``int8_tried``).
        tta: views averaged into the model (``("flip",)``); ensemble: other saved models averaged in.

    Raises:
        ExportCheckError: the artefact disagrees with Keras; it is kept as ``*.rejected``.

    Example:
        >>> export_model("runs/demo/model.keras", "litert", calibration="photos/")   # doctest: +SKIP
    """
    start = time.perf_counter()
    model_path = Path(model)
    if fmt not in FORMATS:
        raise ModelError(f"unknown export format '{fmt}'; use {', '.join(FORMATS)}")
    if fmt == "keras" and not (tta or ensemble):
        raise ModelError(f"{model_path} is already a Keras model; --format keras is for --tta / --ensemble")
    loaded: LoadedModel = load_model(model_path, facts=facts)
    if loaded.format == "export":
        raise ModelError(f"{model_path}: export from the .keras file of the model, not from an exported folder")
    keras_model = float32_model(loaded.model)  # the artefact and its reference compute in float32
    mixed = keras_model is not loaded.model
    if tta:
        keras_model = tta_model(keras_model, tta)
    if ensemble:
        members = [load_model(p, num_classes=len(loaded.class_names)) for p in ensemble]
        mixed = mixed or any(float32_model(m.model) is not m.model for m in members)
        for p, m in zip(ensemble, members):
            if m.class_names != loaded.class_names:
                raise ModelError(f"{p}: its classes {m.class_names[:10]} differ from {model_path}'s "
                                 f"{loaded.class_names[:10]}; ensemble only models of the same classes")
        keras_model = ensemble_model([keras_model] + [float32_model(m.model) for m in members])
    if int8 and fmt not in INT8_METHODS:
        raise ModelError(f"--int8 is supported for --format litert or openvino (asked: {fmt}); "
                         f"export with --format openvino --int8 or --format litert --int8")
    if int8_method != "auto" and not int8:
        raise ModelError(f"--int8-method {int8_method} without --int8; add --int8 or drop --int8-method")
    if int8 and int8_method != "auto" and int8_method not in INT8_METHODS[fmt]:
        raise ModelError(f"--int8-method {int8_method} is not one for {fmt} ({', '.join(INT8_METHODS[fmt])}); "
                         f"choose one of those or auto")
    out = Path(out) if out else default_out(model_path, fmt, int8=int8, tta=bool(tta), ensemble=bool(ensemble))
    if out.suffix != FORMATS[fmt] and FORMATS[fmt]:
        raise ModelError(f"{out}: a {fmt} artefact must end in {FORMATS[fmt]}; choose --out NAME{FORMATS[fmt]}")
    if out.exists() and not overwrite:
        raise ModelError(f"{out} already exists; pass --overwrite or choose another --out")
    size = loaded.image_size
    if calibration is None:
        raise DataError(f"{model_path}: the export check needs real images: export a model inside its run "
                        f"folder (its validation split is used) or pass --calibration FOLDER")
    if isinstance(calibration, tuple):
        images, labels = calibration
        name = calibration_name or "given images"
    else:
        images, labels, name = calibration_images(calibration, size, max_images=max_images), None, str(calibration)
    images = np.asarray(images, "float32")[:max_images]
    labels = None if labels is None else np.asarray(labels)[:max_images]
    meta = {**loaded.meta, "image_size": list(size), "num_outputs": loaded.num_outputs,
            "class_names": loaded.class_names, "task": loaded.task}
    if tta or ensemble:
        meta["composed"] = {"tta": list(tta), "ensemble": [str(model_path)] + [str(p) for p in ensemble]}
    check_x, check_y = (images, labels) if check is None else (np.asarray(check[0], "float32")[:max_images],
                                                              None if check[1] is None else np.asarray(check[1])[:max_images])
    if out.exists():  # every option was checked above: only now is the old artefact replaced
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    methods = (INT8_METHODS[fmt] if int8_method == "auto" else (int8_method,)) if int8 else (None,)
    tried: list[dict[str, Any]] = []
    bar = progress(total=len(methods), desc=f"export {fmt}", unit="try")  # a bar on a terminal only
    for method in methods:
        convert(keras_model, fmt, out, image_size=size, int8_images=images if int8 else None, meta=meta,
                int8_method=method)
        judged = verify_artefact(keras_model, out, check_x, check_y, task=loaded.task, int8=int8,
                                 threshold=float(loaded.meta.get("threshold", 0.5)), limits=limits)
        bar.update()
        judged["images"] = name if check is None else (check_name or "given check images")
        if mixed:
            judged["reference"] = "the Keras model recomputed in float32 (it was saved with a mixed-precision policy)"
        if int8:
            judged.update(int8_method=method, calibrated_on=f"{len(images)} images of {name}", int8_tried=tried)
        card = model_card(model_path, meta, export={"format": fmt, "runtime": judged["runtime"], "int8": int8,
                                                    "int8_method": method, "runtimes": list(runtimes_for(fmt)),
                                                    "file": out.name, "versions": _runtime_versions(fmt)},
                          parity=judged)
        if judged["passed"]:
            break
        rejected = _reject(out, method or "")
        write_card(rejected, card)
        tried.append({"method": method, "passed": False, "reason": judged["reason"], "kept_as": rejected.name,
                      **{k: judged[k] for k in ("accuracy_change", "top1_agreement") if k in judged}})
    bar.close()
    if not judged["passed"]:
        what = "; ".join(f"{t['method']}: {t['reason']} (kept as {t['kept_as']})" for t in tried) if int8 else \
            f"{judged['reason']}; kept as {tried[-1]['kept_as']}"
        raise ExportCheckError(f"{out}: export check failed on {judged['n_images']} images ({judged['images']}): "
                               f"{what}; do not deploy it")
    card_file = write_card(out, card)
    return ExportResult(path=out, card_path=card_file, parity=judged, seconds=time.perf_counter() - start)


def _runtime_versions(fmt: str) -> dict[str, str]:
    import importlib.metadata as md

    names = {"onnx": ("tf2onnx", "onnx", "onnxruntime", "openvino"), "litert": ("ai-edge-litert",),
             "openvino": ("openvino", "nncf")}.get(fmt, ())
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            continue
    return out
