"""Review decisions: a ``decisions.csv`` log that relabels and excludes images at split time.

``kerasclf review`` writes one row per key press (:func:`append_decisions`, the one writer): the
image's ``path``, the ``action`` (``relabel``, ``exclude``, ``keep``, or ``undo``, which takes back
the path's previous decision), the ``new_label`` of a relabel, the ``reason`` the image was shown
(label issue, conflict, duplicate, OOD, top loss) and the ``time``. The file is only ever appended
to, so it is also the history of the review. The user's images are never moved or changed:
``data.decisions: PATH`` in a recipe (``--decisions PATH`` on ``train``, ``audit``, ``check``,
``compare``) applies the file when the data is loaded (:func:`apply_decisions`), before the split;
the split manifest keeps each image's given label beside the one used.

Example:
    >>> import tempfile, pathlib
    >>> from kerasclf.data.spec import DataSpec
    >>> spec = DataSpec(class_names=["cat", "dog"], labels=np.array([0, 0, 1]), paths=["a.jpg", "b.jpg", "c.jpg"])
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "decisions.csv"
    >>> _ = append_decisions(log, [{"path": "a.jpg", "action": "relabel", "new_label": "dog"},
    ...                            {"path": "c.jpg", "action": "exclude"}])
    >>> used = apply_decisions(spec, log)
    >>> used.paths, used.labels.tolist(), used.given_labels.tolist(), used.excluded
    (['a.jpg', 'b.jpg'], [1, 0], [0, 0], [('c.jpg', 'dog')])
"""
from __future__ import annotations

import csv
import dataclasses
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import EXCLUDED, label_text, match_ids
from kerasclf.errors import DataError

__all__ = ["COLUMNS", "ACTIONS", "Decision", "read_decisions", "current_decisions", "append_decisions",
           "apply_decisions", "decision_counts", "manifest_decisions"]

#: the columns of ``decisions.csv``, in order
COLUMNS = ("path", "action", "new_label", "reason", "time")
#: what a row can say; ``undo`` takes back the previous decision on the same path
ACTIONS = ("relabel", "exclude", "keep", "undo")

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Decision:
    """One row of ``decisions.csv`` (``row``: its line in the file, the header being line 1)."""

    path: str
    action: str
    new_label: str = ""
    reason: str = ""
    time: str = ""
    row: int = 0

    def to_row(self) -> dict[str, str]:
        """The CSV row (the :data:`COLUMNS`)."""
        return {c: getattr(self, c) for c in COLUMNS}


def _checked(raw: Mapping[str, Any], where: str) -> Decision:
    """A :class:`Decision` from a mapping, or a one-line :class:`DataError` naming ``where``."""
    path = str(raw.get("path") or "").strip()
    action = str(raw.get("action") or "").strip().lower()
    new_label = str(raw.get("new_label") or "").strip()
    if not path:
        raise DataError(f"{where}: no path; every decision names the image it is about")
    if action not in ACTIONS:
        raise DataError(f"{where}: unknown action {action!r} for {path}; use one of {', '.join(ACTIONS)}")
    if action == "relabel" and not new_label:
        raise DataError(f"{where}: relabel of {path} gives no new_label; give the class it belongs to")
    return Decision(path=path, action=action, new_label=new_label if action == "relabel" else "",
                    reason=str(raw.get("reason") or ""), time=str(raw.get("time") or ""))


def read_decisions(path: PathLike) -> list[Decision]:
    """Every row of a decisions file, in order (the file as written, undo rows included).

    Raises:
        DataError: the file is missing, lacks the ``path`` / ``action`` columns, or a row has an
            unknown action or a relabel without ``new_label`` (the message names file and row).

    Example:
        >>> read_decisions("review/decisions.csv")[0].action    # doctest: +SKIP
        'relabel'
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such decisions file; give the decisions.csv that `kerasclf review` wrote")
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", "action") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: not a decisions file (no {' / '.join(missing)} column; expected "
                            f"{','.join(COLUMNS)})")
        for raw in reader:
            if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
                continue  # a blank line
            d = _checked(raw, f"{path} row {reader.line_num}")
            out.append(dataclasses.replace(d, row=reader.line_num))
    return out


def current_decisions(decisions: Iterable[Decision], key: Any = None) -> dict[Any, Decision]:
    """The decision in force for each path: the rows replayed in order, ``undo`` taking back the
    path's previous one (a path whose decisions were all undone has none).

    ``key`` maps a decision to what identifies its image (default: its ``path``).

    Example:
        >>> rows = [Decision("a.jpg", "exclude"), Decision("a.jpg", "keep"), Decision("a.jpg", "undo")]
        >>> current_decisions(rows)["a.jpg"].action
        'exclude'
    """
    key = key or (lambda d: d.path)
    stacks: dict[Any, list[Decision]] = defaultdict(list)
    for d in decisions:
        stack = stacks[key(d)]
        if d.action == "undo":
            if stack:
                stack.pop()
        else:
            stack.append(d)
    return {k: v[-1] for k, v in stacks.items() if v}


def append_decisions(path: PathLike, rows: Iterable[Mapping[str, Any] | Decision]) -> list[Decision]:
    """Append decisions to ``path`` (made with its header when new); the one writer of decisions.

    An existing file is never rewritten: rows are added at its end. ``time`` defaults to now (UTC,
    ISO 8601).

    Returns:
        The rows written.

    Raises:
        DataError: a row without a path, with an unknown action or a relabel without a label;
            ``path`` exists but is not a decisions file. Nothing is written then.

    Example:
        >>> append_decisions("review/decisions.csv", [{"path": "cat/1.jpg", "action": "exclude",
        ...                                             "reason": "ood"}])   # doctest: +SKIP
    """
    path = Path(path)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    checked = []
    for n, raw in enumerate(rows, 1):
        d = _checked(raw.to_row() if isinstance(raw, Decision) else raw, f"decision {n} for {path}")
        checked.append(dataclasses.replace(d, time=d.time or now))
    exists = path.is_file() and path.stat().st_size > 0
    if exists:
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if list(header) != list(COLUMNS):
            raise DataError(f"{path}: exists and is not a decisions file (header {','.join(header)[:80]}); "
                            f"move it away or choose another folder")
        with path.open("rb") as f:  # a last line without its newline (edited by hand) gets one
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) not in (b"\n", b"\r")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as f:
        if exists and needs_newline:
            f.write("\r\n")
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        if not exists:
            w.writeheader()
        w.writerows(d.to_row() for d in checked)
    return checked


def apply_decisions(spec: DataSpec, paths: PathLike | Sequence[PathLike]) -> DataSpec:
    """``spec`` with the decisions of ``paths`` (one file or several, applied in order) in force.

    A relabelled image takes its new label, an excluded one leaves the data (listed in
    ``spec.excluded``), a kept one stays as it was; ``spec.given_labels`` keeps the labels the
    source gave (across several files too). Every row is checked, undone ones included.

    Raises:
        DataError: a file is missing or malformed, a row names an image that is not in the data, or
            relabels to a class the data does not have, or relabels multi-label data; the message
            names the file and row.

    Example:
        >>> used = apply_decisions(spec, "review/decisions.csv")   # doctest: +SKIP
        >>> int((used.labels != used.given_labels).sum())          # doctest: +SKIP
        12
    """
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        spec = _apply_file(spec, Path(p))
    return spec


def _apply_file(spec: DataSpec, path: Path) -> DataSpec:
    rows = read_decisions(path)
    pos, unknown = match_ids([d.path for d in rows], spec.ids())
    if unknown:
        bad = next(d for d in rows if d.path in set(unknown))
        more = f" ({len(unknown)} paths in all)" if len(unknown) > 1 else ""
        raise DataError(f"{path} row {bad.row}: {bad.path} is not in the data ({spec.source}){more}; "
                        f"delete the row, or give the decisions of this data")
    index = {c: i for i, c in enumerate(spec.class_names)}
    for d in rows:
        if d.action == "relabel" and spec.labels.ndim == 2:
            raise DataError(f"{path} row {d.row}: relabel needs one label per image and {spec.source} is "
                            f"multi-label; use exclude, or fix the label file")
        if d.action == "relabel" and d.new_label not in index:
            raise DataError(f"{path} row {d.row}: unknown class {d.new_label!r} for {d.path}; the classes are "
                            f"{', '.join(spec.class_names)}")
    given = spec.given_labels if spec.given_labels is not None else spec.labels.copy()
    labels = spec.labels.copy()
    drop = set()
    for i, d in current_decisions(rows, key=lambda d: pos[d.path]).items():
        if d.action == "relabel":
            labels[i] = index[d.new_label]
        elif d.action == "exclude":
            drop.add(i)
    decided = dataclasses.replace(spec, labels=labels, given_labels=given)
    ids, as_given = spec.ids(), dataclasses.replace(spec, labels=given)
    gone = [(ids[i], label_text(as_given, i)) for i in sorted(drop)]
    out = decided.subset(np.array([i for i in range(len(spec)) if i not in drop], dtype=int))
    out.excluded = list(spec.excluded) + gone
    return out


def decision_counts(spec: DataSpec) -> dict[str, int]:
    """``{"relabelled": n, "excluded": m}``: what decisions changed in ``spec`` (zeros when none).

    Example:
        >>> decision_counts(DataSpec(class_names=["a"], labels=np.zeros(2, int), paths=["x", "y"]))
        {'relabelled': 0, 'excluded': 0}
    """
    if spec.given_labels is None:
        return {"relabelled": 0, "excluded": len(spec.excluded)}
    changed = np.asarray(spec.labels != spec.given_labels).reshape(len(spec), -1).any(axis=1)
    return {"relabelled": int(changed.sum()), "excluded": len(spec.excluded)}


def manifest_decisions(manifest: PathLike) -> dict[str, int] | None:
    """What review decisions changed in a run, read from its ``split.csv``: ``{"relabelled",
    "excluded"}``, or ``None`` when no decisions were applied (no ``given_label`` column).

    Example:
        >>> manifest_decisions("runs/flowers/split.csv")    # doctest: +SKIP
        {'relabelled': 12, 'excluded': 3}
    """
    with Path(manifest).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "given_label" not in (reader.fieldnames or []):
            return None
        rows = list(reader)
    excluded = sum(r["split"] == EXCLUDED for r in rows)
    relabelled = sum(r["split"] != EXCLUDED and r["label"] != r["given_label"] for r in rows)
    return {"relabelled": relabelled, "excluded": excluded}
