"""Every command that opens a model file refuses every hostile one before any of its ops run: one
`error:` line naming the file, what it holds and `--trust`; no canary written, no secret byte in any
output. With --trust the same file runs (after a one-line warning) and does what it was built to do,
which shows the canaries and the secret are real."""
from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from kerasclf.cli import main
from kerasclf.errors import UnsafeModelError
from kerasclf.export.runtimes import open_model, open_session
from kerasclf.io import ModelFacts, load_model
from kerasclf.security import trusted

FACTS = ["--classes", "a,b", "--task", "multiclass", "--preprocess", "scale01", "--image-size", "8", "8"]
#: the name in the one-line error that says what the file holds
NAMED = {"savedmodel_write": "WriteFile", "savedmodel_read": "ReadFile", "savedmodel_print": "PrintV2",
         "savedmodel_pyfunc": "EagerPyFunc", "savedmodel_save": "SaveV2", "keras_tfsm": "TFSMLayer",
         "h5_tfsm": "TFSMLayer", "keras_slip": "../slip.txt", "keras_lambda": "Lambda", "h5_lambda": "Lambda",
         "onnx_climb": "../secret.txt", "onnx_absolute": "secret.txt", "onnx_link": "weights.bin",
         "onnx_domain": "com.evil", "litert_flex": "FlexReadFile", "litert_custom": "ReadFile",
         "openvino_link": "model.bin", "openvino_extension": "evil_extension"}
KERAS_KINDS = ("savedmodel", "keras", "h5")


def _commands(model: str, images: str, out: str) -> dict[str, list[str]]:
    """Every command line that opens ``model`` (a Keras file or SavedModel folder)."""
    return {
        "predict": ["predict", model, images, "--out", f"{out}/pred.csv", *FACTS],
        "evaluate": ["evaluate", model, images, "--json", f"{out}/metrics.json", *FACTS],
        "analyze": ["analyze", model, images, "--out", f"{out}/analysis", "--explain", "none", *FACTS],
        "export": ["export", model, "--format", "litert", "--calibration", images, "--out", f"{out}/m.tflite", *FACTS],
        "info": ["info", model],
        "adopt": ["adopt", model, "--out", f"{out}/adopted.keras", *FACTS],
        "features": ["features", model, images, "--cache-dir", f"{out}/cache", *FACTS],
        "cluster": ["cluster", images, "--features", model, "--k", "2", "--pca", "none", "--out", f"{out}/clusters",
                    *FACTS],
        "head": ["head", images, "--features", model, "--out", f"{out}/head", *FACTS],
        "audit": ["audit", images, "--features", model, "--folds", "2", "--out", f"{out}/audit", *FACTS],
    }


def _assert_nothing_leaked(hostile, out, captured: str) -> None:
    assert not hostile.canaries(), f"a hostile op ran: {hostile.canaries()}"
    written = [p for p in out.rglob("*") if p.is_file()]
    for p in written:
        data = p.read_bytes()
        assert hostile.secret_bytes not in data and not any(v.encode() in data for v in hostile.secret_probs), p
    assert hostile.secret_bytes[2:].decode() not in captured and not any(v in captured for v in hostile.secret_probs)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_every_command_refuses_a_hostile_file_in_one_line(hostile, name, tmp_path, capsys):
    if name not in hostile.files:
        pytest.skip("the onnx package is not installed (pip install 'kerasclf[export]')")
    model = str(hostile.files[name])
    commands = _commands(model, str(hostile.images), str(tmp_path))
    if not name.startswith(KERAS_KINDS):  # runtime artefacts: the commands that open them
        commands = {k: v for k, v in commands.items() if k in ("predict", "info")}
        commands["predict"] = ["predict", model, str(hostile.images), "--out", f"{tmp_path}/pred.csv"]
    for command, argv in commands.items():
        assert main(argv) == 2, command
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1, (command, lines)
        line = lines[0]
        assert line.startswith(f"error: {model}: refused:"), (command, line)
        assert NAMED[name] in line and "--trust" in line, (command, line)
        _assert_nothing_leaked(hostile, tmp_path, out + err)


@pytest.mark.parametrize("name", ["savedmodel_write", "savedmodel_read", "keras_tfsm", "h5_tfsm", "keras_slip"])
def test_the_python_loader_refuses_before_loading(hostile, name):
    with pytest.raises(UnsafeModelError) as err:
        load_model(hostile.files[name], facts=ModelFacts.from_options(classes="a,b", preprocess="scale01"))
    assert NAMED[name] in str(err.value) and "\n" not in str(err.value)
    assert not hostile.canaries()


@pytest.mark.parametrize("name", ["onnx_link", "onnx_domain", "litert_flex", "litert_custom", "openvino_link",
                                  "openvino_extension"])
def test_the_runtimes_refuse_before_reading(hostile, name):
    if name not in hostile.files:
        pytest.skip("the onnx package is not installed (pip install 'kerasclf[export]')")
    runtime = {"onnx": "onnxruntime", "litert": "litert", "openvino": "openvino"}[name.split("_")[0]]
    with pytest.raises(UnsafeModelError, match=NAMED[name]):
        open_session(hostile.files[name], runtime)
    with pytest.raises(UnsafeModelError, match=NAMED[name]):
        open_model(hostile.files[name])


@pytest.mark.parametrize("name,canary", [("savedmodel_write", "canary.txt"), ("savedmodel_print", "printed.txt"),
                                         ("savedmodel_save", "saved.index")])
def test_trust_runs_the_file_after_a_warning_that_names_what_it_allows(clean_canaries, name, canary, tmp_path, capsys):
    hostile = clean_canaries
    assert main(["predict", str(hostile.files[name]), str(hostile.images), *FACTS, "--trust"]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: --trust")]
    assert len(warnings) == 1 and str(hostile.files[name]) in warnings[0], err
    assert ("write" in warnings[0] or "print" in warnings[0]) and "safe_mode stays on" in warnings[0]
    assert (hostile.root / canary).exists()  # the op the gate refused really runs once trusted
    assert "a" in out.split()  # and the predictions print as usual


def test_trust_lets_the_secret_reach_the_output_so_refusing_matters(hostile, capsys):
    with trusted():
        loaded = load_model(hostile.files["savedmodel_read"],
                            facts=ModelFacts.from_options(classes="a,b", task="multiclass", preprocess="none",
                                                          image_size=(8, 8)))
    probs = loaded.predict(np.zeros((1, 8, 8, 3)))
    assert [f"{p:.4f}" for p in probs[0]] == list(hostile.secret_probs)
    assert "read a file" in capsys.readouterr().err


def test_trust_is_per_call_or_per_block_and_off_by_default(hostile, capsys):
    path = hostile.files["keras_slip"]
    with pytest.raises(UnsafeModelError):
        load_model(path)
    with trusted():
        with trusted(False):
            with pytest.raises(UnsafeModelError):
                load_model(path)
    assert load_model(path, trust=True).num_outputs == 1  # zipfile skips the stray entry; one sigmoid unit
    assert capsys.readouterr().err.count("warning: --trust") == 1


@pytest.mark.parametrize("name", ["onnx_inside", "openvino"])
def test_the_clean_twins_of_the_hostile_artefacts_pass_and_predict(hostile, name, tmp_path):
    """Without the hostile part (external data inside its folder, the .bin beside the .xml) the same
    hand-written artefacts pass the gate and run: the refusals above are for what is hostile."""
    if name not in hostile.clean:
        pytest.skip("the onnx package is not installed (pip install 'kerasclf[export]')")
    runtime = "onnxruntime" if name.startswith("onnx") else "openvino"
    if importlib.util.find_spec(runtime) is None:
        pytest.skip(f"{runtime} is not installed (pip install 'kerasclf[export]')")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(hostile.clean[name]), str(hostile.images), "--runtime", runtime, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 and {r["top_k"] for r in rows} == {"a:0.0000|b:0.0000"}  # its zero bias
