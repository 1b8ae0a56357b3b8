"""The report of a comparison: leaderboard, candidates (TTA, ensembles) against the best single
model, every Keras model's curves side by side, and the chosen configuration's full analysis.

The chosen configuration may be a single model, a model with TTA or an ensemble of any kinds, so
its sections (confusion matrix, per-class metrics, galleries, calibration) are the sections of
:func:`~kerasclf.analysis.analyze.analyze` built from its probabilities (:class:`ChosenEvidence`),
not from one Keras model; attribution heatmaps need a Keras model and are drawn with the one given.

Example:
    >>> comparison_report(board, board.out_dir / "report.html", evidence=evidence)  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.errors import KerasclfError

from .analyze import _Analysis
from .plots import plot_histories
from .report import SECTION_IDS, Section, Table, gap_sentence, write_report

__all__ = ["ChosenEvidence", "comparison_report"]

_BOARD_COLS = ("label", "mode", "train_acc", "val_acc", "val_loss", "params", "train_time_s", "images_per_s")
_CANDIDATE_COLS = ("configuration", "kind", "members", "val_acc", "val_loss")


@dataclass
class ChosenEvidence:
    """What the report needs of the chosen configuration: the test split's images, labels and the
    configuration's probabilities, the same on validation (calibration), a Keras model for
    attribution (``None``: none is drawn, ``explain_note`` says why) and the Keras members'
    ``history.csv`` files.
    """

    images: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    val_labels: np.ndarray
    val_probs: np.ndarray
    task: str
    class_names: Sequence[str]
    explain_model: Any = None
    explain_note: str = ""
    histories: Mapping[str, Path] = field(default_factory=dict)


def _fmt_gain(g: Any) -> str:
    return "" if g is None else f"{g:+.4f}"


def comparison_report(board: Any, path: str | Path, *, evidence: ChosenEvidence | None = None,
                      title: str | None = None, max_gallery: int = 10) -> Path:
    """Write the comparison's report and return its path.

    Args:
        board: a :class:`kerasclf.experiment.Leaderboard` (``rows``, ``best``, ``candidates``,
            ``chosen``, ``test``, ``saved``).
        path: the ``.html`` file to write; figures go to ``figures/`` beside it.
        evidence: the chosen configuration's predictions; without it only the tables are written.
        title: page title (default: the comparison folder's name).
        max_gallery: images per gallery.

    Example:
        >>> comparison_report(board, "runs/cmp/report.html", evidence=evidence)  # doctest: +SKIP
        PosixPath('runs/cmp/report.html')
    """
    path = Path(path)
    rows = list(board.rows)
    best = board.best
    chosen = getattr(board, "chosen", "") or best
    cols = [c for c in _BOARD_COLS if any(c in r for r in rows)]
    best_i = next((i for i, r in enumerate(rows) if r.get("label") == best), None)
    best_val = rows[best_i].get("val_acc") if best_i is not None else None
    sections = [Section(SECTION_IDS["leaderboard"], id="leaderboard",
                        text=f"{len(rows)} models trained on the same split, best first by validation accuracy "
                             f"(then validation loss); compare scores every model on the same validation images. "
                             f"Best single model: {best}.",
                        table=Table(cols, rows, highlight=best_i))]
    cands = list(getattr(board, "candidates", []) or [])
    if cands:
        gain_col = f"gain vs {best}"
        table_rows = [[c["configuration"], c["kind"] + (" + tta" if c.get("tta") and c["kind"] == "ensemble" else ""),
                       ", ".join(c["members"]), c["val_acc"], c["val_loss"], _fmt_gain(c.get("gain"))] for c in cands]
        pick = next((c for c in cands if c["configuration"] == chosen), cands[0])
        text = [f"Each single model, with flip test-time augmentation (TTA) and as ensembles (the mean of the "
                f"top models' probabilities, scikit-learn heads included), scored on validation. Every gain "
                f"is against the best single model, {best} (validation accuracy {best_val:.4f}).",
                f"Chosen by validation: {chosen} (validation accuracy {pick['val_acc']:.4f}, "
                f"{_fmt_gain(pick.get('gain'))} over {best})" + (
                    "; no TTA or ensemble did better." if pick["kind"] == "single" else ".")
                + " Ties in accuracy go to the simpler configuration (single, then TTA, then ensemble)."
                + " It is the only configuration evaluated on the test split. The best of several candidates "
                  "is chosen on validation, so its validation score is optimistic; the test score is not."]
        sections.append(Section("Candidates: single models, TTA and ensembles", id="candidates", text=text,
                                table=Table([*_CANDIDATE_COLS, gain_col], table_rows,
                                            highlight=cands.index(pick))))
    fig_dir = path.parent / "figures"
    test = dict(getattr(board, "test", {}) or {})
    if evidence is not None:
        sections += _evidence_sections(evidence, fig_dir, chosen, max_gallery)
    if test:
        sections.append(_test_section(test, chosen, dict(getattr(board, "saved", {}) or {})))
    return write_report(path, title=title or f"Comparison: {Path(board.out_dir).name}", sections=sections,
                        subtitle=f"best single model: {best}; chosen configuration: {chosen}")


def _evidence_sections(ev: ChosenEvidence, fig_dir: Path, chosen: str, max_gallery: int) -> list[Section]:
    out: list[Section] = []
    if ev.histories:
        try:
            curves = plot_histories(dict(ev.histories), fig_dir / "curves.png")
            out.append(Section(SECTION_IDS["curves"], id="curves", images=[(
                curves, f"loss and accuracy per epoch of every Keras model ({', '.join(ev.histories)}); "
                        f"scikit-learn heads are fitted in one step and have no curves")]))
        except KerasclfError as e:
            out.append(Section(SECTION_IDS["curves"], id="curves", notes=[f"curves skipped: {e}"]))
    run = _Analysis(model=ev.explain_model, task=ev.task, names=[str(c) for c in ev.class_names], split="test",
                    fig_dir=fig_dir, batch_size=32)
    fig_dir.mkdir(parents=True, exist_ok=True)
    run.score((ev.images, ev.labels), (None, ev.val_labels), probs=ev.probs, val_probs=ev.val_probs)
    run.confusion_and_per_class()
    run.galleries(np.random.default_rng(0), max_gallery, ("gradcam",) if ev.explain_model is not None else (),
                  None, 10)
    run.calibration()
    for s in run.sections:
        s.title = f"{s.title}: {chosen}"
        if s.id == "galleries" and ev.explain_note:
            s.text = [*([s.text] if isinstance(s.text, str) else s.text), ev.explain_note]
    return out + run.sections


def _test_section(test: dict[str, Any], chosen: str, saved: dict[str, Any]) -> Section:
    acc = test.get("accuracy")
    text = [f"The chosen configuration ({chosen}, {test.get('kind', 'single')}) was evaluated once on the test "
            f"split: accuracy {acc:.4f} on {test.get('n', '?')} images; macro F1 "
            f"{(test.get('macro') or {}).get('f1', float('nan')):.4f}.",
            gap_sentence(test.get("val_acc"), acc)]
    if saved:
        text.append(f"Saved as {saved.get('note', saved.get('path'))}.")
        if saved.get("test_max_abs_diff") is not None:
            text.append(f"Reloaded from that file, it reproduces the tested probabilities on the test split "
                        f"(largest difference {saved['test_max_abs_diff']:.1e}).")
    return Section(SECTION_IDS["test"], id="test", text=text,
                   notes=[text[1]] if text[1].startswith("Warning") else [])
