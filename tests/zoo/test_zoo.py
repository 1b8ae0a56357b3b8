"""The zoo: exact parameter counts, every builder runs, options, errors, serialisation."""
import keras
import numpy as np
import pytest

from kerasclf.errors import ConfigError, ModelError, UnknownNameError
from kerasclf.testing import run_apart
from kerasclf.zoo import (
    SEED_EXACT_BLOCKS,
    ResidualUnit,
    build,
    get_cfg,
    input_size,
    list_models,
    set_backbone_trainable,
    simple_cnn,
)


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_simple_cnn_has_the_seeds_exact_counts():
    model = simple_cnn(100)
    assert model.count_params() == 1_777_636
    assert _trainable(model) == 1_775_716


def test_efficientnet_b0_head_has_the_seeds_trainable_count():
    model = build("efficientnet_b0_head", num_classes=100, weights=None)
    assert _trainable(model) == 4_135_648
    assert model.get_layer("predictions").output.shape[-1] == 100


def test_deep_cnn_documented_figure():
    model = build("deep_cnn", num_classes=100)
    assert model.count_params() == 15_086_180  # seed: 15,047,588 (documented in docs/models.md)
    assert model.count_params() - _trainable(model) == 9_472  # the seed's non-trainable figure
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 12


def test_deep_cnn_seed_exact_layout_reproduces_all_three_figures():
    model = build("deep_cnn", num_classes=100, blocks=SEED_EXACT_BLOCKS)
    print(f"deep_cnn default: 15,086,180; SEED_EXACT_BLOCKS: {model.count_params():,}")
    assert (model.count_params(), _trainable(model)) == (15_047_588, 15_038_116)
    assert len([layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]) == 12


SMALL = {"simple_cnn": (32, 32, 3), "deep_cnn": (32, 32, 3), "resnet": (32, 32, 3),
         "vgg16_head": (32, 32, 3), "efficientnet_b0_head": (32, 32, 3), "resnet50_features": (32, 32, 3),
         "backbone_head": (32, 32, 3), "conv_autoencoder": (32, 32, 3)}


@pytest.mark.parametrize("name", list_models())
def test_every_builder_runs_a_forward_pass(name):
    cfg = get_cfg(name)
    kwargs = {"input_shape": SMALL.get(name, cfg.input_shape)}
    if cfg.pretrained:
        kwargs["weights"] = None
    if name == "backbone_head":
        kwargs.update(backbone="MobileNet", alpha=0.25)
    model = build(name, num_classes=3, **kwargs)
    batch = np.random.default_rng(0).integers(0, 256, size=(2, 40, 36, 3)).astype("uint8")  # any size
    out = model.predict(batch, verbose=0)
    assert input_size(model) == kwargs["input_shape"][:2]
    if cfg.family == "features":
        assert out.ndim == 2 and out.shape[0] == 2
    elif cfg.family == "autoencoder":
        assert out.shape == (2, *kwargs["input_shape"]) and out.min() >= 0 and out.max() <= 1
    else:
        assert out.shape == (2, 3)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("num_classes,task,units,activation", [
    (2, "auto", 1, "sigmoid"), (5, "auto", 5, "softmax"), (40, "multilabel", 40, "sigmoid")])
def test_output_layer_follows_the_task(num_classes, task, units, activation):
    model = build("simple_cnn", num_classes=num_classes, task=task)
    layer = model.get_layer("predictions")
    assert layer.units == units and layer.activation.__name__ == activation and layer.dtype == "float32"


def test_backbone_by_application_name_and_preprocessing_inside():
    model = build("MobileNetV2", num_classes=4, weights=None, input_shape=(32, 32, 3))
    assert model.get_layer("preprocess").mode == "tf"
    assert build("vgg16_head", weights=None, input_shape=(32, 32, 3)).get_layer("preprocess").mode == "caffe"
    with pytest.raises(UnknownNameError, match="MobileNetV2"):
        build("backbone_head", backbone="MobileNetV9", weights=None)


def test_unknown_model_and_option_errors():
    with pytest.raises(UnknownNameError, match="simple_cnn"):
        build("simple_cn")
    with pytest.raises(ConfigError, match="no option 'dropot'.*dropout"):
        build("simple_cnn", dropot=0.1)
    with pytest.raises(ModelError, match="not found"):
        build("vgg16_head", weights="/nonexistent/weights.h5", input_shape=(32, 32, 3))


def test_fine_tune_from_counts_and_frozen_batch_norm():
    kw = dict(num_classes=3, backbone="MobileNet", alpha=0.25, weights=None, input_shape=(32, 32, 3))
    frozen = build("backbone_head", **kw)
    head_only = _trainable(frozen)
    assert head_only == 256 * 3 + 3
    last10 = set_backbone_trainable(build("backbone_head", **kw), 10)
    by_name = set_backbone_trainable(build("backbone_head", **kw), "conv_pw_13")
    everything = set_backbone_trainable(build("backbone_head", **kw), True)
    assert head_only < _trainable(last10) < _trainable(everything)
    assert head_only < _trainable(by_name) < _trainable(everything)
    bns = [l for l in last10.get_layer("backbone").layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)
    with pytest.raises(ConfigError, match="conv_pw_13"):
        set_backbone_trainable(frozen, "conv_pw_131")


def test_residual_unit_config_round_trip_and_reload(tmp_path):
    unit = ResidualUnit(16, strides=2, activation="elu", name="u")
    config = unit.get_config()
    assert {k: config[k] for k in ("filters", "strides", "activation")} == {"filters": 16, "strides": 2,
                                                                           "activation": "elu"}
    clone = ResidualUnit.from_config(config)
    assert (clone.filters, clone.strides) == (16, 2)
    model = build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1))
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "r.keras")
    reloaded = keras.models.load_model(tmp_path / "r.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_autoencoder_parts_are_reachable():
    model = build("conv_autoencoder", input_shape=(32, 32, 3), latent_dim=8)
    assert model.get_layer("encoder").output.shape[-1] == 8
    assert model.get_layer("decoder").output.shape[1:] == (32, 32, 3)
    with pytest.raises(ConfigError, match="divisible"):
        build("conv_autoencoder", input_shape=(30, 30, 3))


def test_residual_unit_reloads_under_mixed_precision(tmp_path):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 1))
        model.save(tmp_path / "bf16.keras")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    reloaded = keras.models.load_model(tmp_path / "bf16.keras")  # reloaded under float32 global policy
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("size", [16, 15])
def test_residual_unit_strided_skip_equals_a_strided_1x1_conv(size):
    """The projection reads every 2nd pixel then applies a 1x1 conv: the outputs (odd sizes too)
    and weights of a 1x1 stride-2 "same" conv, which TF 2.21's oneDNN cannot train on odd batches."""
    unit = ResidualUnit(16, strides=2)
    x = np.random.default_rng(0).normal(size=(3, size, size, 8)).astype("float32")
    assert tuple(unit(x).shape) == (3, 8, 8, 16)
    conv = unit.skip_layers[0]
    ref = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)
    ref.build(x.shape)
    ref.set_weights(conv.get_weights())
    np.testing.assert_allclose(conv(x[:, ::2, ::2]), ref(x), atol=1e-5)


def test_resnet_trains_on_an_odd_batch():
    """41 images at batch 32 end in a batch of 9: the strided 1x1 projection's oneDNN weight
    gradient aborted the process there (free(): invalid size); run apart so a crash fails one test."""
    script = ("import numpy as np\n"
              "from kerasclf.zoo import build\n"
              "m = build('resnet', num_classes=10, input_shape=(16, 16, 3), stages=[8, 16], units_per_stage=[1, 1])\n"
              "m.compile('adam', 'sparse_categorical_crossentropy', jit_compile=False)\n"
              "x = np.random.default_rng(0).uniform(0, 255, (41, 16, 16, 3)).astype('float32')\n"
              "m.fit(x, np.arange(41) % 10, batch_size=32, epochs=1, verbose=0)\n"
              "print('trained')\n")
    run_apart(script)


def test_simple_cnn_too_small_an_input_is_a_one_line_config_error():
    """16 px (a grayscale digits recipe) failed inside Keras with 'output size would be zero'."""
    with pytest.raises(ConfigError, match=r"simple_cnn: input 16x16 is too small .* data.image_size"):
        build("simple_cnn", num_classes=10, input_shape=(16, 16, 1))
    assert build("simple_cnn", num_classes=10, input_shape=(20, 20, 1)).output_shape == (None, 10)
    with pytest.raises(ConfigError, match="19x20"):
        build("simple_cnn", num_classes=10, input_shape=(19, 20, 3))
