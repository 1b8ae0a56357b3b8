"""Fixtures of the analysis tests: tiny models with kerasclf's layer names and synthetic images.

The "square" data set is built so that attribution has a known right answer: class 0 has a
bright square top-left, class 1 the same square bottom-right, on a noisy background.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

SIZE = 32
SIDE = 12  # side of the bright square
CORNERS = {0: (1, 5), 1: (15, 19)}  # class -> range of the square's top-left row/column (jittered)


def square_images(n: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` uint8 RGB images (half per class), their labels and each square's box (y0, y1, x0, x1).

    Class 0 has a bright square in the top-left quadrant, class 1 in the bottom-right one; the
    square's exact position is jittered, so the heatmap has to follow it image by image.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 110, size=(n, size, size, 3)).astype("uint8")
    boxes = np.zeros((n, 4), dtype="int64")
    for i, c in enumerate(labels):
        lo, hi = CORNERS[int(c)]
        y0, x0 = rng.integers(lo, hi + 1, size=2)
        images[i, y0:y0 + SIDE, x0:x0 + SIDE] = rng.integers(200, 256, size=(SIDE, SIDE, 3))
        boxes[i] = (y0, y0 + SIDE, x0, x0 + SIDE)
    return images, labels, boxes


def tiny_cnn(num_classes: int = 2, *, activation: str = "softmax", size: int = SIZE, seed: int = 0):
    """A small functional CNN following kerasclf's layer names (resize, preprocess, features, predictions)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    y = keras.layers.Resizing(size, size, name="resize")(x)
    y = keras.layers.Rescaling(1 / 255.0, name="preprocess")(y)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(y)
    y = keras.layers.AveragePooling2D(2, name="pool1")(y)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(y)
    y = keras.layers.AveragePooling2D(2, name="pool2")(y)
    y = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(y)
    y = keras.layers.GlobalAveragePooling2D(name="features")(y)
    out = keras.layers.Dense(num_classes, activation=activation, name="predictions")(y)
    return keras.Model(x, out, name="tiny_cnn")


def nested_mobilenet(num_classes: int = 3, size: int = 64):
    """A transfer-style model: keras.applications.MobileNet(alpha=0.25) nested as 'backbone'."""
    x = keras.Input((None, None, 3))
    y = keras.layers.Resizing(size, size, name="resize")(x)
    y = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(y)
    backbone = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, weights=None,
                                            include_top=False, name="backbone")
    y = backbone(y, training=False)
    y = keras.layers.GlobalAveragePooling2D(name="features")(y)
    out = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(y)
    return keras.Model(x, out, name="transfer_mobilenet")


@pytest.fixture(scope="session")
def square_data():
    """(train images, train labels, test images, test labels, test boxes) of the square data set."""
    xtr, ytr, _ = square_images(240, seed=0)
    xte, yte, boxes = square_images(40, seed=1)
    return xtr, ytr, xte, yte, boxes


@pytest.fixture(scope="session")
def trained_square_model(square_data):
    """tiny_cnn trained a few epochs on the square data (a second or two of CPU)."""
    xtr, ytr = square_data[:2]
    model = tiny_cnn(2)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(xtr.astype("float32"), ytr, epochs=12, batch_size=32, verbose=0,
                        validation_split=0.2)
    return model, history.history


@pytest.fixture(scope="session")
def mobilenet_model():
    return nested_mobilenet(3)


def assert_png(path, max_side: int = 2000, min_side: int = 50) -> tuple[int, int]:
    """The file exists, is a PNG that PIL can decode, with sane dimensions; returns (w, h)."""
    path = Path(path)
    assert path.is_file(), f"{path} missing"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        arr = np.asarray(im.convert("L"), dtype="float64")
    assert min_side <= w <= max_side and min_side <= h <= max_side, f"{path}: odd size {w}x{h}"
    assert arr.std() > 1.0, f"{path} looks blank"
    return w, h


@pytest.fixture
def png_ok():
    return assert_png


@pytest.fixture
def make_squares():
    """The :func:`square_images` factory (tests cannot import conftest reliably)."""
    return square_images


@pytest.fixture
def make_cnn():
    """The :func:`tiny_cnn` factory."""
    return tiny_cnn
