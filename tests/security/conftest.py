"""Hostile model files of every kind kerasclf opens, built once per session in a temporary folder.

Each would, if loaded and run, write a canary file, read a secret file into its outputs, print to
a file, run Python, or read a file outside its folder. ``hostile.secret`` holds bytes that make
recognisable outputs (0x21 / 255 = 0.1294, 0x42 / 255 = 0.2588).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasclf.io import card_path
from kerasclf.testing import tiny_cnn, write_image_folder

SECRET = b"\x21\x42SECRET-7f3a"
#: what a model that turns the secret's first two bytes into probabilities prints
SECRET_PROBS = ("0.1294", "0.2588")
CANARIES = ("canary.txt", "printed.txt", "pyfunc.txt")


@dataclass
class Hostile:
    """The hostile files (name -> path), the secret, the canaries' folder and labelled images."""

    root: Path
    secret: Path
    images: Path
    files: dict[str, Path] = field(default_factory=dict)
    #: twins of the hostile runtime artefacts without the hostile part (they pass and run)
    clean: dict[str, Path] = field(default_factory=dict)
    #: the secret's bytes, and how its first two look as probabilities in an output
    secret_bytes: bytes = SECRET
    secret_probs: tuple[str, ...] = SECRET_PROBS

    def canaries(self) -> list[str]:
        """The canary files that exist (a hostile op ran)."""
        return [c for c in CANARIES if (self.root / c).exists()] + sorted(p.name for p in self.root.glob("saved*"))


class _Serving(tf.Module):
    """A SavedModel with a ``serve`` endpoint (two classes) whose graph also runs ``extra``."""

    def __init__(self, extra):
        super().__init__()
        self.w = tf.Variable(tf.ones((3, 2)) / 3.0)
        self.extra = extra

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve(self, x):
        probs = tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2]) @ self.w)
        return self.extra(x, probs)


def _after(op, value):
    """``value`` once ``op`` ran (a checkpoint op is not ordered automatically)."""
    with tf.control_dependencies([op]):
        return tf.identity(value)


def _savedmodel(path: Path, extra) -> Path:
    module = _Serving(extra)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _card(artefact: Path) -> None:
    """The model card a hostile author ships, so `predict` would get as far as running the file."""
    card_path(artefact).write_text(json.dumps({
        "class_names": ["a", "b"], "task": "multiclass", "image_size": [8, 8], "num_outputs": 2,
        "input": {"pixels": "raw RGB 0..255, float32", "shape": [None, 8, 8, 3], "preprocessing": "inside"}}))


def _onnx_with_external(folder: Path, location: str, domain: str = "") -> Path:
    """An ONNX model (images N x 8 x 8 x 3 -> 2 outputs) whose bias W is read from ``location``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    bias = numpy_helper.from_array(np.zeros((2,), np.float32), "W")
    if location:
        bias.data_location = TensorProto.EXTERNAL
        bias.ClearField("raw_data")
        for key, value in {"location": location, "offset": "0", "length": "8"}.items():
            entry = bias.external_data.add()
            entry.key, entry.value = key, value
    zeros = numpy_helper.from_array(np.zeros((192, 2), np.float32), "Z")
    shape = numpy_helper.from_array(np.array([-1, 192], np.int64), "S")
    nodes = [helper.make_node("Reshape", ["images", "S"], ["flat"]),
             helper.make_node("MatMul", ["flat", "Z"], ["zero"]),
             helper.make_node("Add", ["zero", "W"], ["probs"], domain=domain, name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 8, 8, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 2])],
                              [bias, zeros, shape])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    _card(path)
    return path


def _litert(path: Path, secret: Path, flex: bool) -> Path:
    """A LiteRT model whose ReadFile runs as a Flex op (TensorFlow's kernel) or as a custom op."""
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def read(x):
        n = tf.cast(tf.strings.length(tf.io.read_file(str(secret))), tf.float32)
        return tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2])[:, :2] + n)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([read.get_concrete_function()], read)
    if flex:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    else:
        converter.allow_custom_ops = True
    path.write_bytes(converter.convert())
    _card(path)
    return path


_IR = """<?xml version="1.0"?>
<net name="hostile" version="11">
  <layers>
    <layer id="0" name="images" type="Parameter" version="opset1">
      <data shape="?,8,8,3" element_type="f32" />
      <output><port id="0" precision="FP32" names="images"><dim>-1</dim><dim>8</dim><dim>8</dim><dim>3</dim></port></output>
    </layer>
    <layer id="1" name="axes" type="Const" version="opset1">
      <data element_type="i64" shape="2" offset="8" size="16" />
      <output><port id="0" precision="I64"><dim>2</dim></port></output>
    </layer>
    <layer id="2" name="mean" type="ReduceMean" version="opset1">
      <data keep_dims="false" />
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>8</dim><dim>8</dim><dim>3</dim></port><port id="1" precision="I64"><dim>2</dim></port></input>
      <output><port id="2" precision="FP32"><dim>-1</dim><dim>3</dim></port></output>
    </layer>
    <layer id="3" name="zeros" type="Const" version="opset1">
      <data element_type="f32" shape="3,2" offset="24" size="24" />
      <output><port id="0" precision="FP32"><dim>3</dim><dim>2</dim></port></output>
    </layer>
    <layer id="4" name="zero" type="MatMul" version="opset1">
      <data transpose_a="false" transpose_b="false" />
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>3</dim></port><port id="1" precision="FP32"><dim>3</dim><dim>2</dim></port></input>
      <output><port id="2" precision="FP32"><dim>-1</dim><dim>2</dim></port></output>
    </layer>
    <layer id="5" name="bias" type="Const" version="opset1">
      <data element_type="f32" shape="2" offset="0" size="8" />
      <output><port id="0" precision="FP32"><dim>2</dim></port></output>
    </layer>
    <layer id="6" name="probs" type="{kind}" version="{opset}">
      <data auto_broadcast="numpy" />
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>2</dim></port><port id="1" precision="FP32"><dim>2</dim></port></input>
      <output><port id="2" precision="FP32" names="probs"><dim>-1</dim><dim>2</dim></port></output>
    </layer>
    <layer id="7" name="out" type="Result" version="opset1">
      <input><port id="0" precision="FP32"><dim>-1</dim><dim>2</dim></port></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0" />
    <edge from-layer="1" from-port="0" to-layer="2" to-port="1" />
    <edge from-layer="2" from-port="2" to-layer="4" to-port="0" />
    <edge from-layer="3" from-port="0" to-layer="4" to-port="1" />
    <edge from-layer="4" from-port="2" to-layer="6" to-port="0" />
    <edge from-layer="5" from-port="0" to-layer="6" to-port="1" />
    <edge from-layer="6" from-port="2" to-layer="7" to-port="0" />
  </edges>
</net>
"""


#: the IR's .bin: the bias (2 x f32), the reduced axes (1, 2 as i64), a 3 x 2 f32 zero matrix
_IR_WEIGHTS = np.zeros(2, np.float32).tobytes() + np.array([1, 2], np.int64).tobytes() + np.zeros(6, np.float32).tobytes()


def _openvino(folder: Path, *, bin_target: Path | None = None, opset: str = "opset1") -> Path:
    """A hand-written IR: its ``.bin`` is a link to ``bin_target`` (if given), its last op of ``opset``."""
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "model.xml"
    xml.write_text(_IR.replace("{kind}", "Add" if opset == "opset1" else "ReadSecret").replace("{opset}", opset))
    weights = folder / "model.bin"
    if bin_target is not None:
        weights.symlink_to(bin_target)
    else:
        weights.write_bytes(_IR_WEIGHTS)
    _card(xml)
    return xml


def _lambda_model() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, output_shape=(8, 8, 3), name="py_lambda")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="predictions")(x))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    """Every hostile model file (see the module docstring), and the folder whose canaries they would write."""
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    h = Hostile(root=root, secret=secret, images=write_image_folder(root / "images", n_per_class=3, size=8,
                                                                      classes=2))
    for sub in h.images.iterdir():  # class folders a, b: the classes the hostile models claim
        sub.rename(h.images / {"class0": "a", "class1": "b"}[sub.name])
    f = h.files
    f["savedmodel_write"] = _savedmodel(root / "sm_write", lambda x, p: (
        tf.io.write_file(str(root / "canary.txt"), "written by the model"), p)[1])
    f["savedmodel_read"] = _savedmodel(root / "sm_read", lambda x, p: tf.tile(
        tf.cast(tf.io.decode_raw(tf.io.read_file(str(secret)), tf.uint8)[None, :2], tf.float32) / 255.0,
        [tf.shape(x)[0], 1]))
    f["savedmodel_print"] = _savedmodel(root / "sm_print", lambda x, p: (
        tf.print(tf.io.read_file(str(secret)), output_stream=f"file://{root / 'printed.txt'}"), p)[1])
    f["savedmodel_pyfunc"] = _savedmodel(root / "sm_pyfunc", lambda x, p: tf.py_function(
        lambda t: ((root / "pyfunc.txt").write_text("python ran"), t)[1], [p], tf.float32))
    f["savedmodel_save"] = _savedmodel(root / "sm_save", lambda x, p: _after(
        tf.raw_ops.SaveV2(prefix=str(root / "saved"), tensor_names=["p"], shape_and_slices=[""], tensors=[p]), p))

    inp = keras.Input((8, 8, 3))
    wrapped = keras.Model(inp, keras.layers.TFSMLayer(str(f["savedmodel_read"]), call_endpoint="serve")(inp))
    f["keras_tfsm"] = root / "tfsm.keras"
    wrapped.save(f["keras_tfsm"])

    f["h5_tfsm"] = root / "tfsm.h5"
    tiny_cnn(2, (8, 8, 3)).save(f["h5_tfsm"])
    with h5py.File(f["h5_tfsm"], "a") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"].append({"class_name": "TFSMLayer", "config": {
            "name": "wrap", "filepath": str(f["savedmodel_read"]), "call_endpoint": "serve"}})
        h5.attrs["model_config"] = json.dumps(config)

    f["keras_slip"] = root / "slip.keras"
    tiny_cnn(2, (8, 8, 3)).save(f["keras_slip"])
    with zipfile.ZipFile(f["keras_slip"], "a") as zf:
        zf.writestr("../slip.txt", "outside the unpacking folder")

    for suffix in ("keras", "h5"):
        f[f"{suffix}_lambda"] = root / f"lambda.{suffix}"
        _lambda_model().save(f[f"{suffix}_lambda"])

    if importlib.util.find_spec("onnx") is not None:  # the [export] extra writes (and checks) ONNX files
        f["onnx_climb"] = _onnx_with_external(root / "onnx_climb", "../secret.txt")
        f["onnx_absolute"] = _onnx_with_external(root / "onnx_absolute", str(secret))
        link = root / "onnx_link"
        link.mkdir()
        (link / "weights.bin").symlink_to(secret)
        f["onnx_link"] = _onnx_with_external(link, "weights.bin")
        f["onnx_domain"] = _onnx_with_external(root / "onnx_domain", "", domain="com.evil")
        (root / "onnx_inside").mkdir()
        (root / "onnx_inside" / "weights.bin").write_bytes(np.zeros(2, np.float32).tobytes())
        h.clean["onnx_inside"] = _onnx_with_external(root / "onnx_inside", "weights.bin")
    f["litert_flex"] = _litert(root / "flex.tflite", secret, flex=True)
    f["litert_custom"] = _litert(root / "custom.tflite", secret, flex=False)
    f["openvino_link"] = _openvino(root / "ov_link", bin_target=secret)
    f["openvino_extension"] = _openvino(root / "ov_ext", opset="evil_extension")
    h.clean["openvino"] = _openvino(root / "ov_clean")
    assert not h.canaries(), "building the files ran a hostile op"
    return h


@pytest.fixture
def clean_canaries(hostile: Hostile):
    """Remove canaries a test that runs a file with --trust made (only such tests write them)."""
    yield hostile
    for name in CANARIES:
        (hostile.root / name).unlink(missing_ok=True)
    for p in hostile.root.glob("saved*"):
        p.unlink()


def copy_tree(src: Path, dst: Path) -> Path:
    """A copy of a model file or folder (tests that edit one)."""
    shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    return dst

