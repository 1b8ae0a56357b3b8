"""Save/reload round trips in .keras, .h5 and export, checked in a fresh Python process."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kerasclf.errors import ModelError
from kerasclf.io import load_model, read_meta, save_model

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
    from kerasclf.zoo import build

    resnet = build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1))
    transfer = build("backbone_head", num_classes=3, backbone="MobileNet", alpha=0.25, weights=None,
                     input_shape=(32, 32, 3))
    return {"resnet": resnet, "transfer": transfer}


@pytest.mark.parametrize("kind", ["resnet", "transfer"])
def test_round_trip_in_fresh_process(tmp_path, kind):
    model = _models()[kind]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 40, 48, 3)).astype("float32")  # any size: resized inside
    expected = model.predict(images, verbose=0)
    meta = {"class_names": ["a", "b", "c"], "task": "multiclass", "image_size": [32, 32], "num_outputs": 3}
    paths = [save_model(model, tmp_path / name, meta=meta) for name in FORMATS]
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "reload.py"
    script.write_text(RELOAD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "images.npy"), str(tmp_path / "out.json"),
                           *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "out.json").read_text())
    for path in paths:
        got = np.load(str(path).rstrip("/") + ".pred.npy")
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected)) < 1e-5, path
        assert info[str(path)] == {"classes": ["a", "b", "c"], "task": "multiclass", "size": [32, 32]}


def test_meta_travels_and_existing_files_are_not_overwritten(tmp_path):
    from kerasclf.zoo import build

    model = build("simple_cnn", num_classes=4)
    path = save_model(model, tmp_path / "m.keras", meta={"class_names": list("wxyz")})
    assert read_meta(path)["class_names"] == list("wxyz")
    before = path.read_bytes()
    with pytest.raises(ModelError, match="already exists"):
        save_model(model, path)
    assert path.read_bytes() == before


def test_wrong_num_classes_at_reload_names_both(tmp_path):
    from kerasclf.zoo import build

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
