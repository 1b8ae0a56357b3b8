"""A keras.applications class name is a model name everywhere: get_cfg, build and a recipe's train()."""
import json

import numpy as np
import pytest
from PIL import Image

from kerasclf.errors import ConfigError, UnknownNameError
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe
from kerasclf.zoo import APPLICATIONS, build, get_cfg, input_size, is_registered, list_models


@pytest.mark.parametrize("name,size,mode", [("MobileNetV2", 224, "tf"), ("VGG16", 224, "caffe"),
                                            ("InceptionV3", 299, "tf"), ("DenseNet121", 224, "torch"),
                                            ("EfficientNetB3", 300, "builtin"), ("NASNetLarge", 331, "tf")])
def test_get_cfg_knows_application_names(name, size, mode):
    cfg = get_cfg(name)
    assert (cfg.name, cfg.family, cfg.input_shape, cfg.preprocessing) == (name, "transfer", (size, size, 3), mode)
    assert cfg.backbone == "backbone" and cfg.pretrained is True and cfg.feature_layer == "features"
    assert is_registered(name)
    assert name not in list_models()  # `kerasclf zoo` lists the builders, not 40 aliases


def test_every_application_name_has_a_cfg_matching_the_table():
    for name, (mode, size) in APPLICATIONS.items():
        cfg = get_cfg(name)
        assert cfg.input_shape == (size, size, 3)
        assert cfg.preprocessing == ("builtin" if mode == "none" else mode)


def test_unknown_model_name_still_raises_with_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean: MobileNetV2") as info:
        get_cfg("MobilenetV2")
    assert "MobileNetV2" in info.value.known and "simple_cnn" in info.value.known
    with pytest.raises(UnknownNameError):
        build("NoSuchNet", num_classes=2)


def test_built_application_model_agrees_with_its_cfg():
    cfg = get_cfg("MobileNet")
    model = build("MobileNet", num_classes=3, alpha=0.25, weights=None)
    assert input_size(model) == cfg.input_shape[:2] == (224, 224)
    assert model.get_layer("preprocess").mode == cfg.preprocessing == "tf"
    assert model.get_layer(cfg.backbone).trainable is False
    assert model.get_layer(cfg.feature_layer).output.shape[-1] == 256  # MobileNet alpha 0.25: 1024 * 0.25


def test_application_name_refuses_a_second_backbone():
    with pytest.raises(ConfigError, match="'MobileNet' already sets option 'backbone'"):
        build("MobileNet", num_classes=2, backbone="VGG16")


def test_recipe_trains_a_keras_applications_model_by_name(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype("uint8")).save(tmp_path / "img" / cls / f"{i}.png")
    recipe = Recipe.from_dict({
        "name": "mn", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "folder", "path": str(tmp_path / "img"), "image_size": [32, 32], "batch_size": 4},
        "model": {"name": "MobileNet", "alpha": 0.25, "weights": None},
        "train": {"epochs": 1, "verbose": 0},  # 11 training images, batch 4: 3 steps
    })
    result = train(recipe)
    assert result.model.get_layer("backbone").name == "backbone"
    assert input_size(result.model) == (32, 32)
    assert result.model.get_layer("preprocess").mode == "tf"
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["model"] == "MobileNet" and metrics["epochs"] == 1
    assert result.model.outputs[0].shape[-1] == 1  # two classes: one sigmoid unit
