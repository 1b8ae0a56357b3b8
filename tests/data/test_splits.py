"""Splits: seeded, stratified, order-independent, grouped, pre-split; manifest round trip and reuse."""
from __future__ import annotations

import numpy as np
import pytest

from kerasclf.data import sources, splits
from kerasclf.data.spec import DataSpec
from kerasclf.errors import DataError


def _paths_spec(n_per=(30, 20, 10), order=None, groups=False) -> DataSpec:
    paths, labels = [], []
    for c, n in enumerate(n_per):
        for i in range(n):
            paths.append(f"/data/c{c}/img{i:03d}.jpg")
            labels.append(c)
    idx = np.arange(len(paths)) if order is None else order
    g = np.array([p.rsplit("img", 1)[1][:2] + p[7] for p in paths], dtype=object) if groups else None
    return DataSpec(class_names=["a", "b", "c"], labels=np.array(labels)[idx],
                    paths=[paths[i] for i in idx], groups=None if g is None else g[idx])


def _as_ids(spec, parts):
    return {k: sorted(spec.paths[i] for i in v) for k, v in parts.items()}


def test_same_seed_same_split_any_listing_order():
    a = _paths_spec()
    perm = np.random.default_rng(5).permutation(len(a))
    b = _paths_spec(order=perm)
    pa, pb = splits.split_indices(a, seed=7), splits.split_indices(b, seed=7)
    assert _as_ids(a, pa) == _as_ids(b, pb)
    assert _as_ids(a, splits.split_indices(a, seed=7)) == _as_ids(a, pa)
    assert _as_ids(a, splits.split_indices(a, seed=8)) != _as_ids(a, pa)


def test_stratified_and_complete():
    spec = _paths_spec((30, 20, 10))
    parts = splits.split_indices(spec, (0.7, 0.1, 0.2), seed=42)
    all_idx = np.concatenate(list(parts.values()))
    assert sorted(all_idx.tolist()) == list(range(len(spec)))  # a partition
    for name, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        counts = np.bincount(spec.labels[parts[name]], minlength=3)
        assert (counts > 0).all(), name  # every class in every split
        expected = frac * np.array([30, 20, 10])
        assert np.all(np.abs(counts - expected) <= 1.0), (name, counts, expected)


def test_digits_split_70_10_20():
    spec = sources.digits()
    parts = splits.split_indices(spec, (0.7, 0.1, 0.2), seed=42)
    sizes = {k: len(v) for k, v in parts.items()}
    assert abs(sizes["train"] - 1258) <= 10 and abs(sizes["test"] - 359) <= 10
    for v in parts.values():
        assert len(np.unique(spec.labels[v])) == 10


def test_groups_never_cross():
    spec = _paths_spec((40, 40, 40), groups=True)
    parts = splits.split_indices(spec, (0.6, 0.2, 0.2), seed=3)
    seen = {}
    for name, idx in parts.items():
        for g in set(spec.groups[idx]):
            assert seen.setdefault(g, name) == name, f"group {g} in {seen[g]} and {name}"
    for idx in parts.values():
        assert len(np.unique(spec.labels[idx])) == 3
    assert abs(len(parts["train"]) - 72) <= 12


def test_multilabel_split():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < 0.4).astype(int)
    spec = DataSpec.from_arrays(np.zeros((200, 4, 4), "uint8"), y, class_names=list("abcd"))
    assert spec.task == "multilabel"
    parts = splits.split_indices(spec, seed=1)
    assert sum(len(v) for v in parts.values()) == 200
    for idx in parts.values():
        assert (spec.labels[idx].sum(0) > 0).all()
    assert abs(spec.labels[parts["test"]].mean() - y.mean()) < 0.05


def test_presplit_honoured(presplit_folder):
    spec = sources.from_folder(presplit_folder)
    parts = splits.split_indices(spec, seed=0)
    for name in ("train", "val", "test"):
        assert set(spec.preset_split[parts[name]]) == {name}
    # no val folder: val is carved from train, test kept as given
    spec.preset_split = np.where(spec.preset_split == "val", "train", spec.preset_split)
    parts = splits.split_indices(spec, (0.7, 0.1, 0.2), seed=0)
    assert set(spec.preset_split[parts["val"]]) == {"train"} and len(parts["val"]) >= 2
    assert set(spec.preset_split[parts["test"]]) == {"test"} and len(parts["test"]) == 6


def test_manifest_round_trip_and_reuse(tmp_path):
    spec = _paths_spec(groups=True)
    m = tmp_path / "runs" / "split.csv"
    parts = splits.split_or_reuse(spec, m, (0.7, 0.1, 0.2), seed=1)
    header = m.read_text().splitlines()[0]
    assert header == "id,label,split,group"
    back = splits.read_manifest(m, spec)
    assert all(np.array_equal(parts[k], back[k]) for k in parts)
    again = splits.split_or_reuse(spec, m, (0.5, 0.25, 0.25), seed=99)  # reused, not re-split
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    other = _paths_spec((3, 3, 3))
    other.paths = [p.replace("/data/", "/elsewhere/x") for p in other.paths]
    with pytest.raises(DataError, match="split.csv"):
        splits.read_manifest(m, other)


def test_manifest_multilabel_labels(tmp_path):
    spec = DataSpec.from_arrays(np.zeros((6, 2, 2), "uint8"), [[1, 0], [1, 1], [0, 1]] * 2,
                                class_names=["Smiling", "Male"])
    splits.write_manifest(tmp_path / "m.csv", spec, {"train": np.arange(6)})
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[1] == "#0,Smiling,train" and lines[2] == "#1,Smiling|Male,train"


def test_sample_keeps_class_shares_is_seeded_and_order_free():
    spec = _paths_spec((60, 30, 10))
    picked = splits.sample_indices(spec, 20, seed=3)
    assert len(picked) == 20 and len(set(picked)) == 20
    assert np.bincount(spec.labels[picked], minlength=3).tolist() == [12, 6, 2]  # not the first 20 (all class a)
    perm = np.random.default_rng(1).permutation(len(spec))
    shuffled = _paths_spec((60, 30, 10), order=perm)
    again = splits.sample_indices(shuffled, 20, seed=3)
    assert sorted(shuffled.paths[i] for i in again) == sorted(spec.paths[i] for i in picked)
    assert set(splits.sample_indices(spec, 20, seed=4)) != set(picked)
    within = splits.sample_indices(spec, 5, index=np.arange(60, 100), seed=3)  # from a subset (a split)
    assert len(within) == 5 and within.min() >= 60
    assert splits.sample_indices(spec, 500).tolist() == list(range(len(spec)))
