"""Dataset health check (``kerasclf check DATA``): read every file once, report what is wrong.

For every file the check reads the bytes once (SHA-256 for exact duplicates), asks the shared
reader (:func:`kerasclf.data.reader.inspect_image`, the one training uses) whether and how it
decodes, and computes a perceptual hash (``imagehash.phash`` by default) for near duplicates.
It reports:

* unreadable files — zero-byte, truncated, not an image (a ``.txt`` renamed ``.jpg``), too large,
  symlink loops — and files the source skipped (wrong extension, symlinked folders not followed);
* images the reader *converts* (CMYK, 16-bit, palette, RGBA, grayscale …): kept, not dropped;
* tiny images (shorter side < ``tiny``) and huge ones (longer side > ``huge``);
* a file whose extension does not match its real format;
* exact and near duplicates, flagged ``!! CROSSES SPLITS`` when a pair sits in different
  train/val/test parts (a leak that inflates test scores);
* label conflicts: exact or near duplicates whose copies carry *different labels* (the same
  photo filed under two classes), in their own section and count, apart from ordinary duplicates;
* class counts (per split too), the imbalance ratio (largest / smallest class) and classes below
  ``min_per_class``.

Nothing is ever written, moved or deleted except the JSON report you ask for. Symlinked folders
are not followed (so a symlink loop cannot hang the walk) and a looping file link is reported.

Example:
    >>> report = check_dataset("data/pets")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    >>> [(p, r) for p, r in report.bad_files]  # doctest: +SKIP
    [('data/pets/cat/zero.jpg', 'zero-byte file')]
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kerasclf._progress import progress
from kerasclf.data.decisions import apply_decisions
from kerasclf.data.reader import inspect_image
from kerasclf.data.sources import from_folder
from kerasclf.data.spec import DataSpec
from kerasclf.data.splits import label_text
from kerasclf.errors import ConfigError

__all__ = ["CheckReport", "Finding", "check_dataset", "run_check"]

_EXT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
                ".webp": "WEBP"}
_MODE_TEXT = {"CMYK": "CMYK", "P": "palette", "PA": "palette with alpha", "RGBA": "RGBA (alpha dropped)",
              "LA": "grayscale with alpha", "L": "grayscale", "1": "1-bit black and white",
              "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I;16L": "16-bit grayscale",
              "I;16N": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
              "YCbCr": "YCbCr", "LAB": "LAB", "HSV": "HSV", "RGBX": "RGBX"}


@dataclass
class Finding:
    """One problem with one file.

    Attributes:
        path: the file (or folder).
        kind: ``unreadable`` | ``skipped`` | ``converted`` | ``tiny`` | ``huge`` | ``format_mismatch``.
        reason: a short human reason.
    """

    path: str
    kind: str
    reason: str


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``table()`` prints it, ``to_json()`` saves it.

    Attributes:
        root: what was checked.
        n_files: files looked at.
        n_ok: files the reader can read.
        findings: per-file problems (see :class:`Finding`).
        exact_duplicates: groups ``{"files", "splits", "crosses_splits"}`` of byte-identical files.
        near_duplicates: pairs ``{"a", "b", "distance", "splits", "crosses_splits"}`` whose
            perceptual hashes differ by at most the threshold (exact duplicates excluded).
        label_conflicts: duplicates whose copies carry different labels:
            ``{"kind": "exact" | "near", "files", "labels", "distance"}`` (``distance`` 0 for exact);
            they are also in ``exact_duplicates`` / ``near_duplicates``.
        class_counts: readable images per class.
        split_counts: ``{split: {class: n}}`` when splits are known.
        imbalance_ratio: largest class / smallest class (``inf`` when a class has no readable image).
        below_min: classes with fewer than ``min_per_class`` readable images.
        min_per_class: the threshold used.
        seconds: time the check took.
    """

    root: str
    n_files: int = 0
    n_ok: int = 0
    findings: list[Finding] = field(default_factory=list)
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    label_conflicts: list[dict[str, Any]] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    split_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    imbalance_ratio: float = 1.0
    below_min: list[str] = field(default_factory=list)
    min_per_class: int = 0
    seconds: float = 0.0

    # ---------------------------------------------------------------- views
    def of_kind(self, kind: str) -> list[Finding]:
        """Findings of one kind (``unreadable``, ``converted`` …)."""
        return [f for f in self.findings if f.kind == kind]

    @property
    def bad_files(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file training skips (unreadable or skipped by the source)."""
        return [(f.path, f.reason) for f in self.findings if f.kind in ("unreadable", "skipped")]

    @property
    def converted(self) -> list[tuple[str, str]]:
        """``(path, original mode)`` of files the reader converts to RGB (kept, not dropped)."""
        return [(f.path, f.reason) for f in self.of_kind("converted")]

    @property
    def leaks(self) -> list[dict[str, Any]]:
        """Exact and near duplicates that cross train/val/test."""
        return [d for d in self.exact_duplicates + self.near_duplicates if d["crosses_splits"]]

    @property
    def ok(self) -> bool:
        """No unreadable files, no split leaks, no label conflicts and no class below the minimum."""
        return not self.bad_files and not self.leaks and not self.label_conflicts and not self.below_min

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        d = asdict(self)
        d["bad_files"] = [list(t) for t in self.bad_files]
        d["converted"] = [list(t) for t in self.converted]
        d["leaks"] = len(self.leaks)
        d["n_label_conflicts"] = len(self.label_conflicts)
        if not np.isfinite(self.imbalance_ratio):
            d["imbalance_ratio"] = None
        return d

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON to ``path`` (parent folders are created) and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return p

    # ---------------------------------------------------------------- table
    def _rel(self, p: str) -> str:
        try:
            r = os.path.relpath(p, self.root)
            return p if r.startswith("..") else r
        except ValueError:
            return p

    def table(self) -> str:
        """The report as a plain-text table (what ``kerasclf check`` prints)."""
        lines = [f"kerasclf check {self.root}: {self.n_files} files, {self.n_ok} readable, "
                 f"{self.seconds:.1f} s"]
        # classes
        splits = sorted(self.split_counts, key=lambda s: ("train", "val", "test").index(s)
                        if s in ("train", "val", "test") else 9)
        w = max([5] + [len(c) for c in self.class_counts])
        lines.append("")
        lines.append("classes".ljust(w) + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}")
        for c, n in self.class_counts.items():
            flag = "  < minimum" if c in self.below_min else ""
            lines.append(c.ljust(w) + "".join(f"{self.split_counts[s].get(c, 0):>8}" for s in splits)
                         + f"{n:>8}{flag}")
        ratio = "inf" if not np.isfinite(self.imbalance_ratio) else f"{self.imbalance_ratio:.2f}"
        lines.append(f"imbalance ratio (largest/smallest): {ratio}; "
                     f"classes below {self.min_per_class}: {', '.join(self.below_min) or 'none'}")
        # files
        lines.append("")
        if self.findings:
            rows = [(f.kind, self._rel(f.path), f.reason) for f in self.findings]
            wk = max(len(r[0]) for r in rows)
            wp = min(60, max(len(r[1]) for r in rows))
            lines.append(f"{'problem'.ljust(wk)}  {'file'.ljust(wp)}  reason")
            for k, p, r in rows:
                lines.append(f"{k.ljust(wk)}  {p.ljust(wp)}  {r}")
        else:
            lines.append("files: no problems found")
        # label conflicts: the same image under different labels
        lines.append("")
        lines.append(f"label conflicts: {len(self.label_conflicts)}" + (
            " (the same image under different labels: keep one copy, under the right class)"
            if self.label_conflicts else ""))
        for c in self.label_conflicts:
            how = "exact" if c["kind"] == "exact" else f"near (distance {c['distance']})"
            lines.append(f"  !! {how}: " + " = ".join(f"{self._rel(f)} [{lab}]"
                                                     for f, lab in zip(c["files"], c["labels"])))
        # duplicates (those with conflicting labels are listed above, not again)
        conflicting = {frozenset(c["files"]) for c in self.label_conflicts}
        exact = [d for d in self.exact_duplicates if frozenset(d["files"]) not in conflicting]
        near = [d for d in self.near_duplicates if frozenset((d["a"], d["b"])) not in conflicting]
        lines.append("")
        leaks = len(self.leaks)
        lines.append(f"duplicates (same label): {len(exact)} exact groups, {len(near)} "
                     f"near pairs" + (f"; !! {leaks} CROSS train/val/test (a leak: remove or regroup them)"
                                      if leaks else ""))
        for d in exact:
            tag = "!! CROSSES SPLITS " if d["crosses_splits"] else ""
            where = f" [{'/'.join(d['splits'])}]" if any(d["splits"]) else ""
            lines.append(f"  {tag}exact: " + " = ".join(self._rel(f) for f in d["files"]) + where)
        for d in near:
            tag = "!! CROSSES SPLITS " if d["crosses_splits"] else ""
            where = f" [{d['splits'][0]}/{d['splits'][1]}]" if any(d["splits"]) else ""
            lines.append(f"  {tag}near (distance {d['distance']}): {self._rel(d['a'])} ~ "
                         f"{self._rel(d['b'])}{where}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ----------------------------------------------------------------------------- per file
def _png_bit_depth(head: bytes) -> int | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 24:
        return head[24]
    return None


def _examine(path: str, max_pixels: int | None, hash_name: str) -> dict[str, Any]:
    """Read one file once: bytes → sha256, reader's verdict, perceptual hash."""
    out: dict[str, Any] = {"path": path, "ok": False, "reason": "", "sha": None, "hash": None,
                           "flat": False, "w": 0, "h": 0, "mode": "", "format": "", "converted": None,
                           "bytes": 0}
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            out["reason"] = "symlink loop (the link points back to itself)"
        elif os.path.islink(path):
            out["reason"] = "broken symlink (target missing)"
        else:
            out["reason"] = f"cannot stat file ({e.strerror})"
        return out
    if os.path.isdir(path):
        out["reason"] = "is a folder, not an image file"
        return out
    try:  # streamed: memory stays at one chunk whatever the file's size
        digest, n = hashlib.sha256(), 0
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(0)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                n += len(chunk)
    except OSError as e:
        out["reason"] = f"cannot read file ({e.strerror})"
        return out
    out["bytes"] = n
    out["sha"] = digest.hexdigest() if n else None
    info = inspect_image(path, max_pixels=max_pixels)
    out.update(ok=info.ok, reason=info.reason, w=info.width, h=info.height, mode=info.mode,
               format=info.format)
    if not info.ok:
        return out
    conv = info.converted_from
    depth = _png_bit_depth(head)
    if depth == 16 and not (conv or "").startswith("I;16"):
        conv = f"16-bit {conv or info.mode}"
    out["converted"] = conv
    import imagehash  # a declared dependency: a missing one must fail loudly, not skip hashing
    try:  # perceptual hash from a small decode (JPEG draft mode keeps this cheap)

        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.draft("L", (64, 64))
            small = im.convert("L") if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F") else \
                Image.fromarray((np.asarray(im, np.float64) / max(1.0, float(np.asarray(im).max())) * 255)
                                .astype(np.uint8))
            small = small.resize((64, 64))
            out["flat"] = float(np.asarray(small, np.float32).std()) < 2.0
            out["hash"] = str(getattr(imagehash, hash_name)(small))
    except Exception:  # noqa: BLE001 - the hash is best effort; the reader said it is readable
        pass
    return out


def _mode_text(conv: str) -> str:
    base = conv.replace("16-bit ", "")
    text = _MODE_TEXT.get(base, base)
    return f"16-bit {text}" if conv.startswith("16-bit ") else text


# ----------------------------------------------------------------------------- dataset
def _split_names(spec: DataSpec, splits: Mapping[str, Sequence[int]] | Sequence[str] | None) -> list[str]:
    n = len(spec)
    if splits is None:
        if spec.preset_split is not None:
            return [str(s) if s is not None else "" for s in spec.preset_split]
        return [""] * n
    if isinstance(splits, Mapping):
        names = [""] * n
        for name, idx in splits.items():
            for i in np.asarray(idx, dtype=int):
                names[int(i)] = str(name)
        return names
    names = [str(s) for s in splits]
    if len(names) != n:
        raise ConfigError(f"splits: {len(names)} split names for {n} files")
    return names


def _hamming_pairs(hashes: list[str], threshold: int) -> list[tuple[int, int, int]]:
    """All pairs (i < j) whose hex hashes differ in at most ``threshold`` bits."""
    if len(hashes) < 2:
        return []
    bits = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8)) for h in hashes], np.float32)
    inv = 1.0 - bits
    out = []
    step = 1024
    for s in range(0, len(bits), step):
        a = bits[s:s + step]
        d = a @ inv.T + (1.0 - a) @ bits.T  # Hamming distance by matrix product
        ii, jj = np.nonzero(d <= threshold + 0.5)
        for i, j in zip(ii + s, jj):
            if i < j:
                out.append((int(i), int(j), int(round(d[i - s, j]))))
    return out


def _label_conflicts(spec: DataSpec, results: list[dict[str, Any]], exact: list[dict[str, Any]],
                     near: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Duplicates whose copies carry different labels (exact groups first, then near pairs by distance)."""
    pos = {r["path"]: i for i, r in enumerate(results)}
    out = []
    for d in exact:
        labels = [label_text(spec, pos[f]) or "(none)" for f in d["files"]]
        if len(set(labels)) > 1:
            out.append({"kind": "exact", "files": list(d["files"]), "labels": labels, "distance": 0,
                        "splits": d["splits"]})
    for d in near:
        labels = [label_text(spec, pos[f]) or "(none)" for f in (d["a"], d["b"])]
        if labels[0] != labels[1]:
            out.append({"kind": "near", "files": [d["a"], d["b"]], "labels": labels,
                        "distance": d["distance"], "splits": d["splits"]})
    return out


def check_dataset(spec_or_path: DataSpec | str | os.PathLike, *,
                  splits: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
                  min_per_class: int = 10, tiny: int = 32, huge: int = 4096,
                  near_dup_threshold: int = 4, hash_name: str = "phash",
                  max_pixels: int | None = None, workers: int = 8,
                  decisions: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> CheckReport:
    """Check a dataset and return a :class:`CheckReport`; never modifies the files.

    Args:
        spec_or_path: a :class:`~kerasclf.data.spec.DataSpec` of paths, or a folder (class
            subfolders, or the pre-split ``train/val/test`` layout, read with
            :func:`kerasclf.data.sources.from_folder`; symlinked folders are not followed).
        splits: which split each item is in: ``{"train": idx, ...}`` (as from
            :func:`kerasclf.data.splits.split_indices`) or one name per item. Default: the
            pre-split layout when there is one.
        min_per_class: a class with fewer readable images is reported.
        tiny: images whose shorter side is below this many pixels are reported.
        huge: images whose longer side is above this many pixels are reported.
        near_dup_threshold: maximum Hamming distance (of 64 bits) for a near duplicate.
        hash_name: the ``imagehash`` function: ``phash`` | ``dhash`` | ``ahash`` | ``whash``.
        max_pixels: the reader's decompression-bomb guard.
        workers: threads reading files.
        decisions: a review's ``decisions.csv`` (or several), applied first
            (:func:`~kerasclf.data.decisions.apply_decisions`): excluded files are not checked and
            label conflicts are judged on the labels a run with ``data.decisions`` would use.

    Returns:
        The report.

    Raises:
        DataError: the folder is missing or has no class subfolders.
        ConfigError: bad arguments.

    Example:
        >>> report = check_dataset("data/pets", min_per_class=20)  # doctest: +SKIP
        >>> report.imbalance_ratio, len(report.leaks)  # doctest: +SKIP
        (1.04, 0)
    """
    t0 = time.perf_counter()
    if hash_name not in ("phash", "dhash", "ahash", "whash", "average_hash"):
        raise ConfigError(f"hash_name={hash_name!r}: use phash, dhash, ahash or whash")
    hash_name = {"ahash": "average_hash"}.get(hash_name, hash_name)
    if isinstance(spec_or_path, DataSpec):
        spec = spec_or_path
        root = spec.source.replace("folder ", "", 1) if spec.source.startswith("folder ") else spec.source
    else:
        spec = from_folder(spec_or_path, follow_symlinks=False)
        root = os.fspath(spec_or_path)
    if decisions:
        spec = apply_decisions(spec, decisions)
    if spec.paths is None:
        raise ConfigError(f"{spec.source}: the health check needs image files (this source holds arrays)")
    report = CheckReport(root=root, min_per_class=min_per_class)
    split_of = _split_names(spec, splits)
    for p, r in spec.skipped:
        report.findings.append(Finding(p, "skipped", r))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        results = list(progress(ex.map(lambda p: _examine(p, max_pixels, hash_name), spec.paths),
                                total=len(spec.paths), desc="check", unit="file"))
    report.n_files = len(results)

    counts: Counter[str] = Counter()
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    labels = spec.labels
    for i, r in enumerate(results):
        p = r["path"]
        if not r["ok"]:
            report.findings.append(Finding(p, "unreadable", r["reason"] or "unreadable"))
            continue
        report.n_ok += 1
        if labels.ndim == 1:
            cls = [spec.class_names[int(labels[i])]]
        else:
            cls = [c for c, v in zip(spec.class_names, labels[i]) if v]
        for c in cls:
            counts[c] += 1
            if split_of[i]:
                per_split[split_of[i]][c] += 1
        if r["converted"]:
            report.findings.append(Finding(p, "converted",
                                           f"{_mode_text(r['converted'])} {r['format']}, converted to RGB"))
        ext = os.path.splitext(p)[1].lower()
        want = _EXT_FORMATS.get(ext)
        if want and r["format"] and r["format"] != want and not (want == "JPEG" and r["format"] == "MPO"):
            report.findings.append(Finding(p, "format_mismatch", f"extension {ext} but the file is {r['format']}"))
        w, h = r["w"], r["h"]
        if min(w, h) < tiny:
            report.findings.append(Finding(p, "tiny", f"{w}x{h} (shorter side < {tiny})"))
        if max(w, h) > huge:
            report.findings.append(Finding(p, "huge", f"{w}x{h} (longer side > {huge}; "
                                                      f"{w * h / 1e6:.0f} Mpx, slow to decode)"))

    # classes
    report.class_counts = {c: int(counts.get(c, 0)) for c in spec.class_names}
    report.split_counts = {s: {c: int(per_split[s].get(c, 0)) for c in spec.class_names} for s in per_split}
    vals = list(report.class_counts.values())
    if vals:
        report.imbalance_ratio = float("inf") if min(vals) == 0 else round(max(vals) / min(vals), 3)
    report.below_min = [c for c, n in report.class_counts.items() if n < min_per_class]

    # exact duplicates (readable files only; zero-byte and broken files are already listed)
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        if r["ok"] and r["sha"]:
            by_sha[r["sha"]].append(i)
    exact_pairs: set[tuple[int, int]] = set()
    for members in by_sha.values():
        if len(members) > 1:
            sp = [split_of[i] for i in members]
            report.exact_duplicates.append({"files": [results[i]["path"] for i in members], "splits": sp,
                                            "crosses_splits": len({s for s in sp if s}) > 1})
            exact_pairs.update((a, b) for a in members for b in members if a < b)

    # near duplicates (perceptual hash; flat, detail-free images are not compared)
    hashed = [i for i, r in enumerate(results) if r["ok"] and r["hash"] and not r["flat"]]
    for a, b, dist in _hamming_pairs([results[i]["hash"] for i in hashed], near_dup_threshold):
        i, j = hashed[a], hashed[b]
        if (i, j) in exact_pairs:
            continue
        sp = [split_of[i], split_of[j]]
        report.near_duplicates.append({"a": results[i]["path"], "b": results[j]["path"], "distance": dist,
                                       "splits": sp, "crosses_splits": bool(sp[0] and sp[1] and sp[0] != sp[1])})
    report.near_duplicates.sort(key=lambda d: (not d["crosses_splits"], d["distance"]))
    report.exact_duplicates.sort(key=lambda d: not d["crosses_splits"])
    report.label_conflicts = _label_conflicts(spec, results, report.exact_duplicates, report.near_duplicates)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def run_check(path: str | os.PathLike | DataSpec, out_json: str | os.PathLike | None = None,
              **kwargs: Any) -> CheckReport:
    """Check ``path``, print the table, optionally write JSON (what ``kerasclf check`` calls).

    Args:
        path: a data folder or a :class:`~kerasclf.data.spec.DataSpec`.
        out_json: where to write the JSON report (``None``: not written).
        **kwargs: passed to :func:`check_dataset`.

    Returns:
        The report.

    Example:
        >>> run_check("data/pets", out_json="check.json")  # doctest: +SKIP
    """
    report = check_dataset(path, **kwargs)
    print(report.table())
    if out_json is not None:
        report.to_json(out_json)
        print(f"\nreport written to {out_json}")
    return report
