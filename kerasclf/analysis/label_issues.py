"""The report sections of a label audit (``kerasclf audit``): read back from its folder.

``kerasclf audit`` writes ``label_issues.csv`` (the ranked likely-mislabelled images),
``label_quality.json`` (the per-class estimated share of label errors and how the audit ran) and
``label_issues_gallery.png`` into one folder. :func:`label_issue_sections` turns that folder into
report sections; the audit's own ``label_issues.html`` and ``kerasclf analyze``'s report (for a
run whose ``audit/`` folder exists) both use it, so the two always show the same thing.

Example:
    >>> sections = label_issue_sections("runs/flowers/audit")   # doctest: +SKIP
    >>> [s.title for s in sections]                              # doctest: +SKIP
    ['Label quality', 'Likely mislabelled images']
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from kerasclf.errors import DataError

from .report import Section, Table

__all__ = ["ISSUE_COLUMNS", "read_audit", "label_issue_sections"]

#: the columns of ``label_issues.csv``, in order
ISSUE_COLUMNS = ["rank", "file", "given_label", "suggested_label", "score", "suggested_probability"]


def read_audit(folder: str | Path) -> tuple[list[dict[str, str]], dict[str, Any]] | None:
    """``(issue rows, summary)`` of an audit folder, or ``None`` when it holds no audit.

    Example:
        >>> read_audit("/nonexistent") is None
        True
    """
    folder = Path(folder)
    csv_path, json_path = folder / "label_issues.csv", folder / "label_quality.json"
    if not (csv_path.is_file() and json_path.is_file()):
        return None
    try:
        summary = json.loads(json_path.read_text())
        with csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: unreadable audit files ({exc}); run `kerasclf audit` again") from None
    return rows, summary


def label_issue_sections(folder: str | Path, *, max_rows: int = 200) -> list[Section]:
    """Two sections: per-class label quality, and the ranked table + gallery of likely label errors.

    Args:
        folder: an audit folder (see the module docstring).
        max_rows: rows of the issue table shown (the CSV has them all).

    Returns:
        ``[]`` when ``folder`` holds no audit.
    """
    found = read_audit(folder)
    if found is None:
        return []
    rows, summary = found
    per_class = summary.get("per_class", {})
    info = summary.get("probabilities", {})
    text = [f"{summary.get('n_issues', len(rows))} of {summary.get('n_images')} images are likely mislabelled "
            f"(cleanlab {summary.get('cleanlab_version', '')}, filter_by={summary.get('filter_by')}), found from "
            f"out-of-fold probabilities: {info.get('how', '')}; out-of-fold accuracy "
            f"{info.get('accuracy', float('nan')):.3f} against the given labels.",
            "The estimated share of label errors of a class is cleanlab's estimate of the images given that "
            "label whose true class is another (from the confident joint), not a count of the flagged rows."]
    quality = Section("Label quality", id="label-quality", text=text, table=Table(
        ["class", "images", "flagged", "estimated label errors"],
        [[c, v["n"], v["flagged"], f"{v['estimated_error_share']:.1%}"] for c, v in per_class.items()]))
    notes = [] if rows else ["no likely label errors were found"]
    gallery = Path(folder) / "label_issues_gallery.png"
    issues = Section("Likely mislabelled images", id="label-issues", notes=notes,
                     text=("Ranked by cleanlab's label-quality score (lowest first: most likely wrong). "
                           "Nothing was moved or changed; label_issues.csv lists them all."),
                     table=Table(ISSUE_COLUMNS, rows[:max_rows]) if rows else None,
                     images=[(gallery, "the first likely label errors: given label -> suggested label (score)")]
                     if rows and gallery.is_file() else [])
    return [quality, issues]
