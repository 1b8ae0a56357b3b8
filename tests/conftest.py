"""Shared fixtures: the real assets folder and a Keras cache seeded with the offline weights.

TensorFlow is imported the quiet way the CLI imports it (:mod:`kerasclf._startup`), before anything
else can, so its C++ start-up lines never land in pytest's output; the variables set here also
reach every subprocess a test spawns (see ``kerasclf.testing.quiet_env``).
"""
import os
import tempfile

import pytest

# Keras's cache (converted EfficientNet-Lite weights land in its models/) is the session's own, never ~/.keras;
# set before kerasclf (and so Keras) is imported: Keras reads KERAS_HOME once
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="kerasclf-tests-keras-home-")

from kerasclf._startup import import_tensorflow  # noqa: E402  (kerasclf/__init__ does the same on import)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # subprocesses: TensorFlow's later logs, errors only
os.environ.setdefault("MPLBACKEND", "Agg")
import_tensorflow()

import keras.src.backend.config as kcfg  # noqa: E402  (after TensorFlow's quiet import)

from kerasclf.testing import MOBILENET_025_FILE, seed_keras_home  # noqa: E402
from kerasclf.testing import assets_dir as find  # noqa: E402


def pytest_addoption(parser, pluginmanager):
    """``pytest -p no:xdist ...`` (a focused run in one process) accepts the ``-n`` of the project's
    addopts and ignores it, instead of stopping with "unrecognized arguments: -n"."""
    if not pluginmanager.has_plugin("xdist"):  # pytest reserves short options for plugins: xdist's own way
        parser.getgroup("xdist")._addoption("-n", "--numprocesses", dest="numprocesses", default=None,
                                            help="ignored: pytest-xdist is disabled (-p no:xdist)")


@pytest.fixture(scope="session")
def assets_dir():
    """``../shared/assets`` beside the repository (or ``$KERASCLF_ASSETS``); tests that need it
    skip with a reason where it is absent."""
    path = find()
    if path is None:
        pytest.skip("../shared/assets is absent (set KERASCLF_ASSETS to the folder of real test files)")
    return path


@pytest.fixture
def keras_home_with_mobilenet(assets_dir, tmp_path, monkeypatch):
    """A temporary KERAS_HOME whose models/ holds the official MobileNet alpha 0.25 weights.

    Keras reads ``KERAS_HOME`` once, at import (``keras.src.backend.config._KERAS_DIR``), and
    ``get_file`` asks ``config.keras_home()`` at call time, so both the variable and the module
    attribute are patched here; monkeypatch restores both afterwards.
    """
    weights = assets_dir / "keras" / "models" / MOBILENET_025_FILE
    if not weights.is_file():
        pytest.skip(f"{weights} is absent (see ../shared/assets/README.md)")
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))  # recorded first, so the old value comes back
    monkeypatch.setattr(kcfg, "_KERAS_DIR", str(home))
    seed_keras_home(home, [weights])
    return home
