"""The gate per format, on files edited the way an attacker would; `kerasclf scan`; the allowlists
against TensorFlow's own denylist and modelscan."""
from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.saved_model import loader_impl
from tensorflow.python.tools import saved_model_cli

from kerasclf.cli import main
from kerasclf.errors import ModelError
from kerasclf.io import save_model
from kerasclf.security import check_model, scan_model
from kerasclf.security._findings import outside_folder
from kerasclf.security.allowlist import TF_GRAPH_OPS, TF_PURE_OPS, TF_SAVER_OPS
from kerasclf.testing import tiny_cnn


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """kerasclf's own SavedModel export of a tiny CNN (passes the gate)."""
    path = save_model(tiny_cnn(2, (8, 8, 3)), tmp_path_factory.mktemp("sm") / "model.savedmodel")
    assert scan_model(path).ok, scan_model(path).brief()
    return path


def _edit_savedmodel(src: Path, dst: Path, edit) -> Path:
    """A copy of the SavedModel ``src`` whose protobuf ``edit(meta_graph)`` changed."""
    shutil.copytree(src, dst)
    saved = loader_impl.parse_saved_model(str(dst))
    edit(saved.meta_graphs[0])
    (dst / "saved_model.pb").write_bytes(saved.SerializeToString())
    return dst


def _function(mg, prefix: str):
    return next(f for f in mg.graph_def.library.function if f.signature.name.startswith(prefix))


def test_a_restore_function_reading_another_path_is_refused(exported, tmp_path):
    def edit(mg):
        fn = _function(mg, "__inference__traced_restore")
        const = fn.node_def.add(name="evil_prefix", op="Const")
        const.attr["dtype"].type = tf.string.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto("/etc/shadow"))
        restore = next(n for n in fn.node_def if n.op == "RestoreV2")
        restore.input[0] = "evil_prefix:output:0"
    report = scan_model(_edit_savedmodel(exported, tmp_path / "m", edit))
    assert [f.what for f in report.findings] == ["op RestoreV2 on a path holding '/etc/shadow'"]


def test_the_savers_ops_are_refused_where_python_can_call_them(exported, tmp_path):
    """The traced restore function exposed as a concrete function of the object graph (model.x())."""
    def edit(mg):
        name = _function(mg, "__inference__traced_restore").signature.name
        mg.object_graph_def.concrete_functions[name].SetInParent()
    report = scan_model(_edit_savedmodel(exported, tmp_path / "m", edit))
    assert "op RestoreV2" in {f.what for f in report.findings}
    assert "op AssignVariableOp" in {f.what for f in report.findings}


def test_a_call_of_something_that_is_not_one_of_its_functions_is_refused(exported, tmp_path):
    """TensorFlow would run a registered op named in a call's ``f`` as a one-op function."""
    def edit(mg):
        call = next(n for n in mg.graph_def.node if n.op == "StatefulPartitionedCall")
        call.attr["f"].func.name = "ReadFile"
    report = scan_model(_edit_savedmodel(exported, tmp_path / "m", edit))
    assert any("calling 'ReadFile'" in f.what for f in report.findings)


def test_a_text_savedmodel_is_read_as_the_loader_reads_it(hostile, tmp_path):
    folder = shutil.copytree(hostile.files["savedmodel_read"], tmp_path / "m")
    saved = loader_impl.parse_saved_model(str(folder))
    (folder / "saved_model.pb").unlink()
    (folder / "saved_model.pbtxt").write_text(text_format.MessageToString(saved))
    assert "op ReadFile" in {f.what for f in scan_model(folder).findings}


def test_an_asset_outside_the_folder_is_refused(exported, tmp_path):
    def edit(mg):
        mg.asset_file_def.add(filename="../../etc/passwd").tensor_info.name = "asset:0"
    report = scan_model(_edit_savedmodel(exported, tmp_path / "m", edit))
    assert "asset file '../../etc/passwd'" in {f.what for f in report.findings}


def test_paths_a_model_names_must_be_plain_files_in_its_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"0")
    (tmp_path / "outside.bin").write_bytes(b"0")
    (tmp_path / "m" / "link.bin").symlink_to(tmp_path / "outside.bin")
    (tmp_path / "m" / "sub").mkdir()
    folder = tmp_path / "m"
    assert outside_folder(folder, "w.bin") is None
    assert "'..'" in outside_folder(folder, "../outside.bin")
    assert "'..'" in outside_folder(folder, "sub/../../outside.bin")
    assert outside_folder(folder, str(tmp_path / "outside.bin")) == "an absolute path"
    assert outside_folder(folder, "C:\\Windows\\win.ini") == "an absolute path"
    assert "outside" in outside_folder(folder, "link.bin")
    assert outside_folder(folder, "sub") == "no such file in the model's folder"
    assert outside_folder(folder, "*/_ORT_MEM_ADDR_/*") == "no such file in the model's folder"  # ORT's in-memory address


def _keras_with(tmp_path: Path, entries: dict[str, bytes], name: str = "m.keras") -> Path:
    path = tmp_path / name
    tiny_cnn(2, (8, 8, 3)).save(path)
    with zipfile.ZipFile(path, "a") as zf:
        for entry, data in entries.items():
            zf.writestr(entry, data)
    return path


@pytest.mark.parametrize("entry", ["/abs.txt", "payload.py", "assets/../../x", "config.json"])
def test_a_keras_zip_with_entries_keras_does_not_write_is_refused(tmp_path, entry):
    report = scan_model(_keras_with(tmp_path, {entry: b"{}"}))
    assert not report.ok and entry in report.brief(), report.brief()


def test_a_symlink_entry_in_a_keras_zip_is_refused(tmp_path):
    path = _keras_with(tmp_path, {})
    info = zipfile.ZipInfo("assets/link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(info, "/etc/passwd")
    assert "a symbolic link" in scan_model(path).brief()


def _with_config(tmp_path: Path, model: keras.Model, edit) -> Path:
    path = tmp_path / "m.keras"
    model.save(path)
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(edited, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    return edited


def test_a_lookup_layer_reading_a_vocabulary_file_is_refused(tmp_path):
    inp = keras.Input((1,), dtype="string")
    model = keras.Model(inp, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inp))
    path = _with_config(tmp_path, model, lambda c: c["config"]["layers"][1]["config"].update(vocabulary="/etc/passwd"))
    assert [f.what for f in scan_model(path).findings] == ["layer StringLookup 'lookup' with vocabulary '/etc/passwd'"]


def test_a_function_outside_kerass_modelling_modules_is_refused(tmp_path):
    def edit(config):
        layer = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Conv2D")
        layer["config"]["activation"] = {"module": "keras.utils", "class_name": "function", "config": "get_file",
                                         "registered_name": "get_file"}
    path = _with_config(tmp_path, tiny_cnn(2, (8, 8, 3)), edit)
    assert [f.what for f in scan_model(path).findings] == ["function keras.utils.get_file"]


def test_openvino_xml_with_a_document_type_is_refused(tmp_path):
    xml = tmp_path / "m.xml"
    xml.write_text('<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">]><net><layers>&a;</layers></net>')
    with pytest.raises(ModelError, match="document type"):
        scan_model(xml)


@pytest.mark.parametrize("name,content,match", [("m.tflite", b"not a flatbuffer", "not a LiteRT model"),
                                                ("m.onnx", b"", "no graph"), ("m.keras", b"not a zip", "cannot read")])
def test_files_that_are_not_what_their_name_says_are_one_line_errors(tmp_path, name, content, match):
    if name.endswith(".onnx") and importlib.util.find_spec("onnx") is None:
        pytest.skip("the onnx package is not installed (pip install 'kerasclf[export]')")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ModelError, match=match) as err:
        check_model(tmp_path / name)
    assert "\n" not in str(err.value)


def test_scan_prints_what_each_file_would_do_and_exits_1_when_one_is_refused(hostile, exported, capsys):
    assert main(["scan", str(exported)]) == 0
    out = capsys.readouterr().out
    assert f"{exported}: savedmodel: ok" in out and "Conv2D" in out
    assert main(["scan", str(exported), str(hostile.files["savedmodel_write"]), str(hostile.files["openvino_link"])]) == 1
    out = capsys.readouterr().out
    assert "would write a file: op WriteFile in function __inference_serve" in out
    assert "openvino: REFUSED" in out and str(hostile.secret) in out
    assert main(["scan", str(exported.parent / "missing.onnx")]) == 2
    assert capsys.readouterr().err.startswith("error: model ")


def test_tensorflows_denylist_and_every_io_or_python_op_are_refused():
    """saved_model_cli scan's denylist (ReadFile, WriteFile, PrintV2) and its kin are on no list;
    every listed name is a real TensorFlow op (a typo would allow nothing and hide a gap)."""
    allowed = TF_GRAPH_OPS | TF_SAVER_OPS
    assert saved_model_cli._OP_DENYLIST and not saved_model_cli._OP_DENYLIST & allowed
    risky = [op for op in dir(tf.raw_ops) if any(w in op for w in (
        "File", "Print", "PyFunc", "Dataset", "Reader", "Queue", "Iterator", "Summary", "Immutable", "Rpc",
        "Collective", "Send", "Recv", "Save", "Restore", "Checkpoint", "Lookup", "Table", "Random", "Assert"))]
    assert len(risky) > 100
    assert not set(risky) & TF_GRAPH_OPS
    assert set(risky) & TF_SAVER_OPS == {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename"}
    assert not [op for op in allowed if not hasattr(tf.raw_ops, op)]
    assert "ReadVariableOp" not in TF_PURE_OPS and "AssignVariableOp" not in TF_PURE_OPS


def test_everything_modelscan_flags_kerasclf_refuses(hostile, exported):
    if importlib.util.find_spec("modelscan") is None:
        pytest.skip("modelscan is not installed (pip install 'kerasclf[security]')")
    from modelscan.modelscan import ModelScan  # an optional tool, compared with where it is installed

    files = {**hostile.files, "clean_savedmodel": exported}
    flagged = {}
    for name, path in files.items():
        scanner = ModelScan()
        scanner.scan(path)
        flagged[name] = len(scanner.issues.all_issues)
    assert flagged["savedmodel_read"] and flagged["keras_lambda"] and flagged["h5_lambda"], flagged
    assert not flagged["clean_savedmodel"]
    missed = [name for name, n in flagged.items() if n and scan_model(files[name]).ok]
    assert not missed, f"modelscan flags these, kerasclf lets them through: {missed}"
    assert all(not scan_model(p).ok for name, p in hostile.files.items())  # and it refuses the rest too
