"""Every model kerasclf writes itself passes the gate: each zoo family as .keras / .h5 / SavedModel,
each export format (int8 included), TTA and ensembles."""
from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from kerasclf.cli import main
from kerasclf.export.compose import ensemble_model, tta_model
from kerasclf.export.convert import INT8_METHODS, convert
from kerasclf.io import load_model, save_model
from kerasclf.security import check_model
from kerasclf.security.allowlist import TF_GRAPH_OPS, TF_SAVER_OPS
from kerasclf.export.graph_ops import collect_export_ops
from kerasclf.testing import tiny_cnn, tiny_resnet, tiny_transfer
from kerasclf.zoo import build, get_cfg, list_models

#: the package each export format needs to be written here
WRITERS = {"onnx": "tf2onnx", "litert": None, "openvino": "openvino"}
#: zoo models that take seconds to build and save (ImageNet-sized backbones): run with -m slow
BIG = ("backbone_head", "efficientnet_b0_head", "resnet50_features", "vgg16_head")


def _small(name: str) -> keras.Model:
    if name == "tiny_transfer":
        return tiny_transfer(3)
    kw = {"weights": None} if get_cfg(name).pretrained else {}
    return build(name, num_classes=3, input_shape=(32, 32, 3), **kw)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in list_models()]
                         + [pytest.param("tiny_transfer", id="backbone_head-MobileNet-a0.25")])
def test_each_zoo_family_saved_as_keras_passes(name, tmp_path):
    """Every registered family (a new one is picked up here); the transfer family fast as MobileNet a0.25."""
    path = save_model(_small(name), tmp_path / "m.keras", meta={"model_name": name})
    report = check_model(path)
    assert report.ok and "Keras objects" in report.contents, report.brief()
    keras.backend.clear_session()


@pytest.mark.parametrize("family", ["cnn", "resnet", "autoencoder", pytest.param("transfer", marks=pytest.mark.slow)])
def test_each_family_as_h5_and_savedmodel_passes_and_loads(family, tmp_path):
    model = {"cnn": lambda: tiny_cnn(3), "resnet": lambda: tiny_resnet(3), "transfer": lambda: tiny_transfer(3),
             "autoencoder": lambda: build("conv_autoencoder", input_shape=(16, 16, 3), filters=(4, 8),
                                          latent_dim=4)}[family]()
    for name in ("m.h5", "m.savedmodel"):
        path = save_model(model, tmp_path / name, meta={"class_names": list("abc")})
        report = check_model(path)
        assert report.ok, report.brief()
        assert load_model(path).model is not None  # the gate in load_model lets it through


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x = np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    return tiny_cnn(3), x, tmp_path_factory.mktemp("exports")


@pytest.mark.parametrize("fmt,int8", [("onnx", None), ("litert", None), ("openvino", None),
                                      *[("litert", m) for m in INT8_METHODS["litert"]],
                                      *[pytest.param("openvino", m, marks=pytest.mark.slow) for m in INT8_METHODS["openvino"]]])
def test_each_export_format_passes(trained, fmt, int8):
    """Each runtime format, int8 included (SavedModel: above; NNCF int8 is slow here and gated in
    tests/export, where every export is judged through :func:`open_session`, which runs the gate)."""
    needed = WRITERS[fmt] if not int8 else {"nncf": "nncf"}.get(int8, WRITERS[fmt])
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed (pip install 'kerasclf[export]')")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx is not installed (pip install 'kerasclf[export]')")
    model, x, folder = trained
    out = folder / f"m_{fmt}_{int8 or 'float'}{ {'onnx': '.onnx', 'litert': '.tflite', 'openvino': '.xml'}[fmt]}"
    path = convert(model, fmt, out, image_size=(16, 16), int8_images=x if int8 else None, int8_method=int8)
    report = check_model(path)
    assert report.ok, report.brief()
    if fmt == "openvino":
        assert report.files == (path.with_suffix(".bin").name,)
    assert main(["scan", str(path)]) == 0


@pytest.mark.parametrize("kind", ["tta", "ensemble"])
def test_tta_and_ensembles_pass_as_keras_and_savedmodel(kind, tmp_path):
    model = tta_model(tiny_cnn(3)) if kind == "tta" else ensemble_model([tiny_cnn(3), tiny_resnet(3)])
    for name in ("m.keras", "m.savedmodel"):
        report = check_model(save_model(model, tmp_path / name))
        assert report.ok, report.brief()


@pytest.mark.slow
def test_every_zoo_family_and_backbone_kind_exports_only_allowed_ops():
    """The allowlist's source (python -m kerasclf.export.graph_ops): each family's and each kind of
    keras.applications backbone's SavedModel holds only listed ops."""
    names = list_models() + ["ResNet50V2", "InceptionV3", "Xception", "MobileNetV2", "MobileNetV3Small",
                             "DenseNet121", "NASNetMobile", "EfficientNetV2B0", "ConvNeXtTiny"]
    ops = collect_export_ops(names)
    missing = {name: sorted(found - TF_GRAPH_OPS - TF_SAVER_OPS) for name, found in ops.items()}
    assert not any(missing.values()), missing

