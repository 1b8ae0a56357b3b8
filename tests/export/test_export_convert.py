"""Exports agree with Keras (measured), disagreeing ones are rejected, TTA/ensembles bake into one model."""
import csv
import importlib
import importlib.util
import json

import keras
import numpy as np
import pytest
from PIL import Image

from kerasclf.cli import main
from kerasclf.evaluate import labelled_images
from kerasclf.export import (
    ExportCheckError,
    ensemble_model,
    export_model,
    judge,
    open_model,
    open_session,
    parity,
    tta_model,
)
from kerasclf.io import load_model, model_card, read_card, save_model, write_card
from kerasclf.predict import predict_paths
from kerasclf.testing import (
    square_images,
    tiny_cnn,
    tiny_resnet,
    tiny_transfer,
    write_image_folder,
)
from kerasclf.train import load_recipe, train
from kerasclf.zoo import build, image_stem
from kerasclf.zoo.efficientnet_lite import efficientnet_lite_backbone, load_lite_imagenet

pytestmark = pytest.mark.extras  # the [export] extra's runtimes; tests/test_extras_optional.py reruns these without it

NEEDS = {"onnx": "onnxruntime", "litert": "ai_edge_litert", "openvino": "openvino", "savedmodel": "keras"}


def _need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'kerasclf[export]')")
    if module == "onnxruntime" and importlib.util.find_spec("tf2onnx") is None:
        pytest.skip("tf2onnx is not installed (pip install 'kerasclf[export]')")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN trained on squares (confident, varied outputs) saved with its metadata, and its data."""
    x, y = square_images(12, 16, 3, seed=1)
    keras.utils.set_random_seed(0)  # the same trained weights every run: the int8 figures are reproducible
    model = tiny_cnn(3)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=12, verbose=0)
    path = save_model(model, tmp_path_factory.mktemp("m") / "model.keras",
                      meta={"class_names": ["a", "b", "c"], "task": "multiclass", "image_size": [16, 16]})
    return path, x, y


def test_judge_fails_on_disagreement_and_difference():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert judge(parity(ref, ref + 1e-6, "multiclass"), int8=False)[0]
    flipped = ref[:, ::-1]
    ok, reason = judge(parity(ref, flipped, "multiclass"), int8=False)
    assert not ok and "agreement" in reason
    ok, reason = judge(parity(ref, ref + 1e-3, "multiclass"), int8=False)
    assert not ok and "difference" in reason
    labels = np.array([0, 1, 0])
    r = parity(ref, flipped, "multiclass", labels)
    assert r["keras_accuracy"] == 1.0 and r["artefact_accuracy"] == 0.0
    assert not judge(r, int8=True)[0]


@pytest.mark.parametrize("fmt", ["onnx", "litert", "openvino", "savedmodel"])
def test_export_agrees_with_keras_and_predicts_the_same(trained, fmt, tmp_path):
    _need(NEEDS[fmt])
    path, x, y = trained
    result = export_model(path, fmt, tmp_path / f"m{'.' + fmt if fmt == 'savedmodel' else ''}"
                          f"{ {'onnx': '.onnx', 'litert': '.tflite', 'openvino': '.xml', 'savedmodel': ''}[fmt]}",
                          calibration=(x, y))
    p = result.parity
    assert p["passed"] and p["top1_agreement"] == 1.0 and p["max_abs_diff"] <= 1e-4, p
    assert p["keras_accuracy"] > 0.6  # the model is confident, so agreement is not trivial
    card = json.loads(result.card_path.read_text())
    assert card["class_names"] == ["a", "b", "c"] and card["parity"]["n_images"] == len(x)
    assert result.card_path.with_suffix(".md").is_file()
    keras_probs = load_model(path).predict(x)
    opened = open_model(result.path)
    np.testing.assert_allclose(opened.predict(x), keras_probs, atol=1e-4)


def test_openvino_splits_a_batch_over_async_requests_with_the_same_outputs(trained, tmp_path):
    _need("openvino")
    path, x, y = trained
    xml = export_model(path, "openvino", tmp_path / "m.xml", calibration=(x, y)).path
    run = open_session(xml, "openvino")
    one_by_one = np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
    for n in (len(x), 7, 5, 2):  # large batches go through the async queue, odd sizes split unevenly
        np.testing.assert_allclose(run(x[:n]), one_by_one[:n], atol=1e-6)


def test_predict_cli_runs_an_onnx_artefact_like_keras(trained, tmp_path):
    _need("onnxruntime")
    path, x, y = trained
    folder = write_image_folder(tmp_path / "imgs", n_per_class=2, size=16, classes=3)
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "--format", "onnx", "--out", str(out), "--calibration", str(folder)]) == 0
    rows_k = predict_paths(path, [folder])
    for runtime in ("onnxruntime", "auto"):
        assert main(["predict", str(out), str(folder), "--runtime", runtime, "--out", str(tmp_path / "p.csv")]) == 0
        with open(tmp_path / "p.csv") as f:
            rows_o = list(csv.DictReader(f))
        assert [r["class"] for r in rows_o] == [r["class"] for r in rows_k]
        assert np.allclose([float(r["probability"]) for r in rows_o], [r["probability"] for r in rows_k], atol=1e-4)
    assert main(["info", str(out)]) == 0


def test_a_disagreeing_export_is_rejected_and_kept_aside(trained, tmp_path, monkeypatch, capsys):
    _need("ai_edge_litert")
    path, x, y = trained
    other = tiny_cnn(3)  # untrained: what a silently wrong converter would produce
    convert_mod = importlib.import_module("kerasclf.export.convert")
    real_convert = convert_mod.convert
    monkeypatch.setattr(convert_mod, "convert", lambda model, *a, **k: real_convert(other, *a, **k))
    out = tmp_path / "bad.tflite"
    with pytest.raises(ExportCheckError, match="export check failed"):
        export_model(path, "litert", out, calibration=(x, y))
    assert not out.exists() and (tmp_path / "bad.tflite.rejected").is_file()
    assert read_card(tmp_path / "bad.tflite.rejected")["parity"]["passed"] is False


def test_int8_litert_records_its_accuracy_change(trained, tmp_path):
    _need("ai_edge_litert")
    path, x, y = trained
    result = export_model(path, "litert", tmp_path / "q.tflite", calibration=(x, y), int8=True)
    p = result.parity
    assert p["int8"] and abs(p["accuracy_change"]) <= 0.01 and p["top1_agreement"] >= 0.95, p
    float_size = (result.path.parent / "f.tflite")
    export_model(path, "litert", float_size, calibration=(x, y))
    assert result.path.stat().st_size < float_size.stat().st_size  # int8 weights really are smaller


def test_tta_and_ensemble_are_one_model_that_averages():
    m1, m2 = tiny_cnn(3), tiny_cnn(3)
    x = np.random.RandomState(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    tta = tta_model(m1)
    expected = (m1.predict(x, verbose=0) + m1.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(tta.predict(x, verbose=0), expected, atol=1e-6)
    ens = ensemble_model([m1, m2])
    np.testing.assert_allclose(ens.predict(x, verbose=0),
                               (m1.predict(x, verbose=0) + m2.predict(x, verbose=0)) / 2, atol=1e-6)


def test_baked_tta_ensemble_saves_as_keras_and_exports(trained, tmp_path):
    path, x, y = trained
    out = tmp_path / "both.keras"
    r = export_model(path, "keras", out, calibration=(x, y), tta=("flip",), ensemble=[path])
    assert r.parity["max_abs_diff"] == 0.0
    assert load_model(out).meta["composed"]["tta"] == ["flip"]


def test_export_errors_are_one_line(trained, tmp_path, capsys):
    path, x, y = trained
    assert main(["export", str(path), "--format", "savedmodel"]) == 2  # not in a run, no --calibration
    assert "--calibration" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(path), "--format", "savedmodel", "--calibration", str(empty)]) == 2
    assert "no image files" in capsys.readouterr().err
    (tmp_path / "x.onnx").write_bytes(b"")
    assert main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "x.onnx"),
                 "--calibration", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err or "no readable images" in err
    assert main(["predict", str(tmp_path / "x.onnx"), str(empty)]) == 2
    assert "model card" in capsys.readouterr().err
    # a bad option never costs the user the artefact that --overwrite would replace
    images = tmp_path / "images"
    write_image_folder(images, n_per_class=2, size=16)
    old = tmp_path / "old.onnx"
    old.write_bytes(b"the user's artefact")
    for bad in (["--int8"], ["--int8-method", "dynamic"]):
        assert main(["export", str(path), "--format", "onnx", "--out", str(old), "--overwrite",
                     "--calibration", str(images), *bad]) == 2
        assert "--int8" in capsys.readouterr().err and old.read_bytes() == b"the user's artefact"


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
@pytest.mark.assets
def test_efficientnet_exports_to_onnx_with_its_normalization_folded(tmp_path, assets_dir):
    """Keras's own model.export(format="onnx") left these constants as graph inputs; ours folds them."""
    _need("onnxruntime")

    model = build("efficientnet_b0_head", num_classes=5, weights=None, input_shape=(32, 32, 3))
    path = save_model(model, tmp_path / "eff.keras", meta={"class_names": list("abcde"), "image_size": [32, 32]})
    flowers = assets_dir / "flowers"
    result = export_model(path, "onnx", calibration=flowers, max_images=16)
    p = result.parity
    assert p["passed"] and p["max_abs_diff"] <= 1e-4 and p["n_images"] == 16, p


@pytest.mark.slow  # trains the demo run (~45 s on 2 cores)
def test_export_from_a_run_checks_on_its_split_and_int8_on_unseen_test(tmp_path, capsys):
    """A model inside its run folder: the float check uses the validation split; int8 is calibrated
    on val and judged on test (images the quantizer never saw), with the accuracy change recorded."""
    _need("ai_edge_litert")

    recipe = load_recipe("demo", [f"output_dir={tmp_path}", "train.epochs=2", "train.verbose=0"])
    model = train(recipe, verbose=0).model_path
    trained_card = read_card(model)  # every run writes the card of its model beside it
    assert trained_card["class_names"] == [str(i) for i in range(10)] and "val" in trained_card["metrics"]
    assert main(["export", str(model), "--format", "litert"]) == 0
    card = read_card(model.with_suffix(".tflite"))
    assert card["parity"]["images"].endswith("val split") and card["parity"]["n_images"] >= 150
    assert card["parity"]["top1_agreement"] >= 0.999 and "split_sha256" in card["data"]
    assert card["metrics"]["val"]["accuracy"] > 0.5
    assert main(["export", str(model), "--format", "litert", "--int8", "--calibration", "val",
                 "--check", "test"]) == 0
    p = read_card(model.with_name("model.int8.tflite"))["parity"]
    assert p["images"].endswith("test split") and "val split" in p["calibrated_on"]
    assert abs(p["accuracy_change"]) <= 0.01, p
    assert "accuracy: Keras" in capsys.readouterr().out


@pytest.mark.parametrize("family,fmt", [("resnet", "onnx"), ("resnet", "litert"), ("resnet", "openvino"),
                                        ("transfer", "onnx"), ("cnn", "litert"), ("lite0", "litert"),
                                        pytest.param("lite0", "onnx", marks=pytest.mark.slow),
                                        pytest.param("lite0", "openvino", marks=pytest.mark.slow)])
def test_each_zoo_family_exports_within_the_limits(family, fmt, tmp_path):
    """The custom ResidualUnit, a nested keras.applications backbone, EfficientNet-Lite0 with its ImageNet
    weights (ReLU6, 'same' padding) and the CNN all convert and agree."""
    _need(NEEDS[fmt])

    model = {"resnet": lambda: tiny_resnet(3), "transfer": lambda: tiny_transfer(3),
             "cnn": lambda: build("simple_cnn", num_classes=3),
             "lite0": lambda: build("efficientnet_lite0", num_classes=3, input_shape=(64, 64, 3))}[family]()
    size = list(model.inputs[0].shape[1:3]) if model.inputs[0].shape[1] else [32, 32]
    path = save_model(model, tmp_path / "m.keras", meta={"class_names": list("abc"), "image_size": size})
    x = np.random.RandomState(0).uniform(0, 255, (24, *size, 3)).astype("float32")
    result = export_model(path, fmt, calibration=(x, None))
    assert result.parity["passed"] and result.parity["max_abs_diff"] <= 1e-4, result.parity


def test_check_images_from_a_class_folder_are_a_stratified_sample(tmp_path):
    """--calibration/--check FOLDER with more images than --max-images: every class, in its share."""
    folder = write_image_folder(tmp_path / "data", n_per_class=10, size=16, classes=3)
    path = save_model(tiny_cnn(3), tmp_path / "model.keras",
                      meta={"class_names": ["class0", "class1", "class2"], "task": "multiclass", "image_size": [16, 16]})
    (x, y), name = labelled_images(path, folder, max_images=9)
    assert x.shape == (9, 16, 16, 3) and "labelled" in name
    assert np.bincount(np.asarray(y).reshape(-1).astype(int), minlength=3).tolist() == [3, 3, 3]
    (x2, y2), _ = labelled_images(path, folder, max_images=9)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # seeded


def test_int8_auto_keeps_the_first_method_that_passes_and_rejects_the_others(trained, tmp_path, monkeypatch):
    """--int8-method auto: a method that fails the accuracy check is kept aside, the next one is tried."""
    _need("ai_edge_litert")
    conv = importlib.import_module("kerasclf.export.convert")  # the module (the package exports the function)
    path, x, y = trained
    made, real_convert, real_verify = [], conv.convert, conv.verify_artefact

    def recording_convert(*a, **kw):
        made.append(kw.get("int8_method"))
        return real_convert(*a, **kw)

    def full_fails(*a, **kw):  # as if full-integer lost 10 points (flowers, docs/benchmarks.md)
        r = real_verify(*a, **kw)
        return {**r, "passed": False, "reason": "int8 accuracy 10 points below Keras"} if made[-1] == "full" else r

    monkeypatch.setattr(conv, "convert", recording_convert)
    monkeypatch.setattr(conv, "verify_artefact", full_fails)
    result = export_model(path, "litert", tmp_path / "q.tflite", calibration=(x, y), int8=True)
    assert made == ["full", "dynamic"] and result.parity["int8_method"] == "dynamic"
    assert result.path.is_file() and (tmp_path / "q.tflite.full.rejected").is_file()
    tried = read_card(result.path)["parity"]["int8_tried"]
    assert [t["method"] for t in tried] == ["full"] and "10 points" in tried[0]["reason"]
    assert read_card(tmp_path / "q.tflite.full.rejected")["parity"]["passed"] is False

    made.clear()
    with pytest.raises(ExportCheckError, match="full: int8 accuracy 10 points"):
        export_model(path, "litert", tmp_path / "f.tflite", calibration=(x, y), int8=True, int8_method="full")
    assert made == ["full"] and (tmp_path / "f.tflite.full.rejected").is_file()


@pytest.mark.slow  # NNCF's import and statistics: ~40 s on the loaded 2-core box
@pytest.mark.assets
def test_int8_litert_of_efficientnet_lite0_keeps_its_imagenet_predictions(tmp_path, assets_dir):
    """EfficientNet-Lite was designed for int8: the quantized ImageNet Lite0 (its 1,000-class head)
    keeps its top-1 class on real photos it was not calibrated on."""
    _need("ai_edge_litert")
    inputs, x = image_stem((128, 128, 3), "lite")
    net = efficientnet_lite_backbone("efficientnet_lite0", input_shape=(128, 128, 3), include_top=True)
    model = keras.Model(inputs, load_lite_imagenet(net, "efficientnet_lite0")(x), name="lite0_imagenet")
    path = save_model(model, tmp_path / "lite0.keras", meta={"class_names": [str(i) for i in range(1000)],
                                                               "image_size": [128, 128]})
    flowers = sorted((assets_dir / "flowers").rglob("*.jpg"))
    calib, check = (np.stack([np.asarray(Image.open(f).convert("RGB").resize((128, 128)), "float32") for f in part])
                    for part in (flowers[::100][:24], flowers[50::100][:24]))
    result = export_model(path, "litert", int8=True, calibration=(calib, None), check=(check, None))
    assert result.parity["top1_agreement"] >= 0.9, result.parity


def test_openvino_int8_with_nncf_is_judged_by_accuracy(trained, tmp_path):
    _need("openvino")
    _need("nncf")
    path, x, y = trained
    result = export_model(path, "openvino", tmp_path / "q.xml", calibration=(x, y), int8=True)
    p = result.parity
    assert p["int8_method"] == "nncf" and abs(p["accuracy_change"]) <= 0.01 and p["top1_agreement"] >= 0.95, p
    xml = (tmp_path / "q.xml").read_text()
    assert "FakeQuantize" in xml or "i8" in xml  # really quantized, not a float copy


def test_each_export_has_its_own_card_and_the_keras_card_stays(trained, tmp_path):
    """model.keras, model.tflite and model.int8.tflite beside each other: three cards, none overwritten."""
    _need("ai_edge_litert")
    path, x, y = trained
    model = tmp_path / "model.keras"
    model.write_bytes(path.read_bytes())
    keras_card = model_card_of(model)
    export_model(model, "litert", calibration=(x, y))
    export_model(model, "litert", calibration=(x, y), int8=True)
    cards = sorted(p.name for p in tmp_path.glob("*.card.json"))
    assert cards == ["model.card.json", "model.int8.tflite.card.json", "model.tflite.card.json"], cards
    assert read_card(tmp_path / "model.keras") == keras_card  # the Keras model's card is untouched
    assert read_card(tmp_path / "model.int8.tflite")["export"]["int8"] is True
    assert read_card(tmp_path / "model.tflite")["export"]["int8"] is False


def model_card_of(model):
    write_card(model, model_card(model))
    return read_card(model)
