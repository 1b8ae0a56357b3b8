"""``kerasclf review SOURCE...``: look at what kerasclf found wrong with the data, and decide in a browser.

Sources are what kerasclf already wrote: a run folder (its OOD flag and top losses, and its
``audit/``), an audit folder (``kerasclf audit``), a health-check report (``kerasclf check DATA
--json FILE``). :func:`open_review` reads them (:mod:`kerasclf.review.items`), makes the review
folder and its self-contained page (:mod:`kerasclf.review.page`); :meth:`Review.server` serves it
on 127.0.0.1 (:mod:`kerasclf.review.server`) and appends each decision to the folder's
``decisions.csv`` (:mod:`kerasclf.data.decisions`). The user's images are only read. The next run
applies the decisions with ``--decisions REVIEW/decisions.csv`` (recipe key ``data.decisions``).

The review folder holds ``review.html`` (the page, which also works opened as a file: its ``d``
key downloads the decisions), ``review.json`` (what was reviewed) and ``decisions.csv``. Running
the review again with the same sources continues it (earlier decisions shown, new ones appended);
other sources need ``overwrite``, and even then ``decisions.csv`` is kept and appended to.

Example:
    >>> review = open_review(["runs/flowers"])                        # doctest: +SKIP
    >>> review.write_page(); server = review.server(); print(server.url); server.serve()   # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kerasclf.data.decisions import Decision, read_decisions
from kerasclf.data.splits import SPLITS
from kerasclf.errors import ConfigError
from kerasclf.evaluate import is_run_folder
from kerasclf.review.items import REASONS, Found, ReviewItem, collect_items
from kerasclf.review.page import page_html, thumbnails, write_page
from kerasclf.review.server import ReviewServer

__all__ = ["Review", "open_review", "default_folder", "REASONS", "ReviewItem", "Found", "ReviewServer"]

DECISIONS = "decisions.csv"
_RECORD = "review.json"


def default_folder(sources: Sequence[str | Path]) -> Path:
    """Where a review of ``sources`` goes by default: ``RUN/review`` for one run folder, else
    ``<first source>_review`` beside the first source.

    Example:
        >>> default_folder(["photos_audit"]).name, default_folder(["check.json"]).name
        ('photos_audit_review', 'check_review')
    """
    first = Path(sources[0])
    if len(sources) == 1 and is_run_folder(first):
        return first / "review"
    return first.with_name(f"{first.stem if first.suffix == '.json' else first.name}_review")


@dataclass
class Review:
    """An open review: its folder, the items found and their thumbnails.

    Attributes:
        folder: the review folder (``decisions.csv`` lives here).
        found: the items and class names (:class:`~kerasclf.review.items.Found`).
        thumbs: ``{path: data URI}`` of the items.
        title: the page's title.
    """

    folder: Path
    found: Found
    thumbs: dict[str, str] = field(default_factory=dict)
    title: str = "kerasclf review"

    @property
    def decisions_path(self) -> Path:
        return self.folder / DECISIONS

    def decisions(self) -> list[Decision]:
        """The rows of ``decisions.csv`` so far (``[]`` before the first)."""
        return read_decisions(self.decisions_path) if self.decisions_path.is_file() else []

    def render(self) -> str:
        """The page with every decision so far."""
        return page_html(self.found, self.thumbs, decisions=self.decisions(), title=self.title,
                         folder=str(self.folder))

    def write_page(self) -> Path:
        """Write ``review.html`` (self-contained; opened as a file it keeps decisions in memory and
        downloads them with ``d``)."""
        return write_page(self.folder / "review.html", self.render())

    def server(self, *, port: int = 0, on_decision: Callable[[dict[str, Any]], None] | None = None) -> ReviewServer:
        """A :class:`~kerasclf.review.server.ReviewServer` of this review (not started)."""
        return ReviewServer(self.render, self.decisions_path, [it.path for it in self.found.items],
                            self.found.class_names, port=port, on_decision=on_decision)


def _claim(folder: Path, found: Found, overwrite: bool) -> None:
    """Refuse a folder inside the data, a folder that is not a review, or another review without
    ``overwrite``; then record what is reviewed in ``review.json``."""
    for root in found.roots:
        if folder.resolve().is_relative_to(Path(root).resolve()):
            raise ConfigError(f"--out {folder} is inside the data folder {root}; put the review elsewhere "
                              f"(it would be read as images next time)")
    sources = sorted(str(Path(s).resolve()) for s in found.sources)
    record = folder / _RECORD
    if folder.is_dir() and any(folder.iterdir()):
        if not record.is_file():
            raise ConfigError(f"{folder} exists and is not a review folder (no {_RECORD}); choose another --out")
        try:
            before = sorted(json.loads(record.read_text()).get("sources", []))
        except ValueError:
            before = []
        if before != sources and not overwrite:
            raise ConfigError(f"{folder} holds a review of other sources ({', '.join(before)[:200]}); pass "
                              f"--overwrite to review these there (its {DECISIONS} is kept and appended to), "
                              f"or choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"sources": sources, "items": len(found.items), "classes": found.class_names,
                                  "reasons": {r: sum(r in it.reasons for it in found.items) for r in REASONS},
                                  "written": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))


def open_review(sources: Sequence[str | Path], *, out: str | Path | None = None, overwrite: bool = False,
                top_losses: int = 50, splits: Sequence[str] = SPLITS) -> Review:
    """Read ``sources``, make the review folder and the thumbnails; the page and server come after.

    Args:
        sources: run folders, audit folders and ``kerasclf check --json`` reports of one data set.
        out: the review folder (default :func:`default_folder`).
        overwrite: review other sources in a folder that holds a review (``decisions.csv`` is kept).
        top_losses: a run's misclassified images with the highest loss that are shown.
        splits: the run splits its model scores.

    Raises:
        DataError: a source is not one of the three, or sources disagree on the classes.
        ConfigError: the folder is inside the data, is not a review folder, or holds another review.
    """
    found = collect_items(list(sources), top_losses=top_losses, splits=splits)
    folder = Path(out) if out is not None else default_folder(list(sources))
    _claim(folder, found, overwrite)
    names = ", ".join(Path(s).name for s in sources)
    return Review(folder=folder, found=found, thumbs=thumbnails([it.path for it in found.items]),
                  title=f"Review of {names}: {len(found.items)} images")
