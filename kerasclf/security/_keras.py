"""``.keras`` zips and ``.h5`` files: the archive's entries and the model config, read as data
before Keras opens the file.

- a ``.keras`` zip may hold only Keras's own entries (:data:`~kerasclf.security.allowlist.KERAS_ZIP_NAMES`,
  files under ``assets/``) and kerasclf's metadata; an absolute name, a ``..`` part, a link or
  a name given twice is refused;
- in the config (``config.json``, or the ``model_config`` / ``training_config`` attributes of an
  ``.h5``): no class that loads another file, unpickles or runs Python
  (:data:`~kerasclf.security.allowlist.KERAS_REFUSED_CLASSES`, a ``Lambda`` holding bytecode),
  no lookup layer whose vocabulary is a file path, and functions only from Keras's modelling
  modules or the registered custom objects. Keras ``safe_mode`` refuses most of these too; the gate
  names them first, for every Keras version kerasclf supports.

Example:
    >>> scan_keras_zip(Path("runs/demo/model.keras")).findings     # doctest: +SKIP
    []
"""
from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path, PureWindowsPath
from typing import Any

import h5py
import keras

from kerasclf.errors import ModelError
from kerasclf.security._findings import Finding, Scan
from kerasclf.security.allowlist import (
    KERAS_FUNCTION_MODULES,
    KERAS_REFUSED_CLASSES,
    KERAS_VOCABULARY_CLASSES,
    KERAS_ZIP_FOLDERS,
    KERAS_ZIP_NAMES,
)

__all__ = ["scan_keras_zip", "scan_h5", "scan_config"]

_CONFIG_LIMIT = 64 * 2**20  # a model config over 64 MB is not one Keras wrote


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "a path climbing out with '..'"
    if "\\" in name:
        return "a Windows path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if name not in KERAS_ZIP_NAMES and not name.startswith(KERAS_ZIP_FOLDERS):
        return "not an entry Keras writes (config.json, metadata.json, model.weights.h5/.npz, assets/...)"
    return None


def scan_keras_zip(path: Path) -> Scan:
    """The :class:`Scan` of a ``.keras`` zip (see the module docstring)."""
    scan = Scan()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            for info in infos:
                why = _entry_problem(info)
                if why:
                    scan.findings.append(Finding(f"zip entry '{info.filename}'", "", f"smuggle a file into the archive: {why}"))
            for twice in sorted({n for n in names if names.count(n) > 1}):
                scan.findings.append(Finding(f"zip entry '{twice}' given twice", "",
                                             "show a checker one file and Keras another"))
            if "config.json" not in names:
                raise ModelError(f"{path}: a .keras file without config.json; is it a complete .keras file saved "
                                 f"by Keras 3?")
            info = zf.getinfo("config.json")
            if info.file_size > _CONFIG_LIMIT:
                raise ModelError(f"{path}: its config.json is {info.file_size / 2**20:.0f} MB; not a Keras model config")
            config = json.loads(zf.read(info))
            scan.files.extend(n for n in names if n.startswith(KERAS_ZIP_FOLDERS) and not n.endswith("/"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read this model file ({type(exc).__name__}: {exc}); "
                         f"is it a complete .keras/.h5 file saved by Keras 3?") from None
    scan.contents = scan_config(config, scan.findings)
    return scan


def scan_h5(path: Path) -> Scan:
    """The :class:`Scan` of an ``.h5`` model: its ``model_config`` and ``training_config`` attributes."""
    scan = Scan()
    counted = []
    try:
        with h5py.File(path, "r") as f:
            for key in ("model_config", "training_config"):
                if key in f.attrs:
                    text = f.attrs[key]
                    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
                    if len(text) > _CONFIG_LIMIT:
                        raise ModelError(f"{path}: its {key} is {len(text) / 2**20:.0f} MB; not a Keras model config")
                    counted.append(scan_config(json.loads(text), scan.findings))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read this model file ({type(exc).__name__}: {exc}); "
                         f"is it a complete .keras/.h5 file saved by Keras 3?") from None
    scan.contents = "; ".join(counted) or "no model_config (weights only)"
    return scan


def _registered(name: Any) -> bool:
    return isinstance(name, str) and keras.saving.get_registered_object(name) is not None


def _object_findings(obj: dict[str, Any]) -> list[Finding]:
    """What one serialised object (``{"class_name": ..., "config": ...}``) would do beyond computing."""
    cls, raw = str(obj.get("class_name")), obj.get("config")
    config = raw if isinstance(raw, dict) else {}
    name = f" '{config['name']}'" if isinstance(config.get("name"), str) else ""
    if cls in KERAS_REFUSED_CLASSES:
        return [Finding(f"{'layer ' if cls != '__lambda__' else ''}{cls}{name}", "the model config",
                        KERAS_REFUSED_CLASSES[cls])]
    fn = config.get("function")
    if cls == "Lambda" and (config.get("function_type") == "lambda" or isinstance(fn, (list, str))
                            or (isinstance(fn, dict) and fn.get("class_name") == "__lambda__")):
        return [Finding(f"layer Lambda{name}", "the model config", "run Python bytecode stored in the file")]
    if cls in KERAS_VOCABULARY_CLASSES and isinstance(config.get("vocabulary"), str):
        return [Finding(f"layer {cls}{name} with vocabulary '{config['vocabulary'][:80]}'", "the model config",
                        "read the file its vocabulary names")]
    if cls == "function":
        module = obj.get("module")
        if module not in KERAS_FUNCTION_MODULES and not (_registered(obj.get("registered_name")) or _registered(raw)):
            return [Finding(f"function {module}.{raw}", "the model config",
                            "call a function that is not a Keras activation, loss, metric or op")]
    return []


def scan_config(config: Any, findings: list[Finding]) -> str:
    """Walk a Keras config (nested dicts and lists), adding to ``findings``; returns what was seen."""
    classes = 0
    todo = [config]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found = _object_findings(item) if "class_name" in item else []
            classes += "class_name" in item
            findings.extend(found)
            if not found:  # a refused object's inside (a Lambda's bytecode) is not listed again
                todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return f"a model config of {classes} Keras objects"
