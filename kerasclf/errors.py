"""Errors a user can cause, each with a message that names the culprit and the fix.

The CLI catches :class:`KerasclfError`, prints ``error: <message>`` on one line and exits 2.

Example:
    >>> from kerasclf.errors import UnknownNameError
    >>> str(UnknownNameError("model", "simple_cn", ["simple_cnn"]))
    "unknown model 'simple_cn'; did you mean: simple_cnn? (run `kerasclf zoo` to list them)"
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "KerasclfError",
    "ConfigError",
    "DataError",
    "ModelError",
    "UnsafeModelError",
    "RunExistsError",
    "UnknownNameError",
    "BackendError",
]


class KerasclfError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(KerasclfError):
    """A recipe, key or option is wrong (unknown key, bad value, bad type)."""


class DataError(KerasclfError):
    """Input data is missing, empty or unusable."""


class ModelError(KerasclfError):
    """A model file or model option is wrong (bad file, class-count mismatch, weights)."""


class UnsafeModelError(ModelError):
    """A model file would do more than compute its outputs (read or write files, run Python, load
    another file); refused by :mod:`kerasclf.security` unless the user trusts its author (``--trust``)."""


class BackendError(KerasclfError):
    """A feature needs a backend (TensorFlow) that is not the active Keras backend."""


class RunExistsError(KerasclfError):
    """A run folder exists and would be overwritten."""

    def __init__(self, path: str):
        super().__init__(
            f"run folder {path} already exists; pass --overwrite to replace it "
            f"or choose another --name"
        )


class UnknownNameError(ConfigError):
    """A name (model, optimizer, policy, key ...) is not one we know; lists close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str | None = None):
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
        msg = f"unknown {kind} '{name}'"
        if close:
            msg += f"; did you mean: {', '.join(close)}?"
        else:
            shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            msg += f"; known: {shown}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.name = name
        self.known = known
