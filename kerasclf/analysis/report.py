"""One self-contained HTML report: inline CSS, images as base64 data URIs, no script, no network.

A report is a title and a list of :class:`Section`; each section gets an ``id`` (its anchor) and
an ``<h2>`` heading, and may hold paragraphs, a table, images with captions and notes. Every
string that comes from a user or a data set (class names, model labels, file names) is escaped.
The standard section ids used by :func:`~kerasclf.analysis.analyze.analyze` are in
:data:`SECTION_IDS`.

Example:
    >>> s = Section("Test result", id="test", text="accuracy 0.91 <b>")
    >>> write_report("/tmp/r.html", title="demo", sections=[s])  # doctest: +SKIP
    PosixPath('/tmp/r.html')
"""
from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasclf.errors import DataError

__all__ = ["Section", "Table", "write_report", "gap_sentence", "image_uri", "SECTION_IDS"]

SECTION_IDS = {
    "leaderboard": "Leaderboard",
    "curves": "Training curves",
    "confusion": "Confusion matrix",
    "per-class": "Per-class metrics",
    "candidates": "Candidates: single models, TTA and ensembles",
    "galleries": "Galleries and attribution",
    "embeddings": "Feature embeddings",
    "calibration": "Calibration",
    "test": "Test result",
}


@dataclass
class Table:
    """A table: column names and rows (lists in column order, or dicts keyed by column).

    ``highlight`` is the index of a row to emphasise (e.g. the best model).
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[Any] | Mapping[str, Any]]
    highlight: int | None = None


@dataclass
class Section:
    """One part of the report.

    Attributes:
        title: heading text.
        id: anchor id (default: a slug of the title).
        text: a paragraph or a list of paragraphs (plain text, escaped).
        table: an optional :class:`Table`.
        images: PNG files (a path, ``bytes``, or ``(path_or_bytes, caption)``).
        notes: warnings shown highlighted (plain text, escaped).
        image_width: CSS max width of each image in px (``None``: the page width).
    """

    title: str
    id: str | None = None
    text: str | Sequence[str] = ""
    table: Table | None = None
    images: Sequence[Any] = field(default_factory=list)
    notes: Sequence[str] = field(default_factory=list)
    image_width: int | None = None

    def anchor(self) -> str:
        return self.id or (re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section")


_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --accent:#2f6fb0; --bg:#ffffff; --soft:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1180px; margin:0 auto; padding:24px 28px 60px; }
header h1 { font-size:26px; margin:0 0 4px; }
header p { color:var(--muted); margin:0 0 12px; }
nav { position:sticky; top:0; background:rgba(255,255,255,.96); border-bottom:1px solid var(--line);
      padding:8px 0; margin-bottom:8px; z-index:1; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; font-size:14px; white-space:nowrap; }
section { border-top:1px solid var(--line); padding:14px 0 8px; }
h2 { font-size:20px; margin:6px 0 10px; }
figure { margin:10px 0 16px; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
.table-wrap { overflow-x:auto; max-height:640px; overflow-y:auto; margin:8px 0 14px; }
table { border-collapse:collapse; font-size:13.5px; font-variant-numeric:tabular-nums; }
th, td { border-bottom:1px solid var(--line); padding:5px 10px; text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
th { background:var(--soft); position:sticky; top:0; }
tr.best td { background:#eaf3e3; font-weight:600; }
.note { background:#fff4e0; border-left:4px solid #e59a1c; padding:8px 12px; margin:8px 0; }
.ok { background:#eef6ee; border-left:4px solid #4a9a4a; padding:8px 12px; margin:8px 0; }
footer { color:var(--muted); font-size:12px; margin-top:30px; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def image_uri(src: Any) -> str:
    """A ``data:`` URI of a PNG / JPEG / SVG file or its bytes (what the page embeds instead of a link).

    Example:
        >>> image_uri(b"\\xff\\xd8abc")[:30]
        'data:image/jpeg;base64,/9hhYmM='
    """
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    else:
        p = Path(src)
        if not p.is_file():
            raise DataError(f"{p}: image for the report not found")
        data = p.read_bytes()
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else (
        "image/jpeg" if data[:2] == b"\xff\xd8" else "image/svg+xml" if data.lstrip()[:4] in (b"<svg", b"<?xm")
        else "image/png")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _table_html(t: Table) -> str:
    cols = [str(c) for c in t.columns]
    out = ["<div class='table-wrap'><table><thead><tr>"]
    out += [f"<th>{_esc(c)}</th>" for c in cols]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cells = [row.get(c) for c in cols] if isinstance(row, Mapping) else list(row)
        cls = " class='best'" if t.highlight is not None and i == t.highlight else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_esc(_fmt(v))}</td>" for v in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _section_html(s: Section) -> str:
    parts = [f"<section id='{_esc(s.anchor())}'>", f"<h2>{_esc(s.title)}</h2>"]
    for note in s.notes:
        parts.append(f"<p class='note'>{_esc(note)}</p>")
    paragraphs = [s.text] if isinstance(s.text, str) else list(s.text)
    parts += [f"<p>{_esc(p)}</p>" for p in paragraphs if p]
    if s.table is not None:
        parts.append(_table_html(s.table))
    style = f" style='max-width:{int(s.image_width)}px'" if s.image_width else ""
    for img in s.images:
        src, caption = (img if isinstance(img, tuple) else (img, ""))
        alt = caption or (Path(src).stem if isinstance(src, (str, Path)) else s.title)
        parts.append(f"<figure><img src='{image_uri(src)}' alt='{_esc(alt)}'{style}>"
                     + (f"<figcaption>{_esc(caption)}</figcaption>" if caption else "") + "</figure>")
    parts.append("</section>")
    return "\n".join(parts)


def write_report(path: str | Path, *, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    """Write one self-contained HTML page (no script, no external resource) and return its path.

    Args:
        path: the ``.html`` file to write (parent folders are made).
        title: page title and top heading.
        sections: the sections, in order; a navigation bar links to each.
        subtitle: a line under the title (e.g. model and data set).

    Returns:
        the path written.

    Example:
        >>> write_report("/tmp/report.html", title="run 1",
        ...              sections=[Section("Test result", id="test", text="accuracy 0.93")])  # doctest: +SKIP
        PosixPath('/tmp/report.html')
    """
    path = Path(path)
    ids = [s.anchor() for s in sections]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise DataError(f"report sections share the id(s) {', '.join(sorted(dup))}; give each a unique id")
    nav = "".join(f"<a href='#{_esc(s.anchor())}'>{_esc(s.title)}</a>" for s in sections)
    body = "\n".join(_section_html(s) for s in sections)
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        f"<header><h1>{_esc(title)}</h1>" + (f"<p>{_esc(subtitle)}</p>" if subtitle else "") + "</header>\n"
        f"<nav>{nav}</nav>\n{body}\n<footer>Written by kerasclf; self-contained page "
        "(images embedded, no network access needed).</footer>\n</main></body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def gap_sentence(val_score: float | None, test_score: float | None, *, threshold: float = 0.05,
                 metric: str = "accuracy") -> str:
    """One sentence on the validation/test gap, flagged when it exceeds ``threshold`` (5 points).

    Example:
        >>> gap_sentence(0.92, 0.84)
        'Warning: test accuracy (84.0%) is 8.0 points below validation (92.0%), more than 5 points: the model or its selection may overfit the validation split, or the test data differs from it.'
        >>> gap_sentence(0.90, 0.89)
        'Test accuracy (89.0%) is within 5 points of validation (90.0%): no sign of overfitting the validation split.'
    """
    if val_score is None or test_score is None:
        return f"Test {metric}: {_fmt(test_score)} (no validation score to compare with)."
    gap = val_score - test_score
    pts = threshold * 100
    if abs(gap) > threshold:
        side = "below" if gap > 0 else "above"
        why = ("the model or its selection may overfit the validation split, or the test data differs from it"
               if gap > 0 else "the validation split may be harder or too small to be reliable")
        return (f"Warning: test {metric} ({test_score:.1%}) is {abs(gap) * 100:.1f} points {side} validation "
                f"({val_score:.1%}), more than {pts:g} points: {why}.")
    return (f"Test {metric} ({test_score:.1%}) is within {pts:g} points of validation ({val_score:.1%}): "
            f"no sign of overfitting the validation split.")
