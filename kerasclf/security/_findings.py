"""What a format scanner reports, and the one rule for a path a model file names.

Example:
    >>> str(Finding("op ReadFile", "function serve", "read a file"))
    'op ReadFile in function serve (read a file)'
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

__all__ = ["Finding", "Scan", "outside_folder", "op_does", "OUTSIDE"]


@dataclass(frozen=True)
class Finding:
    """One thing in a model file beyond computing outputs: what it is, where, what it would do.

    Example:
        >>> Finding("layer TFSMLayer 'wrap'", "", "load the SavedModel its 'filepath' names").what
        "layer TFSMLayer 'wrap'"
    """

    what: str
    where: str = ""
    does: str = "do more than pure tensor math: not on kerasclf's allowlist"

    @property
    def place(self) -> str:
        """What and where, without what it would do: ``"op ReadFile in function serve"``."""
        return f"{self.what}{f' in {self.where}' if self.where else ''}"

    def __str__(self) -> str:
        return f"{self.place} ({self.does})"


@dataclass
class Scan:
    """A scanner's result: findings, the other files the model reads, and what was inspected."""

    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    contents: str = ""


#: what the ops a hostile graph uses would do, for the message (the decision is the allowlist's)
OP_DOES = {
    "ReadFile": "read a file", "WriteFile": "write a file", "PrintV2": "print, to a file if it names one",
    "Print": "print", "EagerPyFunc": "run Python", "PyFunc": "run Python", "PyFuncStateless": "run Python",
    "ImmutableConst": "map a file into memory", "MatchingFiles": "list files", "SaveV2": "write a checkpoint file",
    "RestoreV2": "read a checkpoint file", "Save": "write a checkpoint file", "Restore": "read a checkpoint file",
    "SaveSlices": "write a checkpoint file", "RestoreSlice": "read a checkpoint file",
    "MergeV2Checkpoints": "move checkpoint files", "Assert": "raise an error holding tensor values",
    "AssignVariableOp": "change a variable", "StringFormat": "format strings",
}
_DOES_PATTERNS = ((re.compile(r"Dataset|Iterator|Reader|Queue|Record"), "read data from files or queues"),
                  (re.compile(r"File|Dir|Path"), "touch the file system"),
                  (re.compile(r"Summary|Print|Log"), "write logs or summaries"),
                  (re.compile(r"Rpc|Collective|Send|Recv|Socket|Http"), "talk to other processes or machines"))


def op_does(op: str) -> str:
    """What the op ``op`` would do, in words, for a message (unknown ops: not on the allowlist)."""
    if op in OP_DOES:
        return OP_DOES[op]
    for pattern, does in _DOES_PATTERNS:
        if pattern.search(op):
            return does
    return "do more than pure tensor math: not on kerasclf's allowlist"


#: the ``does`` of a finding for a file outside the model's folder
OUTSIDE = "read a file that is not a plain file in the model's folder: {why}"


def outside_folder(folder: Path, name: str) -> str | None:
    """Why the file ``name`` a model names is not a plain file inside ``folder`` (``None``: it is).

    Refused: an empty name, an absolute path (POSIX or Windows), a ``..`` part, a name that
    resolves (symlinks followed) outside ``folder``, and a name that is not an existing regular file.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> outside_folder(d, "../etc/passwd"), outside_folder(d, "/etc/passwd")
        ("a path climbing out with '..'", 'an absolute path')
    """
    if not name:
        return "an empty file name"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or os.path.isabs(name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a path climbing out with '..'"
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, target]) != root:
        return f"a path resolving to {target}, outside {root}"
    if not os.path.isfile(target):
        return "no such file in the model's folder"
    return None
