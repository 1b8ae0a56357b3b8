"""OpenVINO IR (``.xml`` + ``.bin``): the XML read with the standard library's expat parser (no
DTD, no entities, so no expansion bomb and no external entity) before OpenVINO sees it.

- every layer must come from a standard opset (``version="opsetN"``,
  :data:`~kerasclf.security.allowlist.OPENVINO_OPSET`): a layer of an extension's opset needs an
  extension library;
- the weights OpenVINO reads, ``<name>.bin``, must be a plain file beside the ``.xml`` (not a
  link to a file elsewhere).

Example:
    >>> scan_openvino(Path("runs/demo/model.xml")).findings         # doctest: +SKIP
    []
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any
from xml.parsers import expat

from kerasclf.errors import ModelError
from kerasclf.security._findings import OUTSIDE, Finding, Scan, outside_folder
from kerasclf.security.allowlist import OPENVINO_OPSET

__all__ = ["scan_openvino"]

_OPSET = re.compile(OPENVINO_OPSET)
_XML_LIMIT = 512 * 2**20  # an IR's XML describes the graph; the weights are in the .bin


class _Refused(Exception):
    """A DTD or entity in the XML (expat would otherwise expand it)."""


def _layers(path: Path) -> list[dict[str, Any]]:
    """The attributes of every ``<layer>`` of the IR at ``path``."""
    if path.stat().st_size > _XML_LIMIT:
        raise ModelError(f"{path}: {path.stat().st_size / 2**20:.0f} MB of XML is not an OpenVINO IR")
    layers: list[dict[str, Any]] = []
    parser = expat.ParserCreate()

    def refuse(*_: Any) -> None:
        raise _Refused()

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = lambda tag, attrs: layers.append(dict(attrs)) if tag == "layer" else None
    try:
        with path.open("rb") as f:
            parser.ParseFile(f)
    except _Refused:
        raise ModelError(f"{path}: an XML document type declaration (DTD/entities); an OpenVINO IR has none, "
                         f"so it is refused") from None
    except expat.ExpatError as exc:
        raise ModelError(f"{path}: not a readable OpenVINO IR ({exc}); export it again") from None
    return layers


def scan_openvino(path: Path) -> Scan:
    """The :class:`Scan` of the OpenVINO IR ``path`` (see the module docstring)."""
    scan = Scan()
    layers = _layers(path)
    ops: Counter[str] = Counter()
    for layer in layers:
        version, kind = str(layer.get("version", "")), str(layer.get("type", ""))
        ops[kind] += 1
        if not _OPSET.fullmatch(version):
            scan.findings.append(Finding(f"layer {kind} '{layer.get('name', '')}' of opset '{version}'", "",
                                         "need an extension library"))
    weights = path.with_suffix(".bin")
    if weights.exists() or weights.is_symlink():
        why = outside_folder(path.resolve().parent, weights.name)
        if why:
            scan.findings.append(Finding(f"weights file {weights.name}", "", OUTSIDE.format(why=why)))
        else:
            scan.files.append(weights.name)
    elif ops.get("Const"):
        raise ModelError(f"{path}: its weights file {weights.name} is missing; an OpenVINO IR's .bin must sit "
                         f"beside its .xml")
    scan.contents = f"{len(layers)} layers: {', '.join(f'{k} x{v}' for k, v in sorted(ops.items()))}"
    return scan
