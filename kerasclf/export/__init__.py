"""Deployable models: ONNX / LiteRT / OpenVINO / SavedModel exports that verify themselves, the
runtimes that run them, and TTA / ensembles baked into one Keras model.

The runtime libraries are the optional ``[export]`` extra, imported only when used.

Example:
    >>> from kerasclf.export import export_model, open_model            # doctest: +SKIP
    >>> r = export_model("runs/demo/model.keras", "onnx", calibration="photos/")
    >>> open_model(r.path).predict(images)
"""
from __future__ import annotations

from kerasclf.export.compose import ensemble_model, tta_model
from kerasclf.export.convert import ExportCheckError, ExportResult, calibration_images, convert, export_model, verify_artefact
from kerasclf.export.parity import Thresholds, judge, parity
from kerasclf.export.runtimes import FORMATS, RUNTIMES, ExportedModel, artefact_format, installed, open_model, open_session

__all__ = ["export_model", "convert", "verify_artefact", "calibration_images", "ExportCheckError", "ExportResult",
           "tta_model", "ensemble_model", "parity", "judge", "Thresholds", "open_model", "open_session",
           "ExportedModel", "artefact_format", "installed", "FORMATS", "RUNTIMES"]
