"""LiteRT (``.tflite``): the flatbuffer's operator codes, read with the LiteRT schema before any
interpreter sees the file.

- builtin operators only: a custom operator, and a Flex operator (a TensorFlow kernel such as
  ``FlexReadFile`` run through the Flex delegate), is refused;
- external buffer files (newer schemas) must be plain files inside the model's folder.

Example:
    >>> scan_litert(Path("runs/demo/model.tflite")).findings       # doctest: +SKIP
    []
"""
from __future__ import annotations

import struct
from pathlib import Path

from tensorflow.lite.python import schema_py_generated as schema

from kerasclf.errors import ModelError
from kerasclf.security._findings import OUTSIDE, Finding, Scan, outside_folder

__all__ = ["scan_litert"]

_BUILTIN = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def scan_litert(path: Path) -> Scan:
    """The :class:`Scan` of the LiteRT file ``path`` (see the module docstring)."""
    buf = path.read_bytes()
    if len(buf) < 8 or not schema.Model.ModelBufferHasIdentifier(buf, 0):
        raise ModelError(f"{path}: not a LiteRT model (no TFL3 flatbuffer identifier); export it again")
    scan = Scan()
    try:
        model = schema.Model.GetRootAs(buf, 0)
        names = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = (code.CustomCode() or b"").decode("utf-8", "replace")
            if op == schema.BuiltinOperator.CUSTOM or custom:
                flex = custom.startswith("Flex")
                scan.findings.append(Finding(f"{'Flex' if flex else 'custom'} op '{custom or '?'}'", "operator codes",
                                             f"run {'a TensorFlow kernel (' + custom[4:] + ')' if flex else 'code'} "
                                             f"outside LiteRT's builtin operators"))
            elif op not in _BUILTIN:
                scan.findings.append(Finding(f"operator code {op}", "operator codes",
                                             "run an operator this LiteRT schema does not know"))
            else:
                names.append(_BUILTIN[op])
        for i in range(model.ExternalBufferGroupsLength()):
            name = (model.ExternalBufferGroups(i).Name() or b"").decode("utf-8", "replace")
            why = outside_folder(path.resolve().parent, name)
            if why:
                scan.findings.append(Finding(f"external buffer file '{name}'", "", OUTSIDE.format(why=why)))
            else:
                scan.files.append(name)
        scan.contents = f"{model.SubgraphsLength()} subgraph(s), builtin operators: {', '.join(sorted(names))}"
    except (IndexError, struct.error, UnicodeDecodeError, TypeError) as exc:
        raise ModelError(f"{path}: a damaged LiteRT flatbuffer ({type(exc).__name__}); export it again") from None
    return scan
