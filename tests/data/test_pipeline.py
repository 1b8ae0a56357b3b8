"""Pipeline: shapes, dtypes and labels per task; seeded order; corrupt files skipped; predict batches."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasclf.data import pipeline, sources, splits
from kerasclf.data.augment import get_policy
from kerasclf.data.spec import DataSpec
from kerasclf.errors import DataError


def _collect(ds):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_folder_multiclass_shapes(image_folder):
    spec = sources.from_folder(image_folder)
    ds = pipeline.make_dataset(spec, image_size=(16, 16), batch_size=8)
    x, y = _collect(ds)
    assert x.shape == (36, 16, 16, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 150
    assert np.array_equal(y, spec.labels)  # unshuffled: the spec's order
    # the colour encodes the class: every format/mode (gray excepted) decoded to the right channel
    for img, lab, p in zip(x, y, spec.paths):
        if int(p.rsplit("_", 1)[1][:3]) % 6 != 2:  # every 6th file is grayscale
            assert int(np.argmax(img.mean((0, 1)))) == lab % 3, p
    g1 = next(iter(pipeline.make_dataset(spec, [0, 1], image_size=(8, 8), channels=1, cache=None)))[0]
    assert g1.shape == (2, 8, 8, 1)


def test_binary_and_multilabel_labels(make_folder):
    spec = sources.from_folder(make_folder({"cat": 3, "dog": 3}))
    x, y = next(iter(pipeline.make_dataset(spec, image_size=(8, 8), batch_size=6)))
    assert y.shape == (6, 1) and y.dtype.name == "float32"
    ml = DataSpec.from_arrays(np.zeros((5, 6, 6, 3), "uint8"), [[1, 0, 1]] * 5, class_names=list("abc"))
    x, y = next(iter(pipeline.make_dataset(ml, image_size=(6, 6), batch_size=5)))
    assert y.shape == (5, 3) and y.dtype.name == "float32" and x.shape == (5, 6, 6, 3)


def test_digits_upsampled_to_rgb():
    spec = sources.digits()
    parts = splits.split_indices(spec, seed=42)
    ds = pipeline.make_dataset(spec, parts["val"], image_size=(32, 32), batch_size=32, drop_remainder=True)
    x, y = next(iter(ds))
    assert tuple(x.shape) == (32, 32, 32, 3) and x.dtype.name == "float32" and tuple(y.shape) == (32,)
    assert np.allclose(x[..., 0], x[..., 2])  # gray repeated to RGB


@pytest.mark.parametrize("cache", ["memory", None])
def test_seeded_order_is_deterministic(image_folder, cache):
    spec = sources.from_folder(image_folder)

    def order(seed):
        ds = pipeline.make_dataset(spec, image_size=(8, 8), batch_size=36, shuffle=True, seed=seed, cache=cache)
        x, y = _collect(ds)
        assert sorted(y.tolist()) == sorted(spec.labels.tolist())  # a permutation, nothing lost
        return x.sum((1, 2, 3)).tolist()

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_corrupt_files_skipped_not_crashing(hostile_folder, tmp_path):
    spec = sources.from_folder(hostile_folder)
    assert len(spec) == 15
    augment_calls = []

    def augment(x, y):
        augment_calls.append(1)
        return x, y

    ds = pipeline.make_dataset(spec, image_size=(8, 8), batch_size=4, augment=augment,
                               cache=str(tmp_path / "cache"))
    x, y = _collect(ds)
    assert len(x) == 12 and augment_calls  # 10 good + CMYK + 16-bit
    reasons = {p.rsplit("/", 1)[1]: r for p, r in spec.skipped}
    assert "zero-byte" in reasons["zero.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    x2, _ = _collect(ds)  # a second epoch from the disk cache
    assert np.array_equal(x, x2)


def test_file_batches(hostile_folder):
    paths = sorted(str(p) for p in hostile_folder.rglob("*") if p.is_file())
    batches = pipeline.file_batches(paths, (10, 10), batch_size=4)
    got = [(ps, x) for ps, x in batches]
    n_ok = sum(len(ps) for ps, _ in got)
    assert n_ok == 12 and all(x.dtype == np.float32 and x.shape[1:] == (10, 10, 3) for _, x in got)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in batches.skipped) == ["notes.jpg", "truncated.jpg", "zero.jpg"]


def test_file_failing_only_at_decode_is_recorded(make_folder):
    """A JPEG whose header is fine but whose data stops short goes to the PIL path, fails, is listed."""
    base = make_folder({"a": 3, "b": 3}, name="late")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(base / "a" / "cut.jpg", quality=95)
    data = (base / "a" / "cut.jpg").read_bytes()
    (base / "a" / "cut.jpg").write_bytes(data[: int(len(data) * 0.7)])
    spec = sources.from_folder(base)
    flags, skipped = pipeline.prevalidate(spec.paths)
    assert not skipped and (flags == 0).sum() >= 1  # header looks fine: routed to the PIL reader
    x, y = _collect(pipeline.make_dataset(spec, image_size=(8, 8), batch_size=4, cache=None))
    assert len(x) == 6
    assert [(p.rsplit("/", 1)[1], "truncated" in r) for p, r in spec.skipped] == [("cut.jpg", True)]


def test_one_reader_same_pixels_everywhere(make_folder):
    """Training batches, prediction batches and split arrays of the same files are identical."""
    base = make_folder({"a": 4, "b": 3}, name="parity")
    spec = sources.from_folder(base)
    x_train, y_train = _collect(pipeline.make_dataset(spec, image_size=(12, 9), batch_size=3, cache=None))
    x_split, y_split = pipeline.split_arrays(spec, image_size=(12, 9), batch_size=5)
    got = {p: x for ps, xb in pipeline.file_batches(spec.paths, (12, 9), batch_size=2) for p, x in zip(ps, xb)}
    assert x_split.shape == (7, 12, 9, 3) and np.array_equal(x_train, x_split)
    assert np.array_equal(y_train, y_split)
    assert np.array_equal(np.stack([got[p] for p in spec.paths]), x_split)


def test_split_arrays_needs_a_size_for_files(make_folder):
    spec = sources.from_folder(make_folder({"a": 2, "b": 2}, name="nosize"))
    with pytest.raises(DataError, match="image size"):
        pipeline.split_arrays(spec)


@pytest.mark.parametrize("cache", ["memory", pytest.param(None, marks=pytest.mark.slow)])  # uncached: ~50 s
def test_training_passes_are_keyed_by_number(image_folder, cache):
    """Pass p's order and augmentation depend on (seed, p) alone: read in any order, after any other pass,
    from a freshly built pipeline, pass p is the same; passes differ from one another. (A resumed run
    replayed every missed pass to get there.)"""
    spec = sources.from_folder(image_folder)
    policy = [{"name": "RandomAffine", "flip": True, "width_factor": 0.1, "rotation": 15},
              {"name": "albumentations.GaussNoise", "p": 1.0}]

    def passes():
        return pipeline.make_passes(spec, image_size=(12, 12), batch_size=8, shuffle=True, seed=3, cache=cache,
                                    augment=get_policy(policy, image_size=(12, 12), seed=3))

    a = passes()
    first = [_collect(a.one(p)) for p in (0, 1, 2)]
    later = _collect(passes().one(2))  # a new pipeline (a resumed process) reading pass 2 first
    np.testing.assert_array_equal(later[0], first[2][0])
    np.testing.assert_array_equal(later[1], first[2][1])
    np.testing.assert_array_equal(_collect(a.one(0))[0], first[0][0])  # again, after passes 1 and 2
    assert not np.array_equal(first[0][1], first[1][1])  # another order
    assert sorted(first[1][1].tolist()) == sorted(spec.labels.tolist()) and a.steps == 5  # 36 images, nothing lost
    key = tf.Variable(2, dtype=tf.int64)  # what fit reads: the pass the epoch key names when an epoch starts
    np.testing.assert_array_equal(_collect(a.epochs(key))[0], first[2][0])
    key.assign(1)
    np.testing.assert_array_equal(_collect(a.epochs(key))[0], first[1][0])
