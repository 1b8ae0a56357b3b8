"""Transfer builders: preprocessing inside, weights guard, weights from a file, fine-tuning counts,
nested models through .keras and .h5 (in-process; the fresh-process round trip lives in test_io)."""
import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils
from keras.src.utils import file_utils

from kerasclf.errors import ConfigError, ModelError
from kerasclf.testing import tiny_resnet, tiny_transfer
from kerasclf.zoo import (
    Preprocess,
    build,
    feature_model,
    input_size,
    set_backbone_trainable,
)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _weights_of(layers):
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.weights)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocess_matches_keras_applications(mode):
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    expected = imagenet_utils.preprocess_input(x.copy(), mode=mode)
    np.testing.assert_allclose(np.asarray(Preprocess(mode)(x)), expected, rtol=1e-5, atol=1e-4)
    layer = Preprocess.from_config(Preprocess(mode, name="p").get_config())
    assert layer.mode == mode and layer.name == "p"
    with pytest.raises(ConfigError, match="scale01"):
        Preprocess("imagenet")


def test_imagenet_weights_failure_is_a_clear_model_error(monkeypatch):
    """No network here: Keras's own get_file fails; the error names backbone, file, version, fix."""
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure (simulated: no network)")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ModelError) as err:
        build("efficientnet_b0_head", num_classes=3, input_shape=(32, 32, 3), weights="imagenet")
    msg = str(err.value)
    for part in ("EfficientNetB0", "efficientnetb0_notop.h5", keras.__version__, "weights=None", "#21529"):
        assert part in msg


def test_backbone_option_and_size_errors_are_config_errors():
    with pytest.raises(ConfigError, match="unexpected keyword argument 'depth'"):
        build("backbone_head", backbone="MobileNet", depth=3, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ConfigError, match="at least 32x32"):
        build("vgg16_head", weights=None, input_shape=(16, 16, 3))


def test_weights_from_a_local_file(tmp_path):
    source = tiny_transfer(2)
    path = tmp_path / "mobilenet_025.weights.h5"
    source.get_layer("backbone").save_weights(path)
    loaded = tiny_transfer(2, weights=str(path))
    for a, b in zip(source.get_layer("backbone").get_weights(), loaded.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fine_tune_from_gives_the_expected_trainable_counts():
    model = tiny_transfer(3)
    head = 256 * 3 + 3
    assert _trainable(model) == head
    layers = model.get_layer("backbone").layers
    not_bn = [layer for layer in layers if not isinstance(layer, keras.layers.BatchNormalization)]
    set_backbone_trainable(model, 6)
    assert _trainable(model) == head + _weights_of(l for l in layers[-6:] if l in not_bn)
    start = [layer.name for layer in layers].index("conv_dw_13")
    by_name = tiny_transfer(3, fine_tune_from="conv_dw_13")  # the builder option does the same
    assert _trainable(by_name) == head + _weights_of(l for l in layers[start:] if l in not_bn)
    assert not any(l.trainable for l in by_name.get_layer("backbone").layers
                   if isinstance(l, keras.layers.BatchNormalization))
    set_backbone_trainable(model, True)
    assert _trainable(model) == head + _trainable(model.get_layer("backbone"))
    set_backbone_trainable(model, False)
    assert _trainable(model) == head


@pytest.mark.parametrize("make", [tiny_resnet, tiny_transfer], ids=["resnet", "transfer"])
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_nested_and_custom_layers_reload_without_custom_objects(make, ext, tmp_path):
    model = make(3)
    x = np.random.default_rng(1).integers(0, 256, (2, 20, 24, 3)).astype("uint8")
    path = tmp_path / f"m.{ext}"
    model.save(path)
    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert input_size(reloaded) == input_size(model)


def test_feature_model_and_input_size():
    model = tiny_transfer(3, input_shape=(48, 48, 3))
    assert input_size(model) == (48, 48)
    feats = feature_model(model).predict(np.zeros((1, 10, 10, 3), "uint8"), verbose=0)
    assert feats.shape == (1, 256)  # MobileNet alpha 0.25: 1024 * 0.25 channels, pooled
    with pytest.raises(ModelError, match="no layer 'nope'"):
        feature_model(model, "nope")
