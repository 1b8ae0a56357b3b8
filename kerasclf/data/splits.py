"""Seeded, stratified train/val/test splits, written as a CSV manifest so runs are comparable.

* Stratified: each class (multi-label: each label combination, rare combinations merged) is
  divided by the ratios separately, so every class with enough items is in every split.
* Grouped: with ``spec.groups`` a group (same person, same photo) stays in one split; groups are
  assigned greedily to the split that most lacks their class (StratifiedGroupKFold-like).
* Pre-split: with ``spec.preset_split`` the given parts are used as they are; a missing ``val``
  (or ``test``) is carved out of ``train`` by the ratios, stratified.
* Deterministic: the same seed and data give the same split whatever order the files were
  listed in (items are ordered by id before shuffling).

Example:
    >>> import numpy as np
    >>> from kerasclf.data.spec import DataSpec
    >>> spec = DataSpec.from_arrays(np.zeros((20, 4, 4), "uint8"), np.arange(20) % 2)
    >>> parts = split_indices(spec, (0.6, 0.2, 0.2), seed=1)
    >>> [len(parts[k]) for k in ("train", "val", "test")]
    [12, 4, 4]
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError

__all__ = ["SPLITS", "EXCLUDED", "split_indices", "sample_indices", "label_text", "write_manifest", "read_manifest",
           "match_ids", "split_or_reuse"]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: the split value of a manifest row whose item review decisions excluded
EXCLUDED = "excluded"


def _ratios(ratios: Sequence[float] | dict[str, float]) -> np.ndarray:
    if isinstance(ratios, dict):
        ratios = [ratios.get(k, 0.0) for k in SPLITS]
    r = np.asarray(list(ratios), dtype=float)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0 or r[0] <= 0:
        raise ConfigError(f"split ratios {list(ratios)}: give three non-negative numbers "
                          f"(train, val, test) with train > 0, e.g. 0.7, 0.1, 0.2")
    return r / r.sum()


def _allocate(n: int, r: np.ndarray) -> np.ndarray:
    """Counts per split for ``n`` items: largest remainder, at least one per non-zero ratio when possible."""
    raw = r * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    active = np.flatnonzero(r > 0)
    if n >= len(active):
        for i in active:
            if counts[i] == 0:  # take one from the largest
                j = int(np.argmax(counts))
                counts[j] -= 1
                counts[i] += 1
    return counts


def _stable_order(ids: list[str]) -> np.ndarray:
    """Indices sorted by id, so the result does not depend on listing order."""
    return np.array(sorted(range(len(ids)), key=lambda i: ids[i]), dtype=int)


def _strat_keys(spec: DataSpec, idx: np.ndarray, n_parts: int) -> np.ndarray:
    key = np.asarray(spec.stratify_key)[idx].astype(str)
    if spec.labels.ndim == 2:  # merge label combinations too rare to stratify
        counts = Counter(key)
        key = np.array([k if counts[k] >= n_parts else "__rare__" for k in key])
    return key


def _split_pool(spec: DataSpec, idx: np.ndarray, r: np.ndarray, seed: int) -> list[np.ndarray]:
    """Split the items ``idx`` (already in stable order) by ratios ``r``; returns one array per split."""
    out: list[list[int]] = [[] for _ in r]
    if len(idx) == 0:
        return [np.array([], dtype=int) for _ in r]
    rng = np.random.default_rng(seed)
    n_parts = int((r > 0).sum())
    keys = _strat_keys(spec, idx, n_parts)
    if spec.groups is None:
        for k in sorted(set(keys)):
            members = idx[keys == k]
            members = members[rng.permutation(len(members))]
            counts = _allocate(len(members), r)
            start = 0
            for s, c in enumerate(counts):
                out[s] += members[start:start + c].tolist()
                start += c
    else:
        groups = np.asarray(spec.groups).astype(str)[idx]
        by_group: dict[str, list[int]] = defaultdict(list)
        gkey: dict[str, Counter] = defaultdict(Counter)
        for i, g, k in zip(idx, groups, keys):
            by_group[g].append(int(i))
            gkey[g][k] += 1
        names = sorted(by_group)
        names = [names[i] for i in rng.permutation(len(names))]
        names.sort(key=lambda g: -len(by_group[g]))  # big groups first (stable: random among equals)
        class_total = Counter(keys)
        have = [Counter() for _ in r]
        size = np.zeros(len(r))
        total = len(idx)
        for g in names:
            n = len(by_group[g])
            need = []
            for s in range(len(r)):
                if r[s] == 0:
                    need.append(-np.inf)
                    continue
                deficit = sum(c * (r[s] * class_total[k] - have[s][k]) / class_total[k]
                              for k, c in gkey[g].items())
                need.append(deficit + 1e-3 * (r[s] * total - size[s]))
            s = int(np.argmax(need))
            out[s] += by_group[g]
            have[s].update(gkey[g])
            size[s] += n
    return [np.array(sorted(o), dtype=int) for o in out]


def split_indices(spec: DataSpec, ratios: Sequence[float] | dict[str, float] = (0.7, 0.1, 0.2),
                  seed: int = 42) -> dict[str, np.ndarray]:
    """Seeded stratified split of ``spec`` into train/val/test index arrays.

    Args:
        spec: the data.
        ratios: ``(train, val, test)`` fractions (normalised) or a dict with those keys.
        seed: the random seed; the same seed and data give the same split.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each a sorted int array into ``spec``.

    Example:
        >>> parts = split_indices(spec, (0.7, 0.1, 0.2), seed=42)  # doctest: +SKIP
    """
    r = _ratios(ratios)
    ids = spec.ids()
    order = _stable_order(ids)
    seed = int(seed)
    if spec.preset_split is None:
        parts = _split_pool(spec, order, r, seed)
        return dict(zip(SPLITS, parts))
    preset = np.asarray(spec.preset_split).astype(str)[order]
    bad = sorted(set(preset) - set(SPLITS))
    if bad:
        raise DataError(f"{spec.source}: preset split values {bad} are not train/val/test")
    given = {s: order[preset == s] for s in SPLITS}
    missing = [s for s in ("val", "test") if len(given[s]) == 0 and r[SPLITS.index(s)] > 0]
    if not missing:
        return {s: np.sort(given[s]) for s in SPLITS}
    sub = np.array([r[0]] + [r[SPLITS.index(s)] for s in missing])
    carved = _split_pool(spec, given["train"], sub / sub.sum(), seed)
    out = {s: np.sort(given[s]) for s in SPLITS}
    out["train"] = carved[0]
    for s, part in zip(missing, carved[1:]):
        out[s] = part
    return out


def sample_indices(spec: DataSpec, n: int, index: Sequence[int] | np.ndarray | None = None,
                   seed: int = 42) -> np.ndarray:
    """A seeded, stratified sample of at most ``n`` items of ``spec`` (of ``index`` when given).

    Each class keeps its share (largest remainder, as :func:`split_indices` divides a split), so
    the first ``n`` files of a class-sorted folder never stand in for the whole folder. The same
    seed and items give the same sample whatever their order; the result is sorted.

    Example:
        >>> spec = DataSpec.from_arrays(np.zeros((30, 4, 4), "uint8"), np.repeat([0, 1, 2], 10))
        >>> picked = sample_indices(spec, 6, seed=0)
        >>> len(picked), np.bincount(spec.labels[picked]).tolist()
        (6, [2, 2, 2])
    """
    idx = np.arange(len(spec)) if index is None else np.asarray(index, dtype=int)
    if n >= len(idx):
        return np.sort(idx)
    if n <= 0:
        return np.array([], dtype=int)
    ids = spec.ids()
    idx = idx[np.array(sorted(range(len(idx)), key=lambda i: ids[idx[i]]), dtype=int)]
    taken = _split_pool(dataclasses.replace(spec, groups=None), idx,  # groups matter to splits, not samples
                        np.array([n, len(idx) - n], dtype=float) / len(idx), int(seed))[0]
    if len(taken) > n:  # per-class rounding can give one or two extra: drop them at random
        taken = np.sort(np.random.default_rng(seed).permutation(taken)[:n])
    return taken


def label_text(spec: DataSpec, i: int) -> str:
    """The label of item ``i`` as the manifest writes it: the class name, or for multi-label the
    names of the positive classes joined with ``|`` ("" when none). The health check shows it too.

    Example:
        >>> label_text(spec, 0)  # doctest: +SKIP
        'daisy'
    """
    y = spec.labels[i]
    if spec.labels.ndim == 2:
        return "|".join(n for n, v in zip(spec.class_names, y) if v)
    return spec.class_names[int(y)]


def write_manifest(path: str | os.PathLike, spec: DataSpec, splits: dict[str, np.ndarray]) -> Path:
    """Write the split as CSV: ``id,label,split[,group][,given_label]`` in the spec's item order.

    ``id`` is the file path or ``#<index>`` for arrays; ``label`` is the class name used (multi-label:
    the names of the positive attributes joined with ``|``). Items in no split are not written.
    When review decisions were applied (``spec.given_labels``), ``given_label`` keeps the label the
    source gave beside the one used, and each excluded item is a row with split ``excluded``.

    Example:
        >>> write_manifest("runs/x/split.csv", spec, parts)  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    where: dict[int, str] = {}
    for s, idx in splits.items():
        for i in np.asarray(idx, dtype=int):
            where[int(i)] = s
    ids = spec.ids()
    decided = spec.given_labels is not None
    given = dataclasses.replace(spec, labels=spec.given_labels) if decided else spec
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "split"] + (["group"] if spec.groups is not None else [])
                   + (["given_label"] if decided else []))
        for i in range(len(spec)):
            if i in where:
                row = [ids[i], label_text(spec, i), where[i]]
                if spec.groups is not None:
                    row.append(str(spec.groups[i]))
                if decided:
                    row.append(label_text(given, i))
                w.writerow(row)
        for item, label in spec.excluded:
            w.writerow([item, label, EXCLUDED] + ([""] if spec.groups is not None else []) + [label])
    return path


def _tail(p: str, n: int = 2) -> str:
    return "/".join(Path(p).parts[-n:])


def match_ids(keys: Sequence[str], ids: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Where each of ``keys`` (ids written earlier: a manifest's, a decisions file's) is in ``ids``
    (a spec's :meth:`~kerasclf.data.spec.DataSpec.ids`).

    A key matches an id exactly, else (file paths) the same absolute path (``photos/a.jpg`` written
    from another folder), else by its last two path parts (``class/file.jpg``) when that is
    unambiguous and every key not matched so far matches so (the data folder has moved).

    Returns:
        ``({key: position}, [keys not found])``.

    Example:
        >>> match_ids(["/old/a/1.jpg", "/new/a/2.jpg"], ["/new/a/1.jpg", "/new/a/2.jpg"])
        ({'/new/a/2.jpg': 1, '/old/a/1.jpg': 0}, [])
    """
    exact = {k: i for i, k in enumerate(ids)}
    pos = {k: exact[k] for k in keys if k in exact}
    unknown = [k for k in dict.fromkeys(keys) if k not in exact]
    files = not any(k.startswith("#") for k in ids[:1])  # "#<index>": items of an in-memory array
    if unknown and files:
        absolute = {os.path.abspath(k): i for i, k in enumerate(ids)}
        pos.update({k: absolute[os.path.abspath(k)] for k in unknown if os.path.abspath(k) in absolute})
        unknown = [k for k in unknown if k not in pos]
    if unknown and files:
        tails = Counter(_tail(k) for k in ids)
        tpos = {_tail(k): i for i, k in enumerate(ids) if tails[_tail(k)] == 1}
        if all(_tail(u) in tpos for u in unknown):
            pos.update({u: tpos[_tail(u)] for u in unknown})
            unknown = []
    return pos, unknown


def read_manifest(path: str | os.PathLike, spec: DataSpec, *, same_labels: bool = False) -> dict[str, np.ndarray]:
    """Read a manifest written by :func:`write_manifest` back into index arrays for ``spec``.

    Ids are matched by :func:`match_ids`; rows of excluded items (split ``excluded``, or an item
    review decisions have excluded since: ``spec.excluded``) are skipped. With ``same_labels`` (a resumed run), every row's label must still be the spec's label and no
    excluded item may be back in the data: the run must see the data it started with.

    Raises:
        DataError: the file is missing or malformed, its ids do not match the data (the message
            names the file, how many ids are unknown, and the fix), or a label changed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such split manifest")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "split"} <= set(rows[0]):
        raise DataError(f"{path}: not a split manifest (needs columns id and split)")
    excluded = [r["id"] for r in rows if r["split"].strip() == EXCLUDED]
    rows = [r for r in rows if r["split"].strip() != EXCLUDED]
    pos, unknown = match_ids([r["id"] for r in rows], spec.ids())
    if unknown and spec.excluded and not same_labels:  # excluded by decisions made after this split
        gone, unknown = match_ids(unknown, [i for i, _ in spec.excluded])
        rows = [r for r in rows if r["id"] not in gone]
    if unknown:
        raise DataError(f"{path}: {len(unknown)} of {len(rows)} ids are not in the data "
                        f"(first: {unknown[0]}); the manifest belongs to other data — delete it "
                        f"or point split.manifest at the right one")
    if same_labels:
        _check_labels(path, spec, rows, pos, excluded)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for r in rows:
        s = r["split"].strip()
        if s not in out:
            raise DataError(f"{path}: split value {s!r} is not train/val/test/{EXCLUDED}")
        out[s].append(pos[r["id"]])
    return {s: np.array(sorted(v), dtype=int) for s, v in out.items()}


def _check_labels(path: Path, spec: DataSpec, rows: list[dict[str, str]], pos: dict[str, int],
                  excluded: list[str]) -> None:
    """Refuse data whose labels or exclusions differ from those ``path`` was written with."""
    fix = ("the labels (data.decisions or the data) changed since this split was written; restore them, "
           "or start the run over with --overwrite")
    for r in rows:
        now = label_text(spec, pos[r["id"]])
        if "label" in r and r["label"] != now:
            raise DataError(f"{path}: {r['id']} was labelled {r['label']!r} and is {now!r} now; {fix}")
    back, _ = match_ids(excluded, spec.ids())
    if back:
        raise DataError(f"{path}: {next(iter(back))} was excluded and is in the data again; {fix}")


def split_or_reuse(spec: DataSpec, manifest_path: str | os.PathLike,
                   ratios: Sequence[float] | dict[str, float] = (0.7, 0.1, 0.2),
                   seed: int = 42) -> dict[str, np.ndarray]:
    """Reuse the manifest at ``manifest_path`` if it exists, else split and write it there.

    Example:
        >>> parts = split_or_reuse(spec, "splits/pets.csv", (0.7, 0.1, 0.2), 42)  # doctest: +SKIP
    """
    p = Path(manifest_path)
    if p.is_file():
        return read_manifest(p, spec)
    parts = split_indices(spec, ratios, seed)
    write_manifest(p, spec, parts)
    return parts


def _digest(spec: DataSpec) -> str:  # pragma: no cover - handy for debugging comparisons
    return hashlib.sha1("\n".join(sorted(spec.ids())).encode()).hexdigest()[:12]
