"""The gate every model file passes before kerasclf opens it: nothing beyond computing outputs.

A SavedModel, ``.keras`` / ``.h5`` file, ONNX, LiteRT or OpenVINO artefact is read as data (its
protobuf, zip, HDF5 attributes, flatbuffer or XML) and compared with the allowlists of
:mod:`kerasclf.security.allowlist` *before* TensorFlow, Keras or a runtime loads it. A file that
holds anything else (an op that reads or writes files or runs Python, a layer that loads another
file, an external-data path outside its folder, a custom-op domain ...) is refused with an
:class:`~kerasclf.errors.UnsafeModelError` naming what and where, unless the user trusts its
author: ``trust=True`` (``--trust``), or :func:`trusted` around a block, runs it after a one-line
warning on stderr that names what it allows. Keras ``safe_mode`` stays on either way.

Example:
    >>> from kerasclf.security import scan_model, check_model
    >>> report = scan_model("runs/demo/model.savedmodel")         # doctest: +SKIP
    >>> report.ok, report.format, report.findings                # doctest: +SKIP
    (True, 'savedmodel', ())
    >>> check_model("shared/evil.savedmodel")                     # doctest: +SKIP
    UnsafeModelError: shared/evil.savedmodel: refused: ...
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kerasclf.errors import ModelError, UnsafeModelError
from kerasclf.formats import artefact_format
from kerasclf.security._keras import scan_h5, scan_keras_zip
from kerasclf.security._litert import scan_litert
from kerasclf.security._onnx import scan_onnx
from kerasclf.security._openvino import scan_openvino
from kerasclf.security._savedmodel import scan_savedmodel
from kerasclf.security._findings import Finding, Scan

__all__ = ["Finding", "ScanReport", "scan_model", "check_model", "trusted", "is_trusted", "gate_format"]

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("kerasclf_trust_models", default=False)

#: what each format is called in messages
_LABEL = {"savedmodel": "SavedModel", "keras": ".keras file", "h5": ".h5 file", "onnx": "ONNX model",
          "litert": "LiteRT model", "openvino": "OpenVINO IR"}


@dataclass(frozen=True)
class ScanReport:
    """What :func:`scan_model` found in one model file.

    Attributes:
        path: the file or folder scanned.
        format: ``savedmodel`` | ``keras`` | ``h5`` | ``onnx`` | ``litert`` | ``openvino``.
        findings: everything that is more than computing outputs (empty: the file passes).
        files: the other files it reads, each inside its folder (external data, weights, assets).
        contents: what was inspected, e.g. ``"14 functions, 31 op types"``.
    """

    path: Path
    format: str
    findings: tuple[Finding, ...] = ()
    files: tuple[str, ...] = ()
    contents: str = ""

    @property
    def ok(self) -> bool:
        """Whether the file holds nothing beyond computing its outputs."""
        return not self.findings

    def brief(self, limit: int = 3, *, does: bool = True) -> str:
        """The first ``limit`` findings in one line (``+N more`` for the rest); ``does=False``: where only."""
        shown = "; ".join(str(f) if does else f.place for f in self.findings[:limit])
        more = len(self.findings) - limit
        return shown + (f" (+{more} more)" if more > 0 else "")

    def allows(self) -> str:
        """What running the file anyway allows it to do, e.g. ``"read a file, run Python"``."""
        return ", ".join(dict.fromkeys(f.does for f in self.findings))


def gate_format(path: str | Path) -> str:
    """The gate's format of ``path``: :func:`~kerasclf.formats.artefact_format`, ``.h5`` told apart.

    Example:
        >>> gate_format("m.h5"), gate_format("m.keras"), gate_format("m.onnx")
        ('h5', 'keras', 'onnx')
    """
    fmt = artefact_format(path)
    return "h5" if fmt == "keras" and Path(path).suffix in (".h5", ".hdf5") else fmt


_SCANNERS = {"savedmodel": scan_savedmodel, "keras": scan_keras_zip, "h5": scan_h5, "onnx": scan_onnx,
             "litert": scan_litert, "openvino": scan_openvino}


def scan_model(path: str | Path) -> ScanReport:
    """Read ``path`` as data and list everything in it beyond computing outputs; runs nothing.

    Raises:
        ModelError: the file is missing or is not a valid file of its format.

    Example:
        >>> r = scan_model("model.onnx")                 # doctest: +SKIP
        >>> r.ok, r.findings[0].what                     # doctest: +SKIP
        (False, "external data '../secret.bin' of tensor 'W'")
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model {path} not found; check the path")
    fmt = gate_format(path)
    scan: Scan = _SCANNERS[fmt](path)
    return ScanReport(path=path, format=fmt, findings=tuple(dict.fromkeys(scan.findings)), files=tuple(dict.fromkeys(scan.files)),
                      contents=scan.contents)


@contextlib.contextmanager
def trusted(trust: bool = True) -> Iterator[None]:
    """Within the block, a model file the gate refuses is run after a one-line warning (``--trust``).

    Example:
        >>> with trusted():                                                   # doctest: +SKIP
        ...     predict_paths("shared/model.onnx", ["photos/"])
    """
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def is_trusted() -> bool:
    """Whether the current block runs refused model files (see :func:`trusted`)."""
    return _TRUST.get()


def check_model(path: str | Path, *, trust: bool | None = None) -> ScanReport:
    """The gate: :func:`scan_model`, then refuse a file that does more than compute its outputs.

    Args:
        path: the model file or SavedModel folder about to be opened.
        trust: run a refused file anyway, after a one-line ``warning:`` on stderr naming what it
            allows; ``None``: as the enclosing :func:`trusted` block says (default: refuse).

    Raises:
        UnsafeModelError: the file holds ops, layers or paths outside the allowlists (one line:
            the file, the first findings and where they are, the fix).

    Example:
        >>> check_model("runs/demo/model.keras").ok                     # doctest: +SKIP
        True
    """
    report = scan_model(path)
    if report.ok:
        return report
    trust = is_trusted() if trust is None else trust
    label = _LABEL[report.format]
    if not trust:
        raise UnsafeModelError(
            f"{path}: refused: this {label} does more than compute its outputs: {report.brief()}; "
            f"`kerasclf scan {path}` lists everything; pass --trust (trust=True) only if you trust its author")
    print(f"warning: --trust: running {path}, allowing it to {report.allows()} ({report.brief(3, does=False)}); "
          f"Keras safe_mode stays on", file=sys.stderr)
    return report

