"""SavedModel: every node of each MetaGraph's graph and of every function in its library, read from
``saved_model.pb`` (with TensorFlow's own parser, the one its loader uses) before anything loads.

- the graph may hold pure ops, function calls, and the bookkeeping of its own variables
  (:data:`~kerasclf.security.allowlist.TF_GRAPH_OPS`);
- a function may hold pure ops and variable reads (``TF_FUNCTION_OPS``), except
- the save/restore functions that ``saver_def`` names (and that nothing else calls), which may also
  hold the checkpoint ops (``TF_SAVER_OPS``) on paths built only from their file-prefix argument;
- every function an op calls must be one of the file's own;
- every asset file must sit inside the SavedModel's ``assets/`` folder.

Example:
    >>> scan_savedmodel(Path("runs/demo/model.savedmodel")).findings      # doctest: +SKIP
    []
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.text_format import ParseError
from tensorflow.python.saved_model import loader_impl

from kerasclf.errors import ModelError
from kerasclf.security._findings import OUTSIDE, Finding, Scan, op_does, outside_folder
from kerasclf.security.allowlist import TF_FUNCTION_OPS, TF_GRAPH_OPS, TF_SAVER_OPS, TF_SAVER_PATH_OPS

__all__ = ["scan_savedmodel", "savedmodel_op_types", "parse"]

#: checkpoint ops and the inputs that are paths (input index -> name)
_PATH_INPUTS = {"SaveV2": (0,), "RestoreV2": (0,), "MergeV2Checkpoints": (0, 1)}


def parse(path: Path) -> Any:
    """The ``SavedModel`` protobuf of the folder ``path``, as TensorFlow's loader reads it."""
    try:
        return loader_impl.parse_saved_model(str(path))
    except (OSError, DecodeError, ParseError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: not a readable SavedModel folder ({first}); give the folder that holds "
                         f"saved_model.pb") from None


def savedmodel_op_types(path: Path) -> set[str]:
    """Every op type in the SavedModel at ``path`` (graph and functions).

    Example:
        >>> "Conv2D" in savedmodel_op_types(Path("runs/demo/model.savedmodel"))   # doctest: +SKIP
        True
    """
    return _op_types(parse(path))


def _op_types(saved: Any) -> set[str]:
    found: set[str] = set()
    for mg in saved.meta_graphs:
        found.update(n.op for n in mg.graph_def.node)
        found.update(n.op for f in mg.graph_def.library.function for n in f.node_def)
    return found


def _called(node: Any) -> list[str]:
    """The names of the functions a node's attributes call (``f``, ``then_branch``, ``body`` ...)."""
    names: list[str] = []
    todo = [a for a in node.attr.values() if a.WhichOneof("value") in ("func", "list")]
    while todo:
        attr = todo.pop()
        if attr.WhichOneof("value") == "func":
            names.append(attr.func.name)
            todo.extend(attr.func.attr.values())
        elif attr.WhichOneof("value") == "list":
            for fn in attr.list.func:
                names.append(fn.name)
                todo.extend(fn.attr.values())
    return names


def _reach(roots: Iterable[str], calls: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in calls]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(c for c in calls[name] if c in calls and c not in seen)
    return seen


def _object_graph_functions(mg: Any) -> set[str]:
    """Functions the object graph exposes to Python (``model.serve``, resource initialisers ...)."""
    names = set(mg.object_graph_def.concrete_functions.keys())
    for obj in mg.object_graph_def.nodes:
        kind = obj.WhichOneof("kind")
        if kind == "function":
            names.update(obj.function.concrete_functions)
        elif kind == "bare_concrete_function":
            names.add(obj.bare_concrete_function.concrete_function_name)
    return names


def _path_problem(ref: str, args: set[str], nodes: dict[str, Any], depth: int = 0) -> str | None:
    """Why the checkpoint path fed by ``ref`` is not built from the function's arguments only."""
    name = ref.lstrip("^").split(":")[0]
    if name in args:
        return None
    node = nodes.get(name)
    if node is None or depth > 50:
        return f"a path from '{name}'"
    if node.op == "Const":
        for value in node.attr["value"].tensor.string_val:
            text = value.decode("utf-8", "replace")
            if text.startswith(("/", "\\")) or ".." in text.replace("\\", "/").split("/"):
                return f"a path holding '{text[:80]}'"
        return None
    if node.op not in TF_SAVER_PATH_OPS:
        return f"a path computed by {node.op}"
    for inp in node.input:
        if not inp.startswith("^"):
            problem = _path_problem(inp, args, nodes, depth + 1)
            if problem:
                return problem
    return None


def _scan_nodes(nodes: list[tuple[Any, list[str]]], allowed: frozenset[str] | set[str], where: str,
                library: dict[str, Any], findings: list[Finding]) -> None:
    for node, called in nodes:
        if node.op not in allowed:
            findings.append(Finding(f"op {node.op}", where, op_does(node.op)))
        for fn in called:
            if fn not in library:
                findings.append(Finding(f"op {node.op} calling '{fn}'", where,
                                        "call something that is not one of the file's own functions"))


def _scan_meta_graph(mg: Any, findings: list[Finding]) -> int:
    """Check one MetaGraph; returns the number of functions it holds."""
    graph = mg.graph_def
    lib = {f.signature.name: f for f in graph.library.function}
    graph_nodes = [(n, _called(n)) for n in graph.node]
    fn_nodes = {name: [(n, _called(n)) for n in f.node_def] for name, f in lib.items()}
    calls = {name: {c for _, called in nodes for c in called} for name, nodes in fn_nodes.items()}
    saver_nodes = {t.split(":")[0].lstrip("^") for t in (mg.saver_def.save_tensor_name, mg.saver_def.restore_op_name) if t}
    saver_roots = {c for n, called in graph_nodes if n.name in saver_nodes for c in called}
    saver = _reach(saver_roots, calls)
    other_roots = ({c for n, called in graph_nodes if n.name not in saver_nodes for c in called}
                   | _object_graph_functions(mg) | (set(lib) - saver))
    saver_only = saver - _reach(other_roots, calls)
    _scan_nodes(graph_nodes, TF_GRAPH_OPS, "the graph", lib, findings)
    for name, fdef in lib.items():
        where = f"function {name}"
        if name not in saver_only:
            _scan_nodes(fn_nodes[name], TF_FUNCTION_OPS, where, lib, findings)
            continue
        _scan_nodes(fn_nodes[name], TF_SAVER_OPS, where, lib, findings)
        args = {a.name for a in fdef.signature.input_arg}
        nodes = {n.name: n for n in fdef.node_def}
        for node in fdef.node_def:
            for i in _PATH_INPUTS.get(node.op, ()):
                problem = _path_problem(node.input[i], args, nodes) if i < len(node.input) else "no path"
                if problem:
                    findings.append(Finding(f"op {node.op} on {problem}", where,
                                            f"{op_does(node.op)} outside the SavedModel's variables"))
    return len(lib)


def scan_savedmodel(path: Path) -> Scan:
    """The :class:`Scan` of the SavedModel folder ``path`` (see the module docstring)."""
    saved = parse(path)
    scan = Scan()
    n_functions = 0
    for mg in saved.meta_graphs:
        n_functions += _scan_meta_graph(mg, scan.findings)
        for asset in mg.asset_file_def:
            why = outside_folder(path / "assets", asset.filename)
            if why:
                scan.findings.append(Finding(f"asset file '{asset.filename}'", "", OUTSIDE.format(why=why)))
            else:
                scan.files.append(f"assets/{asset.filename}")
    ops = _op_types(saved)
    scan.contents = (f"{len(saved.meta_graphs)} MetaGraph(s), {n_functions} functions, {len(ops)} op types: "
                     f"{', '.join(sorted(ops))}")
    return scan
