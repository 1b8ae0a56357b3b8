"""ONNX: the protobuf read with ``onnx.load(path, load_external_data=False)``, so no external file is
opened while checking.

- every operator domain (``opset_import``, each node of the graph, its subgraphs and local
  functions) must be the standard one or ``ai.onnx.ml``
  (:data:`~kerasclf.security.allowlist.ONNX_DOMAINS`): no custom-op library;
- every tensor stored as external data (initializers, sparse initializers, attribute tensors, in
  subgraphs and functions too) must name an existing plain file inside the model's folder (no
  absolute path, no ``..``, no link leading out, no runtime-special location).

Example:
    >>> scan_onnx(Path("runs/demo/model.onnx")).findings          # doctest: +SKIP
    []
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kerasclf.errors import ModelError
from kerasclf.formats import require
from kerasclf.security._findings import OUTSIDE, Finding, Scan, outside_folder
from kerasclf.security.allowlist import ONNX_DOMAINS

__all__ = ["scan_onnx"]


def _graphs(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    """``graph`` and every subgraph inside its nodes' attributes (If / Loop / Scan bodies)."""
    yield graph, where
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g, f"{where} > {node.op_type} '{node.name}'")
            for g in attr.graphs:
                yield from _graphs(g, f"{where} > {node.op_type} '{node.name}'")


def _tensors(nodes: Any, initializers: Any = (), sparse: Any = ()) -> Iterator[Any]:
    """The tensors that may hold external data: initializers and the nodes' attribute tensors."""
    yield from initializers
    for s in sparse:
        yield s.values
        yield s.indices
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for s in attr.sparse_tensors:
                yield s.values
                yield s.indices


def _external(tensor: Any, folder: Path, where: str, scan: Scan) -> None:
    if tensor.data_location != 1:  # TensorProto.EXTERNAL
        return
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    why = outside_folder(folder, location)
    if why:
        scan.findings.append(Finding(f"external data '{location}' of tensor '{tensor.name}'", where,
                                     OUTSIDE.format(why=why)))
    else:
        scan.files.append(location)
    if entries.get("basepath"):
        scan.findings.append(Finding(f"external data basepath '{entries['basepath']}' of tensor '{tensor.name}'",
                                     where, "read its data relative to another folder"))


def scan_onnx(path: Path) -> Scan:
    """The :class:`Scan` of the ONNX file ``path`` (see the module docstring)."""
    onnx = require("onnx", f"checking the ONNX model {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors on a file that is not ONNX
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                         f"{str(exc).strip()[:200]})") from None
    if not model.HasField("graph"):
        raise ModelError(f"{path}: not an ONNX model (no graph in the file); export it again")
    scan = Scan()
    folder = path.resolve().parent
    for imp in model.opset_import:
        if imp.domain not in ONNX_DOMAINS:
            scan.findings.append(Finding(f"operator domain '{imp.domain}'", "opset_import",
                                         "need a custom-op library"))
    roots = [(model.graph, "the graph")] + [(fn, f"local function {fn.domain}.{fn.name}") for fn in model.functions]
    for fn in model.functions:
        if fn.domain not in ONNX_DOMAINS:
            scan.findings.append(Finding(f"function domain '{fn.domain}'", f"local function {fn.name}",
                                         "define ops outside the standard"))
    n_nodes = 0
    for root, root_where in roots:
        for graph, where in _graphs(root, root_where):
            n_nodes += len(graph.node)
            for node in graph.node:
                if node.domain not in ONNX_DOMAINS:
                    scan.findings.append(Finding(f"op {node.domain}.{node.op_type}", where, "need a custom-op library"))
            for tensor in _tensors(graph.node, getattr(graph, "initializer", ()), getattr(graph, "sparse_initializer", ())):
                _external(tensor, folder, where, scan)
    opsets = ", ".join(f"{i.domain or 'ai.onnx'} {i.version}" for i in model.opset_import)
    scan.contents = f"{n_nodes} nodes, opsets {opsets}"
    return scan
