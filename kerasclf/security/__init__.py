"""Hostile model files: the gate every model file passes before kerasclf opens it.

:func:`check_model` reads a SavedModel, ``.keras`` / ``.h5``, ONNX, LiteRT or OpenVINO file as data
and refuses one that would do more than compute its outputs (read or write files, run Python,
load another file, use a custom-op library ...), naming what and where; ``--trust`` /
``trust=True`` / :func:`trusted` runs it after a one-line warning. :func:`scan_model` reports
without refusing (``kerasclf scan``). The lists are in :mod:`kerasclf.security.allowlist`.

Example:
    >>> from kerasclf.security import check_model, scan_model, trusted
    >>> scan_model("runs/demo/model.keras").ok                  # doctest: +SKIP
    True
"""
from kerasclf.security._savedmodel import savedmodel_op_types
from kerasclf.security.gate import Finding, ScanReport, check_model, gate_format, is_trusted, scan_model, trusted

__all__ = ["Finding", "ScanReport", "check_model", "scan_model", "trusted", "is_trusted", "gate_format",
           "savedmodel_op_types"]
