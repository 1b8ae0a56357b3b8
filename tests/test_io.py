"""Save/reload round trips in .keras, .h5 and export, checked in a fresh Python process."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import keras

import kerasclf
from kerasclf.errors import ModelError
from kerasclf.io import load_model, read_meta, save_model
from kerasclf.testing import quiet_env, run_python
from kerasclf.zoo import build

FORMATS = ["model.keras", "model.h5", "exported"]

RELOAD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from kerasclf.io import load_model
    images = np.load(sys.argv[1])
    out = {}
    for path in sys.argv[3:]:
        loaded = load_model(path)
        np.save(path.rstrip('/') + '.pred.npy', loaded.predict(images))
        out[path] = {"classes": loaded.class_names, "task": loaded.task, "size": list(loaded.image_size)}
    json.dump(out, open(sys.argv[2], "w"))
""")


def _models():
    resnet = build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1))
    transfer = build("backbone_head", num_classes=3, backbone="MobileNet", alpha=0.25, weights=None,
                     input_shape=(32, 32, 3))
    return {"resnet": resnet, "transfer": transfer}


def test_round_trip_in_fresh_process(tmp_path):
    """A custom-layer resnet and a nested-backbone transfer model, every format, one fresh process."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 40, 48, 3)).astype("float32")  # any size: resized inside
    meta = {"class_names": ["a", "b", "c"], "task": "multiclass", "image_size": [32, 32], "num_outputs": 3}
    expected, paths = {}, []
    for kind, model in _models().items():
        for name in FORMATS:
            path = save_model(model, tmp_path / f"{kind}_{name}", meta=meta)
            expected[str(path)] = model.predict(images, verbose=0)
            paths.append(path)
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "reload.py"
    script.write_text(RELOAD)
    proc = run_python(script, str(tmp_path / "images.npy"), str(tmp_path / "out.json"), *map(str, paths),
                      timeout=600)  # 126-140 s at a load of 6-7 on 2 cores; past 300 s at a load of 11
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "out.json").read_text())
    for path in paths:
        got, want = np.load(str(path).rstrip("/") + ".pred.npy"), expected[str(path)]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) < 1e-5, path
        assert info[str(path)] == {"classes": ["a", "b", "c"], "task": "multiclass", "size": [32, 32]}


def test_meta_travels_and_existing_files_are_not_overwritten(tmp_path):
    model = build("simple_cnn", num_classes=4)
    path = save_model(model, tmp_path / "m.keras", meta={"class_names": list("wxyz")})
    assert read_meta(path)["class_names"] == list("wxyz")
    before = path.read_bytes()
    with pytest.raises(ModelError, match="already exists"):
        save_model(model, path)
    assert path.read_bytes() == before


def test_wrong_num_classes_at_reload_names_both(tmp_path):
    path = save_model(build("simple_cnn", num_classes=4), tmp_path / "m.keras")
    with pytest.raises(ModelError, match=r"4 output\(s\).*num_classes=10"):
        load_model(path, num_classes=10)
    assert load_model(path, num_classes=4).num_outputs == 4


def test_bad_model_files_give_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.keras")
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    with pytest.raises(ModelError, match="junk.keras"):
        load_model(junk)
    with pytest.raises(ModelError, match="unknown model format"):
        save_model(object(), tmp_path / "m.pt")


# Plain Keras, the way a Keras user reloads: fails without kerasclf, works after `import kerasclf`.
PLAIN_RELOAD = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    images, paths = np.load(sys.argv[1]), sys.argv[2:]
    try:
        keras.saving.load_model(paths[0])
    except TypeError as exc:
        assert "Could not locate class" in str(exc), exc
    else:
        raise SystemExit("reloaded without importing kerasclf: this test would prove nothing")
    import kerasclf
    with open(paths[0] + ".modules.txt", "w") as f:
        f.write("\\n".join(m for m in sys.modules if m.startswith("kerasclf")))
    for path in paths:
        np.save(path + ".pred.npy", keras.saving.load_model(path).predict(images, verbose=0))
""")


def _family_models():
    """One small model per zoo family, the custom layers of each included."""
    return {
        "resnet": build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1)),
        "simple_cnn": build("simple_cnn", num_classes=3),
        "deep_cnn": build("deep_cnn", num_classes=3, blocks=(8, 16), convs_per_block=1, dense=16),
        "backbone_head": build("backbone_head", num_classes=3, backbone="MobileNet", alpha=0.25, weights=None,
                               input_shape=(32, 32, 3)),
        "conv_autoencoder": build("conv_autoencoder", input_shape=(32, 32, 3), filters=(8, 16), latent_dim=8),
    }


def test_plain_model_save_reloads_with_plain_keras_after_import_kerasclf(tmp_path):
    """model.save("m.keras") -> fresh process -> `import kerasclf; keras.saving.load_model("m.keras")`."""
    images = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    expected, paths = {}, []
    for name, model in _family_models().items():  # resnet first: the no-kerasclf load must fail on it
        path = tmp_path / f"{name}.keras"
        model.save(path)
        expected[name] = model.predict(images, verbose=0)
        paths.append(str(path))
    script = tmp_path / "plain_reload.py"
    script.write_text(PLAIN_RELOAD)
    # not run_python: its quiet TensorFlow import would import kerasclf before the plain-Keras attempt
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "images.npy"), *paths],
                          capture_output=True, text=True, timeout=300, env=quiet_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every module that registers a custom object is imported by `import kerasclf`
    imported = set((tmp_path / "resnet.keras.modules.txt").read_text().split())
    package = Path(kerasclf.__file__).parent
    registering = {".".join(p.relative_to(package.parent).with_suffix("").parts) for p in package.rglob("*.py")
                   if "register_keras_serializable(" in p.read_text()}
    assert {"kerasclf.zoo.layers", "kerasclf.zoo.resnet", "kerasclf.data.augment"} <= registering
    assert registering <= imported, registering - imported
    for name, want in expected.items():
        got = np.load(tmp_path / f"{name}.keras.pred.npy")
        assert got.shape == want.shape, name
        assert np.max(np.abs(got - want)) < 1e-5, name


def test_import_kerasclf_registers_every_custom_layer():
    registered = kerasclf.custom_objects()
    assert {"kerasclf>Preprocess", "kerasclf>ResidualUnit", "kerasclf>RandomAffine"} <= set(registered)
    for name, cls in registered.items():
        assert keras.saving.get_registered_object(name) is cls


def test_unregistered_custom_layer_error_names_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "m.keras"
    build("simple_cnn", num_classes=2).save(path)
    monkeypatch.delitem(keras.saving.get_custom_objects(), "kerasclf>Preprocess")
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and "m.keras" in message
    assert "'Preprocess'" in message and "`import kerasclf`" in message
