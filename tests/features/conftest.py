"""Fixtures for the features tests: real digits, tiny CNNs with the zoo's layer names, PNG folders."""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from kerasclf.data.sources import digits


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the default feature cache out of ~/.cache during tests."""
    old = os.environ.get("KERASCLF_FEATURE_CACHE")
    os.environ["KERASCLF_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("KERASCLF_FEATURE_CACHE", None)
    else:
        os.environ["KERASCLF_FEATURE_CACHE"] = old


@pytest.fixture(scope="session")
def digits_spec():
    """scikit-learn's 1,797 real 8x8 digits as a DataSpec (uint8, one channel)."""
    return digits()


def tiny_cnn(seed: int = 0, *, pool: str = "gap", size: int = 32, name: str | None = None):
    """A small random-init CNN with the zoo's layer names (resize, preprocess, features, predictions).

    ``pool="gap"`` ends the backbone with GlobalAveragePooling2D("features"); ``"flat"`` with
    Flatten("features") (keeps where strokes are: much better clusters on digits).
    """
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((None, None, 3))
    x = L.Resizing(size, size, name="resize")(inp)
    x = L.Rescaling(1 / 255.0, name="preprocess")(x)
    x = L.Conv2D(16, 3, activation="relu", padding="same", name="conv1")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(32, 3, activation="relu", padding="same", name="conv2")(x)
    x = L.MaxPooling2D()(x)
    x = (L.GlobalAveragePooling2D(name="features") if pool == "gap" else L.Flatten(name="features"))(x)
    out = L.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name=name or f"tiny_cnn_{pool}")


def tiny_autoencoder(latent: int = 32, seed: int = 0):
    """Input -> resize -> preprocess -> encoder (sub-model) -> decoder (sub-model)."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    e_in = keras.Input((32, 32, 3))
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(e_in)
    h = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    enc = keras.Model(e_in, L.Dense(latent, name="latent")(L.Flatten()(h)), name="encoder")
    d_in = keras.Input((latent,))
    h = L.Reshape((8, 8, 32))(L.Dense(8 * 8 * 32, activation="relu")(d_in))
    h = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(h)
    dec = keras.Model(d_in, L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid")(h),
                      name="decoder")
    inp = keras.Input((None, None, 3))
    x = L.Rescaling(1 / 255.0, name="preprocess")(L.Resizing(32, 32, name="resize")(inp))
    return keras.Model(inp, dec(enc(x)), name="tiny_autoencoder")


@pytest.fixture(scope="session")
def cnn_factory():
    return tiny_cnn


@pytest.fixture(scope="session")
def ae_factory():
    return tiny_autoencoder


def write_pngs(folder: Path, images: np.ndarray, size: int = 32) -> list[str]:
    """Write uint8 images as PNG files (upsampled, RGB) and return their paths, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        a = np.asarray(img)
        a = a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a
        im = Image.fromarray(a).convert("RGB").resize((size, size), Image.BILINEAR)
        p = folder / f"img_{i:04d}.png"
        im.save(p)
        paths.append(str(p))
    return paths


@pytest.fixture
def png_writer():
    return write_pngs
