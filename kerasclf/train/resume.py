"""What ``--resume`` needs beyond Keras's BackupAndRestore: the recipe and the labels (review
decisions included) must be the ones the run started with, and the best monitored value so far
comes back from ``history.csv``. The training data needs nothing: epoch ``e`` reads pass ``e``,
keyed by its number (:func:`kerasclf.data.pipeline.make_passes`).

Example:
    >>> check_same_recipe(Path("runs/demo"), "name: demo\\n")      # doctest: +SKIP
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import yaml

from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import read_manifest
from kerasclf.errors import ConfigError
from kerasclf.train.recipe import recipe_changes

__all__ = ["check_same_recipe", "check_same_data", "best_so_far", "backup_epoch"]


def check_same_recipe(run_dir: Path, recipe_yaml: str) -> None:
    """Refuse to resume a run whose saved ``recipe.yaml`` differs from the recipe given now.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = (d / "recipe.yaml").write_text("a: {b: 1}")
        >>> check_same_recipe(d, "a: {b: 2}")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kerasclf.errors.ConfigError: --resume: the recipe changed since ... started (a.b: 1 -> 2); ...
    """
    saved_path = run_dir / "recipe.yaml"
    if not saved_path.is_file():
        return
    changed = recipe_changes(yaml.safe_load(saved_path.read_text()) or {}, yaml.safe_load(recipe_yaml) or {})
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise ConfigError(f"--resume: the recipe changed since {run_dir} started ({', '.join(changed[:3])}{more}); "
                          f"resume with the recipe in {saved_path}, or start over with --overwrite")


def check_same_data(run_dir: Path, spec: DataSpec) -> None:
    """Refuse to resume on data whose labels or exclusions differ from the run's ``split.csv``
    (a decisions file edited since the run started, images moved between class folders).

    Example:
        >>> check_same_data(Path("runs/demo"), recipe.data.load_spec())    # doctest: +SKIP
    """
    if (run_dir / "split.csv").is_file():
        read_manifest(run_dir / "split.csv", spec, same_labels=True)


def best_so_far(run_dir: Path, monitor: str, mode: str) -> float | None:
    """The best ``monitor`` value in the run's ``history.csv`` (``None`` when there is none yet)."""
    path = run_dir / "history.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor) not in (None, "")]
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def backup_epoch(backup: Path) -> int:
    """Epochs finished according to Keras's BackupAndRestore metadata in ``backup`` (0 if none)."""
    meta = backup / "training_metadata.json"
    if not meta.is_file():
        return 0
    return int(json.loads(meta.read_text()).get("epoch", 0))
