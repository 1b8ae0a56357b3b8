"""What a review shows: the images kerasclf found something wrong with, read from what it already wrote.

Each source is read by the module that owns it:

* an audit folder (``kerasclf audit``): ``label_issues.csv`` + ``label_quality.json`` through
  :func:`kerasclf.analysis.label_issues.read_audit` — reason ``label issue``, with cleanlab's
  suggested label and its probability;
* a health check (``kerasclf check DATA --json FILE``): its label conflicts (reason ``conflict``)
  and exact / near duplicates (reason ``duplicate``) from :class:`kerasclf.data.checks.CheckReport`'s JSON;
* a run folder (``kerasclf train``): its model scores the run's images once (the split manifest
  of :func:`kerasclf.evaluate.run_parts`, read by the one pipeline): the images its OOD flag marks
  (reason ``ood``, :mod:`kerasclf.analysis.ood`) and those with the highest loss against their
  given label (reason ``top loss``, fastai's top losses); a run's ``audit/`` folder is read too.

An image found by several sources is one :class:`ReviewItem` with every reason.

Example:
    >>> found = collect_items(["photos_audit", "check.json"])        # doctest: +SKIP
    >>> found.items[0].reasons, found.class_names                     # doctest: +SKIP
    (['label issue', 'conflict'], ['cat', 'dog'])
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.analysis.label_issues import read_audit
from kerasclf.analysis.metrics import per_sample_loss
from kerasclf.analysis.ood import load_detector, model_outputs, ood_model
from kerasclf.data import sources
from kerasclf.data.pipeline import file_batches
from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import SPLITS, label_text
from kerasclf.errors import ConfigError, DataError
from kerasclf.evaluate import is_run_folder, run_parts
from kerasclf.io import load_model
from kerasclf.predict import class_probabilities

__all__ = ["REASONS", "ReviewItem", "Found", "collect_items", "merge", "from_audit", "from_check", "from_run"]

#: why an image is shown, in the order the page lists them
REASONS = ("label issue", "conflict", "duplicate", "ood", "top loss")


@dataclass
class ReviewItem:
    """One image to look at.

    Attributes:
        path: the image file (as the source names it; decisions use it).
        given: its label in force (after earlier decisions a run applied).
        suggested: the label a model suggests ("" when none).
        score: the suggested label's probability, or the OOD score (``None``: none).
        reasons: why it is shown (:data:`REASONS`).
        notes: one line each on what the sources say (the duplicate's other copy, the loss …).
        split: the run split it is in, when known.
    """

    path: str
    given: str
    suggested: str = ""
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    split: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "given": self.given, "suggested": self.suggested, "score": self.score,
                "reasons": list(self.reasons), "notes": list(self.notes), "split": self.split}


@dataclass
class Found:
    """Items of one or more sources: ``class_names`` (the data's), ``roots`` (the data folders the
    images come from, which a review folder must stay out of) and ``sources`` (what was read)."""

    items: list[ReviewItem]
    class_names: list[str]
    roots: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _folder_of(source: str) -> str | None:
    """The data folder of a spec's ``source`` text (``"folder /data/pets"``), if it is one."""
    return source[len("folder "):] if source.startswith("folder ") else None


def from_audit(folder: str | Path) -> Found:
    """The likely label errors of an audit folder (``label issue``), ranked as the audit ranked them.

    Example:
        >>> from_audit("photos_audit").items[0].suggested       # doctest: +SKIP
        'dog'
    """
    found = read_audit(folder)
    if found is None:
        raise DataError(f"{folder}: no audit here (label_issues.csv and label_quality.json); run "
                        f"`kerasclf audit DATA --out {folder}` first")
    rows, summary = found
    items = [ReviewItem(path=r["file"], given=r["given_label"], suggested=r["suggested_label"],
                        score=float(r["suggested_probability"]), reasons=["label issue"],
                        notes=[f"audit rank {r['rank']}: label quality {float(r['score']):.3f}"]) for r in rows]
    root = _folder_of(str(summary.get("source", "")))
    return Found(items, list(summary.get("per_class", {})), [root] if root else [], [str(folder)])


def from_check(path: str | Path) -> Found:
    """Label conflicts (``conflict``) and duplicates (``duplicate``) of a ``kerasclf check --json`` report.

    Labels come from the checked folder itself (:func:`kerasclf.data.sources.from_folder`).

    Example:
        >>> [i.reasons for i in from_check("check.json").items][:1]     # doctest: +SKIP
        [['conflict']]
    """
    try:
        report = json.loads(Path(path).read_text())
        root = report["root"]
        conflicts, exact, near = report["label_conflicts"], report["exact_duplicates"], report["near_duplicates"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a `kerasclf check --json` report ({exc}); write one with "
                        f"`kerasclf check DATA --json {path}`") from None
    spec = sources.from_folder(root)
    label = {p: label_text(spec, i) for i, p in enumerate(spec.ids())}
    out: dict[str, ReviewItem] = {}

    def add(p: str, reason: str, others: list[str]) -> None:
        item = out.setdefault(p, ReviewItem(path=p, given=label.get(p, "")))
        if reason not in item.reasons:
            item.reasons.append(reason)
        item.notes.append(f"{reason}: same image as " + ", ".join(
            f"{os.path.relpath(o, root)} [{label.get(o, '?')}]" for o in others))

    conflicting = set()
    for c in conflicts:
        conflicting.add(frozenset(c["files"]))
        for f in c["files"]:
            add(f, "conflict", [o for o in c["files"] if o != f])
    groups = [d["files"] for d in exact] + [[d["a"], d["b"]] for d in near]
    for files in groups:
        if frozenset(files) not in conflicting:
            for f in files:
                add(f, "duplicate", [o for o in files if o != f])
    return Found(list(out.values()), list(spec.class_names), [root], [str(path)])


def from_run(run_dir: str | Path, *, top_losses: int = 50, splits: Sequence[str] = SPLITS,
             batch_size: int = 32) -> Found:
    """The images a run's model flags: OOD (``ood``) and those with the highest loss against their given
    label (``top loss``, at most ``top_losses``; fastai's top losses), over the run's ``splits``; plus its ``audit/``.

    The model reads each image once (:func:`kerasclf.data.pipeline.file_batches`, as training
    read it); its OOD statistics (``model.ood.npz``) are used when the run saved them.

    Example:
        >>> [i.reasons for i in from_run("runs/flowers").items][:2]    # doctest: +SKIP
        [['ood'], ['top loss']]
    """
    run = Path(run_dir)
    if not is_run_folder(run) or not (run / "model.keras").is_file():
        raise DataError(f"{run}: not a finished run folder (recipe.yaml, split.csv, model.keras); give a folder "
                        f"`kerasclf train` wrote, an audit folder or a check report")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ConfigError(f"splits: unknown split {bad[0]!r}; use any of {', '.join(SPLITS)}")
    _, spec, parts = run_parts(run)
    loaded = load_model(run / "model.keras")
    task, names = loaded.task, loaded.class_names
    if task == "multilabel" or spec.labels.ndim != 1:
        raise DataError(f"{run}: review relabels images with one label each; this run is multi-label")
    if list(names) != list(spec.class_names):
        raise DataError(f"{run}: its model's classes ({', '.join(names)[:100]}) are not its data's "
                        f"({', '.join(spec.class_names)[:100]}); retrain, or review an audit of the data instead")
    where = {i: s for s in splits for i in parts.get(s, [])}
    index = sorted(where)
    pos = {p: i for i, p in enumerate(spec.ids())}
    detector, net = load_detector(loaded), ood_model(loaded.model)
    paths, probs, ood = [], [], []
    for ok, x in file_batches([spec.paths[i] for i in index], loaded.image_size, batch_size):
        outs = model_outputs(loaded.model, x, batch_size=batch_size, net=net)
        paths += ok
        probs.append(class_probabilities(outs["probs"], task))
        ood.append(detector.flag(outs) if detector is not None else (np.zeros(len(ok)), np.zeros(len(ok), bool)))
    found = Found([], list(names), [r for r in [_folder_of(spec.source)] if r], [str(run)])
    if paths:
        _scored(found, spec, pos, where, paths, np.concatenate(probs), np.concatenate([o[0] for o in ood]),
                np.concatenate([o[1] for o in ood]), task, top_losses)
    if read_audit(run / "audit") is not None:
        found = merge([found, from_audit(run / "audit")])
    return found


def _scored(found: Found, spec: DataSpec, pos: dict[str, int], where: dict[int, str], paths: list[str],
            probs: np.ndarray, scores: np.ndarray, flags: np.ndarray, task: str, top_losses: int) -> None:
    """Add the OOD-flagged and the top-loss images of one scoring pass to ``found``."""
    idx = np.array([pos[p] for p in paths])
    y = spec.labels[idx].astype(int)
    pred = probs.argmax(1)
    loss = per_sample_loss(y, probs[:, 1:] if task == "binary" else probs, task)
    top = set(np.argsort(-loss, kind="stable")[:max(0, top_losses)].tolist())
    names = found.class_names
    for j in sorted(set(np.flatnonzero(flags).tolist()) | top, key=lambda j: (j not in top, -loss[j])):
        item = ReviewItem(path=paths[j], given=names[y[j]], suggested=names[pred[j]],
                          score=round(float(probs[j, pred[j]]), 4), split=where[int(idx[j])])
        if flags[j]:
            item.reasons.append("ood")
            item.notes.append(f"ood: score {scores[j]:.2f}, unlike the run's training images")
        if j in top:
            item.reasons.append("top loss")
            item.notes.append(f"top loss: {loss[j]:.2f} ({item.split} split), predicted {names[pred[j]]}"
                              + ("" if pred[j] != y[j] else " (right, unsure)"))
        found.items.append(item)


def merge(found: Sequence[Found]) -> Found:
    """One :class:`Found` of several: an image met twice keeps every reason and note; the first
    suggested label wins. Class names must agree (the same data).

    Raises:
        DataError: the sources describe data with different classes.
    """
    names = found[0].class_names
    for f in found[1:]:
        if f.class_names != names:
            raise DataError(f"{f.sources[0]} has classes {', '.join(f.class_names)[:120]} and {found[0].sources[0]} "
                            f"{', '.join(names)[:120]}; review sources of one data set together")
    items: dict[str, ReviewItem] = {}
    for f in found:
        for it in f.items:
            have = items.get(os.path.abspath(it.path))
            if have is None:
                items[os.path.abspath(it.path)] = it
                continue
            have.reasons += [r for r in it.reasons if r not in have.reasons]
            have.notes += it.notes
            have.suggested, have.score = (have.suggested, have.score) if have.suggested else (it.suggested, it.score)
            have.split = have.split or it.split
    return Found(list(items.values()), list(names), sorted({r for f in found for r in f.roots}),
                 [s for f in found for s in f.sources])


def collect_items(paths: Sequence[str | Path], *, top_losses: int = 50, splits: Sequence[str] = SPLITS) -> Found:
    """Read every review source in ``paths`` (run folders, audit folders, check reports) into one :class:`Found`.

    Raises:
        DataError: a path is none of the three, or the sources disagree on the classes.
    """
    if not paths:
        raise DataError("give at least one source: a run folder, an audit folder or a `kerasclf check --json` report")
    found = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".json":
            found.append(from_check(p))
        elif (p / "label_issues.csv").is_file():
            found.append(from_audit(p))
        elif p.is_dir() and is_run_folder(p):
            found.append(from_run(p, top_losses=top_losses, splits=splits))
        else:
            raise DataError(f"{p}: not a review source; give a run folder (`kerasclf train`), an audit folder "
                            f"(`kerasclf audit`) or a check report (`kerasclf check DATA --json FILE`)")
    return merge(found)
