"""Model file formats: which one a path is (from its name) and the optional package that reads it;
one mapping for loading, exporting and the security gate (:mod:`kerasclf.security`).

Example:
    >>> artefact_format("runs/demo/model.tflite"), artefact_format("runs/demo/model.h5")
    ('litert', 'keras')
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from kerasclf.errors import ModelError

__all__ = ["FORMATS", "EXTRA_HINT", "artefact_format", "require"]

#: export format -> file suffix ("" is a folder)
FORMATS = {"onnx": ".onnx", "litert": ".tflite", "openvino": ".xml", "savedmodel": "", "keras": ".keras"}
EXTRA_HINT = "pip install 'kerasclf[export]'"
_PACKAGE = {"onnxruntime": "onnxruntime", "openvino": "openvino", "ai_edge_litert": "ai-edge-litert", "nncf": "nncf",
            "tf2onnx": "tf2onnx", "onnx": "onnx"}


def artefact_format(path: str | Path) -> str:
    """``onnx`` | ``litert`` | ``openvino`` | ``keras`` | ``savedmodel`` from an artefact's name.

    Example:
        >>> artefact_format("runs/demo/model.tflite")
        'litert'
    """
    p = Path(path)
    for fmt, suffix in FORMATS.items():
        if suffix and p.suffix == suffix:
            return fmt
    if p.suffix in (".h5", ".hdf5"):
        return "keras"
    if p.suffix in ("", ".savedmodel", ".export") or p.is_dir():
        return "savedmodel"
    raise ModelError(f"{path}: unknown artefact type '{p.suffix}'; use .onnx, .tflite, .xml (OpenVINO), "
                     f".keras/.h5 or a SavedModel folder")


def require(module: str, what: str) -> Any:
    """Import an optional dependency, or raise a ModelError that names the extra to install."""
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"{what} needs the Python package '{_PACKAGE.get(module, module)}', which is not "
                         f"installed; {EXTRA_HINT}")
    return importlib.import_module(module)
