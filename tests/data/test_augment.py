"""Augmentation policies: shapes, value range, labels, tf.data use, errors, in-model use."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from kerasclf.data.augment import (
    AugmentPolicy,
    RandomAffine,
    augment_in_model,
    get_policy,
    list_policies,
)
from kerasclf.data.pipeline import make_dataset
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, UnknownNameError  # noqa: E402


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32"), np.array([0, 1, 2, 1], "int32")


@pytest.mark.parametrize("name", ["light", "cifar", "seed_effnet", "randaugment"])
def test_named_policy_keeps_shape_range_labels(name, batch):
    x, y = batch
    policy = get_policy(name, image_size=(16, 16), seed=1)
    assert isinstance(policy, AugmentPolicy)
    out, labels = policy(x, y)
    assert tuple(out.shape) == x.shape and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    assert np.array_equal(labels.numpy(), y)
    assert not np.allclose(out.numpy(), x) or name == "light"  # something happened (light may no-op)


def test_none_and_list():
    assert get_policy("none", image_size=(8, 8)) is None
    assert get_policy(None, image_size=(8, 8)) is None
    assert {"light", "cifar", "seed_effnet", "randaugment", "mixup", "cutmix"} <= set(list_policies())


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixers_one_hot_labels(name, batch):
    x, y = batch
    policy = get_policy(name, image_size=(16, 16), seed=0, num_classes=3)
    assert policy.one_hot_labels
    out, labels = policy(x, y)
    assert tuple(labels.shape) == (4, 3) and labels.dtype == tf.float32
    np.testing.assert_allclose(labels.numpy().sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="num_classes"):
        get_policy(name, image_size=(16, 16))(x, y)
    # binary float labels (B, 1) are mixed as they are
    _, yb = get_policy(name, image_size=(16, 16), seed=0)(x, np.array([[0.], [1.], [1.], [0.]], "float32"))
    assert tuple(yb.shape) == (4, 1)


def test_custom_list_mixes_keras_and_albumentations(batch):
    x, y = batch
    policy = get_policy([{"name": "RandomFlip", "mode": "horizontal"},
                         {"name": "albumentations.GridDistortion", "p": 1.0}, "mixup"],
                        image_size=(16, 16), seed=3, num_classes=3)
    assert policy.uses_albumentations and len(policy.steps) == 3
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).map(policy, num_parallel_calls=tf.data.AUTOTUNE)
    assert ds.element_spec[0].shape.as_list() == [None, 16, 16, 3]  # static shape kept after numpy_function
    got = [(a.shape, b.shape) for a, b in ds]
    assert got == [((2, 16, 16, 3), (2, 3))] * 2


def test_seeded_policies_repeat(batch):
    x, y = batch
    for name in ("cifar", "seed_effnet"):
        a = get_policy(name, image_size=(16, 16), seed=5)(x, y)[0].numpy()
        b = get_policy(name, image_size=(16, 16), seed=5)(x, y)[0].numpy()
        np.testing.assert_allclose(a, b)


def test_with_make_dataset():
    spec = DataSpec.from_arrays(np.random.default_rng(1).integers(0, 255, (10, 16, 16, 3), dtype=np.uint8),
                                np.arange(10) % 2)
    ds = make_dataset(spec, image_size=(16, 16), batch_size=4, seed=0,
                      augment=get_policy("seed_effnet", image_size=(16, 16), seed=0))
    assert sum(int(x.shape[0]) for x, _ in ds) == 10


def test_unknown_names_suggest():
    with pytest.raises(UnknownNameError, match="cifar"):
        get_policy("cifr", image_size=(8, 8))
    with pytest.raises(UnknownNameError, match="RandomFlip"):
        get_policy([{"name": "RandomFlp"}], image_size=(8, 8))
    with pytest.raises(UnknownNameError, match="GridDistortion"):
        get_policy([{"name": "albumentations.GridDistorsion"}], image_size=(8, 8))
    with pytest.raises(ConfigError, match="distort"):
        get_policy([{"name": "albumentations.GridDistortion", "distort": 0.2}], image_size=(8, 8))
    with pytest.raises(ConfigError, match="name"):
        get_policy([{"mode": "horizontal"}], image_size=(8, 8))


def test_augment_in_model():
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    outer = augment_in_model(inner, "cifar", seed=0)
    x = np.full((2, 8, 8, 3), 100.0, "float32")
    np.testing.assert_allclose(outer.predict(x, verbose=0), inner.predict(x, verbose=0), rtol=1e-5)
    with pytest.raises(ConfigError, match="inside the model"):
        augment_in_model(inner, "seed_effnet")


def test_random_affine_geometry():
    x = np.random.default_rng(2).uniform(0, 255, (6, 10, 12, 3)).astype("float32")
    np.testing.assert_allclose(RandomAffine(flip=False)(x, training=True).numpy(), x, atol=1e-3)
    out = RandomAffine(flip=True, seed=1)(x, training=True).numpy()
    mirrored = [np.allclose(out[i], x[i, :, ::-1], atol=1e-3) for i in range(6)]
    same = [np.allclose(out[i], x[i], atol=1e-3) for i in range(6)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored)
    np.testing.assert_allclose(RandomAffine(rotation=30, seed=0)(x, training=False), x)
    # a pure shift by the full factor moves content: compare with a manual roll on a constant-row image
    rows = np.tile(np.arange(12, dtype="float32")[None, :, None], (10, 1, 3))[None]
    shifted = RandomAffine(flip=False, width_factor=0.25, seed=3)(rows, training=True).numpy()
    assert not np.allclose(shifted, rows) and shifted.min() >= 0 and shifted.max() <= 11


def test_random_affine_saves_with_model(tmp_path):
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model = augment_in_model(inner, "cifar", seed=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")  # no custom_objects needed
    cfg = again.layers[1].get_config()
    assert type(again.layers[1]).__name__ == "RandomAffine" and cfg["rotation"] == 15.0 and cfg["flip"]
    stock = get_policy("cifar_layers", image_size=(8, 8))
    assert [type(l).__name__ for l in stock.keras_layers] == ["RandomFlip", "RandomTranslation", "RandomRotation"]
