"""Keras safe_mode stays on: a Python lambda inside a .keras or .h5 model is refused, and an exported
SavedModel runs its traced graph, never the Python that built it."""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasclf
from kerasclf.cli import main
from kerasclf.errors import ModelError
from kerasclf.io import load_model, save_model

CALLS: list[int] = []


def _lambda_model() -> keras.Model:
    """A model whose Lambda layer records every Python call (the side effect looked for)."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: (CALLS.append(1), t * 2.0)[1], output_shape=(8, 8, 3), name="py_lambda")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="predictions")(x))


def test_the_package_never_turns_safe_mode_off():
    root = Path(kerasclf.__file__).parent
    unsafe = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py")
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"safe_mode\s*=\s*(False|0|None)\b|enable_unsafe_deserialization", line)]
    assert not unsafe, f"safe_mode turned off at {unsafe}"


def test_no_loader_in_the_package_unpickles():
    """np.load always with allow_pickle=False; pickle / joblib loads only in convert_artifact (--trust)."""
    root = Path(kerasclf.__file__).parent
    found = set()
    for p in root.rglob("*.py"):
        for line in p.read_text().splitlines():
            code = line.split("#")[0]
            if (re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code) or \
                    re.search(r"\b(pickle|joblib|dill|cloudpickle)\.loads?\(|torch\.load\(", code):
                found.add(f"{p.relative_to(root)}: {code.strip()}")
    assert found == {"features/artifacts.py: obj = joblib.load(path)"}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_lambda_in_a_keras_or_h5_model_is_refused(tmp_path, suffix, capsys):
    path = tmp_path / f"evil{suffix}"
    _lambda_model().save(path)
    before = path.read_bytes()
    CALLS.clear()
    with pytest.raises(ModelError) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    (tmp_path / "imgs").mkdir()
    keras.utils.save_img(tmp_path / "imgs" / "a.png", np.zeros((8, 8, 3), "uint8"))
    assert main(["predict", str(path), str(tmp_path / "imgs")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert CALLS == [] and path.read_bytes() == before


def test_an_exported_savedmodel_runs_its_graph_not_python(tmp_path):
    model = _lambda_model()
    x = np.random.default_rng(0).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    save_model(model, tmp_path / "export", meta={"class_names": ["a", "b"]})
    CALLS.clear()
    loaded = load_model(tmp_path / "export")
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert CALLS == []  # the lambda's Python ran while tracing the export, never on load or predict
