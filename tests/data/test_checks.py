"""Health check on a hostile folder: every bad file listed with its reason, nothing modified."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.data import checks, splits
from kerasclf.data.augment import get_policy
from kerasclf.data.checks import CheckReport, check_dataset, run_check
from kerasclf.data.sources import from_folder
from kerasclf.data.spec import DataSpec


def _texture(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random image (low frequencies), so perceptual hashes are stable and distinct."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    return np.asarray(small.resize((size, size), Image.BILINEAR))


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):  # does not follow symlinked folders
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out[p] = ("link:" + os.readlink(p), os.lstat(p).st_mtime_ns)
            else:
                out[p] = (hashlib.sha256(Path(p).read_bytes()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """Pre-split folder (train/test × a/b) with every kind of bad file the issue names."""
    root = tmp_path_factory.mktemp("hostile") / "data"
    seed = 0
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                seed += 1
                Image.fromarray(_texture(seed)).save(d / f"{c}{i}.jpg", quality=95)
    ta, tb = root / "train" / "a", root / "train" / "b"
    good = (ta / "a0.jpg").read_bytes()
    (ta / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (ta / "zero.jpg").write_bytes(b"")
    (ta / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    Image.fromarray(_texture(101)).convert("CMYK").save(ta / "cmyk.jpg")
    Image.fromarray((np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16)).save(tb / "gray16.png")
    Image.fromarray(_texture(102)).convert("RGBA").save(tb / "rgba.png")
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tb / "one.png")
    Image.fromarray(_texture(103, size=8)).save(tb / "eight.png")
    Image.new("RGB", (6000, 6000), (90, 120, 150)).save(tb / "big.png", compress_level=1)
    os.symlink("loop.jpg", tb / "loop.jpg")           # a file link that points to itself
    os.symlink("..", ta / "loopdir")                  # a folder link back up: a loop if followed
    # exact duplicate across train/test, near duplicate (re-encoded, brightened) across train/test
    (root / "test" / "a" / "copy_of_a0.jpg").write_bytes(good)
    near = np.clip(np.asarray(Image.open(tb / "b1.jpg")).astype(int) + 6, 0, 255).astype(np.uint8)
    Image.fromarray(near).save(root / "test" / "b" / "near_b1.png")
    return root


@pytest.fixture(scope="module")
def report_and_snapshots(hostile) -> tuple[CheckReport, dict, dict]:
    before = _snapshot(hostile)
    report = check_dataset(hostile, min_per_class=5)
    after = _snapshot(hostile)
    return report, before, after


def _reason(report: CheckReport, name: str, kind: str) -> str:
    hits = [f.reason for f in report.findings if f.kind == kind and os.path.basename(f.path) == name]
    assert hits, f"{name} not reported as {kind}: {report.table()}"
    return hits[0]


def test_bad_files_listed_with_reason(report_and_snapshots):
    report, _, _ = report_and_snapshots
    assert "truncated" in _reason(report, "truncated.jpg", "unreadable")
    assert "zero-byte" in _reason(report, "zero.jpg", "unreadable")
    assert "not an image" in _reason(report, "notes.jpg", "unreadable")
    assert "symlink loop" in _reason(report, "loop.jpg", "unreadable")
    assert "not followed" in _reason(report, "loopdir", "skipped")
    bad = {os.path.basename(p) for p, _ in report.bad_files}
    assert {"truncated.jpg", "zero.jpg", "notes.jpg", "loop.jpg", "loopdir"} <= bad


def test_converted_tiny_huge(report_and_snapshots):
    report, _, _ = report_and_snapshots
    assert "CMYK" in _reason(report, "cmyk.jpg", "converted")
    assert "16-bit" in _reason(report, "gray16.png", "converted")
    assert "RGBA" in _reason(report, "rgba.png", "converted")
    assert "8x8" in _reason(report, "eight.png", "tiny")
    assert "too small (1x1" in _reason(report, "one.png", "unreadable")  # unusable, as in training
    assert "6000x6000" in _reason(report, "big.png", "huge")
    conv = {os.path.basename(p) for p, _ in report.converted}
    assert conv == {"cmyk.jpg", "gray16.png", "rgba.png"}
    assert not {"cmyk.jpg", "gray16.png", "rgba.png", "eight.png", "big.png"} & {
        os.path.basename(p) for p, _ in report.bad_files}


def test_duplicates_cross_splits(report_and_snapshots):
    report, _, _ = report_and_snapshots
    exact = [d for d in report.exact_duplicates
             if {os.path.basename(f) for f in d["files"]} == {"a0.jpg", "copy_of_a0.jpg"}]
    assert exact and exact[0]["crosses_splits"] and sorted(exact[0]["splits"]) == ["test", "train"]
    near = [d for d in report.near_duplicates
            if {os.path.basename(d["a"]), os.path.basename(d["b"])} == {"b1.jpg", "near_b1.png"}]
    assert near and near[0]["crosses_splits"]
    assert len(report.leaks) == 2  # nothing else is falsely paired
    assert "!! CROSSES SPLITS" in report.table()


def test_classes_and_files_unchanged(report_and_snapshots, tmp_path):
    report, before, after = report_and_snapshots
    assert before == after  # contents and mtimes unchanged, nothing added or removed
    assert set(report.split_counts) == {"train", "test"}
    assert report.class_counts["a"] == 4 + 2 + 1 + 1  # good + copy + CMYK (converted, kept)
    assert report.class_counts["b"] == 4 + 2 + 1 + 4  # good + near + 4 odd-but-readable (not the loop, not the 1x1)
    assert report.imbalance_ratio == pytest.approx(11 / 8)
    data = json.loads(report.to_json(tmp_path / "r" / "check.json").read_text())
    assert data["leaks"] == 2 and len(data["bad_files"]) == 6  # one.png (1x1) among them


def test_run_check_prints_and_min_per_class(hostile, tmp_path, capsys):
    report = run_check(hostile, out_json=tmp_path / "c.json", min_per_class=9, near_dup_threshold=0)
    out = capsys.readouterr().out
    assert "zero-byte file" in out and "imbalance ratio" in out
    assert report.below_min == ["a"]
    assert (tmp_path / "c.json").exists()


def test_epoch_over_hostile_folder_completes(hostile):
    pipeline = pytest.importorskip("kerasclf.data.pipeline")

    spec = from_folder(hostile)
    ds = pipeline.make_dataset(spec, image_size=(16, 16), batch_size=8, seed=0,
                               augment=get_policy("light", image_size=(16, 16), seed=0))
    n = sum(int(x.shape[0]) for x, _ in ds)
    skipped = {os.path.basename(p) for p, _ in spec.skipped}
    assert {"truncated.jpg", "zero.jpg", "notes.jpg", "loop.jpg", "one.png"} <= skipped
    assert n == len(spec) - 5


def test_splits_mapping_marks_leak(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(_texture(200 + i)).save(p)
        paths.append(str(p))
    (tmp_path / "dup.png").write_bytes(Path(paths[0]).read_bytes())
    paths.append(str(tmp_path / "dup.png"))
    spec = DataSpec(class_names=["x", "y"], labels=np.array([0, 1, 0, 1, 0]), paths=paths, task="binary")
    report = check_dataset(spec, splits={"train": [0, 1, 2], "val": [3], "test": [4]}, min_per_class=1)
    assert len(report.exact_duplicates) == 1 and report.exact_duplicates[0]["crosses_splits"]
    assert report.split_counts["train"] == {"x": 2, "y": 1}
    same = check_dataset(spec, splits=["train"] * 5, min_per_class=1)
    assert not same.leaks and len(same.exact_duplicates) == 1


@pytest.mark.assets
def test_real_cats_vs_dogs_duplicates(assets):
    folder = assets / "cats_vs_dogs" / "dog"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    names = ["dog.74.jpg", "dog.180.jpg", "dog.980.jpg", "dog.1273.jpg"] + [f"dog.{i}.jpg" for i in range(1, 13)]
    paths = [str(folder / n) for n in names if (folder / n).exists()]
    spec = DataSpec(class_names=["dog"], labels=np.zeros(len(paths), int), paths=paths, task="binary")
    report = check_dataset(spec, min_per_class=1)
    groups = {frozenset(os.path.basename(f) for f in d["files"]) for d in report.exact_duplicates}
    assert {frozenset({"dog.74.jpg", "dog.180.jpg"}), frozenset({"dog.980.jpg", "dog.1273.jpg"})} <= groups
    assert not report.bad_files


def test_same_image_in_two_class_folders_is_a_label_conflict(tmp_path):
    """The issue's case: one photo written into two class folders is named a label conflict (exact and
    near), in its own section and count; a same-label duplicate stays an ordinary duplicate."""
    root = tmp_path / "data"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_texture(300 + i)).save(root / "cat" / f"c{i}.png")
        Image.fromarray(_texture(310 + i)).save(root / "dog" / f"d{i}.png")
    (root / "dog" / "c0_again.png").write_bytes((root / "cat" / "c0.png").read_bytes())    # exact, other label
    (root / "cat" / "c1_copy.png").write_bytes((root / "cat" / "c1.png").read_bytes())     # exact, same label
    Image.fromarray(np.clip(_texture(302).astype(int) + 6, 0, 255).astype(np.uint8)).save(
        root / "dog" / "c2_bright.png")                                                      # near, other label
    before = _snapshot(root)
    report = check_dataset(root, min_per_class=1)
    assert _snapshot(root) == before
    kinds = sorted((c["kind"], tuple(sorted(os.path.basename(f) for f in c["files"])), tuple(sorted(c["labels"])))
                   for c in report.label_conflicts)
    assert kinds == [("exact", ("c0.png", "c0_again.png"), ("cat", "dog")),
                     ("near", ("c2.png", "c2_bright.png"), ("cat", "dog"))]
    assert not report.ok and report.to_dict()["n_label_conflicts"] == 2
    table = report.table()
    assert "label conflicts: 2" in table and "duplicates (same label): 1 exact groups, 0 near pairs" in table
    section = table.split("label conflicts:")[1].split("duplicates (same label)")[0]
    assert "c0_again.png [dog]" in section and "c1_copy.png" not in section


def test_label_conflicts_use_the_manifest_label_text():
    """One label-as-text function (splits' manifest form) serves the check; an empty multi-label
    row shows as "(none)" in the conflicts, as the manifest writes it empty."""
    spec = DataSpec(class_names=["Smiling", "Male"], labels=np.array([[1, 1], [0, 0], [1, 0]]),
                    paths=["a.png", "b.png", "c.png"])
    assert checks.label_text is splits.label_text
    results = [{"path": p} for p in spec.paths]
    out = checks._label_conflicts(spec, results, [{"files": ["a.png", "b.png"], "splits": []}],
                                  [{"a": "a.png", "b": "c.png", "distance": 3, "splits": []}])
    assert [c["labels"] for c in out] == [["Smiling|Male", "(none)"], ["Smiling|Male", "Smiling"]]
    assert [splits.label_text(spec, i) for i in range(3)] == ["Smiling|Male", "", "Smiling"]
