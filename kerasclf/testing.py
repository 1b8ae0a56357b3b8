"""Small real things for tests and examples: tiny models, image folders, and the assets folder.

Example:
    >>> from kerasclf.testing import tiny_cnn
    >>> tiny_cnn(3).output_shape
    (None, 3)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src.backend import config
from PIL import Image

from kerasclf.zoo.heads import classifier_head
from kerasclf.zoo.layers import image_stem
from kerasclf.zoo.resnet import resnet
from kerasclf.zoo.transfer import backbone_head

__all__ = ["tiny_cnn", "tiny_transfer", "tiny_resnet", "square_images", "write_image_folder", "assets_dir", "seed_keras_home",
           "run_apart", "run_python", "python_command", "quiet_env", "MOBILENET_025_FILE"]

MOBILENET_025_FILE = "mobilenet_2_5_224_tf_no_top.h5"


def tiny_cnn(num_classes: int = 2, input_shape: tuple[int, int, int] = (16, 16, 3), task: str = "auto") -> Any:
    """A two-conv model with kerasclf's layer names ("resize", "preprocess", "features",
    "predictions"): seconds to train, for tests of training, analysis and saving."""
    inputs, x = image_stem(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    return keras.Model(inputs, classifier_head(x, num_classes, task), name="tiny_cnn")


def tiny_transfer(num_classes: int = 2, input_shape: tuple[int, int, int] = (32, 32, 3), task: str = "auto",
                  weights: Any = None, **options: Any) -> Any:
    """The smallest real transfer model: MobileNet v1 alpha 0.25 (218,544 backbone params) at
    32×32 with the shared head, nested "backbone", frozen by default. For tests of fine-tuning
    stages, Grad-CAM through a backbone and saving nested models. ``weights="imagenet"`` works
    offline once the ``keras_home_with_mobilenet`` fixture has seeded Keras's cache (then use
    ``input_shape=(224, 224, 3)`` or any size Keras accepts for that file).

    Example:
        >>> m = tiny_transfer(3)
        >>> m.get_layer("backbone").trainable, m.output_shape
        (False, (None, 3))
    """
    return backbone_head(num_classes, backbone="MobileNet", alpha=0.25, input_shape=input_shape, task=task,
                         weights=weights, **options)


def tiny_resnet(num_classes: int = 2, input_shape: tuple[int, int, int] = (16, 16, 3), task: str = "auto") -> Any:
    """A two-unit :func:`kerasclf.zoo.resnet` (stages 8, 16): exercises the custom
    ``ResidualUnit`` layer in saving, reloading and explanation tests in well under a second.

    Example:
        >>> tiny_resnet(3).count_params() < 10_000
        True
    """
    return resnet(num_classes, input_shape=input_shape, task=task, stages=(8, 16), units_per_stage=(1, 1))


def square_images(n_per_class: int = 20, size: int = 24, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright square at a class-specific position on a noisy background."""
    rng = np.random.default_rng(seed)
    side = size // 3
    corners = [(0, 0), (size - side, size - side), (0, size - side), (size - side, 0), (size // 3, size // 3)]
    xs, ys = [], []
    for c in range(classes):
        y0, x0 = corners[c % len(corners)]
        for _ in range(n_per_class):
            img = rng.integers(0, 70, size=(size, size, 3)).astype("uint8")
            img[y0:y0 + side, x0:x0 + side] = 255
            xs.append(img)
            ys.append(c)
    return np.stack(xs), np.array(ys)


def write_image_folder(root: str | Path, n_per_class: int = 16, size: int = 24, classes: int = 3,
                       formats: tuple[str, ...] = ("png", "jpg")) -> Path:
    """Write :func:`square_images` as a folder of class subfolders (``class0/…``), mixed formats."""
    root = Path(root)
    images, labels = square_images(n_per_class, size, classes)
    for i, (img, y) in enumerate(zip(images, labels)):
        folder = root / f"class{y}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img{i}.{formats[i % len(formats)]}")
    return root


#: what a child Python runs first: TensorFlow imported the CLI's quiet way (kerasclf._startup), then the
#: code (``-c``), module (``-m``) or script file it was given, with ``sys.argv`` as that would see it
_PRELUDE = """
import runpy, sys
from kerasclf._startup import import_tensorflow
import_tensorflow()
kind, target, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
if kind == "-c":
    sys.argv = ["-c", *rest]
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
elif kind == "-m":
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    sys.argv = [target, *rest]
    runpy.run_path(target, run_name="__main__")
"""


def quiet_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, with TensorFlow's later logs at errors only (what the
    CLI sets) and ``extra`` on top.

    Example:
        >>> quiet_env(KERAS_BACKEND="jax")["TF_CPP_MIN_LOG_LEVEL"]
        '2'
    """
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"), **extra}


def run_python(code_or_script: str | Path, *args: str, module: bool = False, env: dict[str, str] | None = None,
               timeout: int = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run Python code (a string), a script file (a ``Path``) or a module (``module=True``) in a fresh
    process whose TensorFlow imports quietly first, as the ``kerasclf`` command's does: none of its C++
    start-up lines reach the output. Output is captured as text; ``env`` defaults to :func:`quiet_env`.

    Example:
        >>> run_python("print('hi')").stdout
        'hi\\n'
    """
    return subprocess.run(python_command(code_or_script, *args, module=module), capture_output=True, text=True,
                          timeout=timeout, env=quiet_env() if env is None else env, **kwargs)


def python_command(code_or_script: str | Path, *args: str, module: bool = False) -> list[str]:
    """The command line :func:`run_python` runs (for ``subprocess.Popen``: pass ``env=quiet_env()``).

    Example:
        >>> python_command("print(1)")[-2:]
        ['-c', 'print(1)']
    """
    kind = "-m" if module else ("-c" if isinstance(code_or_script, str) else "file")
    return [sys.executable, "-c", _PRELUDE, kind, str(code_or_script), *map(str, args)]


def run_apart(script: str, done: str = "trained", timeout: int = 300) -> None:
    """Run the Python ``script`` in a fresh process (:func:`run_python`) and assert it exited 0 having
    printed ``done``, so a crash inside TensorFlow (a segfault, an abort) fails one test instead of the
    whole suite.

    Example:
        >>> run_apart("print('trained')")
    """
    proc = run_python(script, timeout=timeout)
    assert proc.returncode == 0 and done in proc.stdout, proc.stderr[-2000:]


def assets_dir() -> Path | None:
    """``../shared/assets`` beside the repository (or ``$KERASCLF_ASSETS``), if it exists."""
    env = os.environ.get("KERASCLF_ASSETS")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "assets"
    return path if path.is_dir() else None


def seed_keras_home(home: str | Path, weight_files: list[Path]) -> Path:
    """Make ``home`` Keras's cache (``$KERAS_HOME``) holding ``models/<file>`` for each file, so
    ``keras.applications.X(weights="imagenet")`` loads them offline with Keras's own code.

    Keras reads ``KERAS_HOME`` once, at import; this also points the running process at it.
    Returns the previous cache folder (restore it with :func:`seed_keras_home` ``(old, [])``).
    """
    home = Path(home)
    (home / "models").mkdir(parents=True, exist_ok=True)
    for f in weight_files:
        shutil.copy(f, home / "models" / Path(f).name)
    previous = config._KERAS_DIR
    config._KERAS_DIR = str(home)
    os.environ["KERAS_HOME"] = str(home)
    return Path(previous)
