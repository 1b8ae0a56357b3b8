"""Bring your own Keras model (issue 15): every command works on a model kerasclf did not train.

The models here are plain Keras, saved with ``model.save`` (no kerasclf metadata), as ``.keras``
and ``.h5``; options (``--classes``, ``--task``, ``--image-size``, ``--preprocess``) or
``kerasclf adopt`` say what the file cannot.
"""
import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils
from PIL import Image

from kerasclf.analysis.explain import explain
from kerasclf.cli import main
from kerasclf.data.pipeline import file_batches
from kerasclf.data.sources import from_folder
from kerasclf.features.extract import extract_features
from kerasclf.io import ModelFacts, load_model, read_card, save_model
from kerasclf.predict import predict_paths
from kerasclf.testing import run_python, tiny_cnn

SIZE = 32


def _err(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def _conv(x, n=6):
    x = keras.layers.Conv2D(n, 3, strides=2, activation="relu", name="conv_a")(x)
    return keras.layers.Conv2D(n, 3, activation="relu", name="conv_b")(x)


def _models() -> dict:
    """name -> (model, facts the file cannot say, the preprocessing it expects outside: none = raw 0..255)."""
    keras.utils.set_random_seed(1)
    out = {}
    out["binary"] = (keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255.0),
                                       keras.layers.Conv2D(4, 3, activation="relu"),
                                       keras.layers.GlobalAveragePooling2D(),
                                       keras.layers.Dense(1, activation="sigmoid")]), {}, "none")
    inp = keras.Input((SIZE, SIZE, 3))
    x = _conv(keras.layers.Rescaling(1 / 127.5, offset=-1)(inp))
    out["softmax"] = (keras.Model(inp, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x))), {"classes": "a,b,c"}, "none")
    inp = keras.Input((SIZE, SIZE, 3))
    x = _conv(keras.layers.Rescaling(1 / 255.0)(inp))
    out["multilabel"] = (keras.Model(inp, keras.layers.Dense(4, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(x))), {}, "none")
    inp = keras.Input((None, None, 3))  # headless: its output is the feature vector
    x = _conv(keras.layers.Rescaling(1 / 255.0)(inp), 8)
    out["extractor"] = (keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x)), {"image_size": [24, 24]},
                        "none")
    inp = keras.Input((SIZE, SIZE, 3))  # preprocessing outside the model (caffe), softmax
    x = _conv(inp)
    out["outside"] = (keras.Model(inp, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x))), {"preprocess": "caffe"}, "caffe")
    inp = keras.Input((SIZE, SIZE, 3))  # preprocessing outside (tf), logits out
    x = _conv(inp)
    out["logits"] = (keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))),
                     {"preprocess": "tf", "task": "multiclass"}, "tf")
    return out


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    """Every model saved as .keras and .h5 by Keras alone, and 12 PNG photos-like images in 2 class folders."""
    root = tmp_path_factory.mktemp("byo")
    rng = np.random.default_rng(0)
    for cls, base in (("cat", 60), ("dog", 190)):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(6):
            img = np.clip(base + rng.normal(0, 40, (40, 48, 3)), 0, 255).astype("uint8")
            Image.fromarray(img).save(root / "images" / cls / f"{cls}.{i}.png")
    facts = {}
    for name, (model, fact, mode) in _models().items():
        for suffix in (".keras", ".h5"):
            model.save(root / f"{name}{suffix}")
        facts[name] = {"facts": fact, "mode": mode}
    (root / "facts.json").write_text(json.dumps(facts))
    return root


def _by_hand(x: np.ndarray, mode: str) -> np.ndarray:
    x = np.array(x, dtype="float32")
    return {"none": lambda: x, "tf": lambda: x / 127.5 - 1.0,
            "caffe": lambda: imagenet_utils.preprocess_input(x, mode="caffe")}[mode]()


def parity(root: Path, suffixes: tuple[str, ...] = (".keras", ".h5")) -> dict[str, float]:
    """Max abs difference between kerasclf's outputs (with each model's facts) and the plain model
    on the same pixels preprocessed by hand, per model file (``:csv``: predict_paths' probability column)."""
    files = sorted(str(p) for p in (root / "images").rglob("*.png"))
    out = {}
    for name, info in json.loads((root / "facts.json").read_text()).items():
        fact = info["facts"]
        (_, pixels), = list(file_batches(files, tuple(fact.get("image_size", (SIZE, SIZE))), 64))
        for suffix in suffixes:
            path = root / f"{name}{suffix}"
            ref = np.asarray(keras.saving.load_model(path)(_by_hand(pixels, info["mode"]), training=False))
            facts = ModelFacts.from_options(**fact)
            if name == "extractor":
                fs = extract_features(load_model(path, facts=facts), from_folder(root / "images"), layer=None,
                                      cache_dir=None, verbose=0)
                got, ref = np.asarray(fs.features)[np.argsort(fs.ids)], ref[np.argsort(files)]
            else:
                ref = np.asarray(keras.activations.softmax(ref)) if name == "logits" else ref
                got = load_model(path, facts=facts).predict(pixels)
                if suffix == ".keras" and name != "multilabel":  # the CSV's probability column, too
                    probs = np.array([float(r["probability"]) for r in predict_paths(path, files, facts=facts)])
                    top = (ref if ref.shape[1] > 1 else np.c_[1 - ref, ref]).max(axis=1)
                    out[f"{name}{suffix}:csv"] = float(np.abs(probs - top).max())
            out[f"{name}{suffix}"] = float(np.abs(got - ref).max())
    return out


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_predictions_equal_model_predict_on_the_same_pixels(byo, suffix):
    """Each plain-Keras model reloaded from its file: kerasclf's outputs (load_model with the facts,
    predict_paths' CSV, the headless extractor's features) equal the model on the same pixels
    preprocessed by hand, to 1e-5."""
    diffs = parity(byo, (suffix,))
    assert len(diffs) == 6 + (4 if suffix == ".keras" else 0), diffs
    worst = {k: v for k, v in diffs.items() if v >= 1e-5}
    assert not worst, worst


@pytest.mark.slow
def test_predictions_equal_model_predict_after_reload_in_a_fresh_process(byo):
    """The same parity with every file reloaded in a fresh Python process (one for all; ~60 s on
    two loaded cores, mostly importing TensorFlow)."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_byo_model as t; "
            f"from pathlib import Path; print(json.dumps(t.parity(Path(sys.argv[1]))))")
    proc = run_python(code, str(byo), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(diffs) == 6 * 2 + 4, diffs
    worst = {k: v for k, v in diffs.items() if v >= 1e-5}
    assert not worst, worst


def test_predict_on_a_one_unit_sigmoid_h5_names_two_classes(byo, tmp_path, capsys):
    """The issue's first failure (IndexError in the class-name lookup) is gone: two classes by default,
    ``--classes`` names them, and p(dog) is the model's sigmoid."""
    csv = tmp_path / "p.csv"
    assert main(["predict", str(byo / "binary.h5"), str(byo / "images"), "--out", str(csv)]) == 0
    assert {line.split(",")[1] for line in csv.read_text().splitlines()[1:]} <= {"0", "1"}
    assert main(["predict", str(byo / "binary.h5"), str(byo / "images"), "--classes", "cat,dog",
                 "--out", str(csv)]) == 0
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:]]
    assert len(rows) == 12 and {r[1] for r in rows} <= {"cat", "dog"}
    files = [r[0] for r in rows]
    (_, pixels), = list(file_batches(files, (SIZE, SIZE), 64))
    p_dog = keras.saving.load_model(byo / "binary.h5").predict(pixels, verbose=0)[:, 0]  # Rescaling inside
    expected = np.where(p_dog >= 0.5, "dog", "cat")
    assert [r[1] for r in rows] == expected.tolist()
    assert np.allclose([float(r[2]) for r in rows], np.maximum(p_dog, 1 - p_dog), atol=1e-5)


def test_missing_facts_are_one_line_errors_naming_the_option(byo, tmp_path, capsys):
    img = str(byo / "images" / "cat" / "cat.0.png")
    assert main(["predict", str(byo / "outside.keras"), img]) == 2
    assert "--preprocess" in _err(capsys)
    assert main(["predict", str(byo / "logits.keras"), img, "--preprocess", "tf"]) == 2
    assert "--task" in _err(capsys)
    assert main(["predict", str(byo / "softmax.keras"), img, "--classes", "a,b"]) == 2
    assert "3 classes" in _err(capsys)
    assert main(["predict", str(byo / "softmax.keras"), img, "--image-size", "64", "64"]) == 2
    assert "32x32" in _err(capsys)
    assert main(["evaluate", str(byo / "binary.keras"), str(byo / "images")]) == 2
    assert "--classes" in _err(capsys)
    assert main(["features", str(byo / "extractor.keras"), str(byo / "images"), "--layer", "output",
                 "--cache-dir", str(tmp_path)]) == 2
    assert "--image-size" in _err(capsys)
    assert main(["predict", str(byo / "multilabel.keras"), img, "--task", "binary"]) == 2
    assert "one sigmoid output unit" in _err(capsys)


def test_evaluate_and_multilabel_predict_use_the_given_facts(byo, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(byo / "binary.keras"), str(byo / "images"), "--classes", "cat,dog",
                 "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    files = sorted((byo / "images").rglob("*.png"))  # cat/ then dog/: labels 0 x 6, 1 x 6
    (_, pixels), = list(file_batches([str(f) for f in files], (SIZE, SIZE), 64))
    p_dog = np.asarray(keras.saving.load_model(byo / "binary.keras")(pixels, training=False))[:, 0]
    by_hand = float(np.mean((p_dog >= 0.5) == np.array([f.parent.name == "dog" for f in files])))
    assert metrics["n_images"] == 12 and metrics["accuracy"] == pytest.approx(by_hand)
    csv = tmp_path / "ml.csv"
    assert main(["predict", str(byo / "multilabel.h5"), str(byo / "images"), "--classes", "w,x,y,z",
                 "--out", str(csv)]) == 0
    labels = [line.split(",")[1] for line in csv.read_text().splitlines()[1:]]
    assert all(set(filter(None, lab.split("|"))) <= {"w", "x", "y", "z"} for lab in labels)


def test_adopt_writes_the_facts_once_so_later_commands_need_no_options(byo, tmp_path, capsys):
    names = tmp_path / "classes.txt"
    names.write_text("red\ngreen\nblue\n")
    adopted = tmp_path / "adopted.keras"
    assert main(["adopt", str(byo / "outside.h5"), "--out", str(adopted)]) == 2
    assert "--preprocess" in _err(capsys)
    assert main(["adopt", str(byo / "outside.h5"), "--preprocess", "caffe", "--out", str(adopted)]) == 2
    assert "--classes" in _err(capsys)
    assert main(["adopt", str(byo / "outside.h5"), "--classes", str(names), "--preprocess", "caffe",
                 "--out", str(adopted)]) == 0
    loaded = load_model(adopted)
    assert (loaded.class_names, loaded.task, loaded.image_size) == (["red", "green", "blue"], "multiclass", (32, 32))
    assert loaded.meta["adopted_from"]["preprocess_added"] == "caffe"
    card = read_card(adopted)
    assert card["class_names"] == ["red", "green", "blue"] and card["input"]["shape"] == ["N", 32, 32, 3]
    files = sorted(str(p) for p in (byo / "images").rglob("*.png"))
    (_, pixels), = list(file_batches(files, (SIZE, SIZE), 64))
    by_facts = load_model(byo / "outside.h5", facts=ModelFacts.from_options(preprocess="caffe")).predict(pixels)
    assert np.abs(loaded.predict(pixels) - by_facts).max() < 1e-6
    capsys.readouterr()
    assert main(["predict", str(adopted), files[0], "--preprocess", "caffe"]) == 2  # no double preprocessing
    assert "drop --preprocess" in _err(capsys)


def test_cluster_with_a_dynamic_input_feature_model(byo, tmp_path, capsys):
    """The issue's third failure: a model whose output is the feature vector, input (None, None, 3);
    --image-size says the size, and the extractor saved beside the clusters predicts new images."""
    out = tmp_path / "clusters"
    assert main(["cluster", str(byo / "images"), "--features", str(byo / "extractor.keras"), "--k", "2",
                 "--pca", "none", "--image-size", "24", "24", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["sizes"]) == 12
    assert main(["predict", str(out / "clusters.skops"), str(byo / "images"), "--out", str(tmp_path / "c.csv")]) == 0
    assigned = [line.split(",") for line in (tmp_path / "c.csv").read_text().splitlines()[1:]]
    assert len(assigned) == 12


def test_cluster_on_a_classifier_with_preprocessing_outside_predicts_new_images_alike(byo, tmp_path, capsys):
    """A classifier that wants caffe pixels, used as feature extractor: the features are the input of
    its last Dense layer, the preprocessing kerasclf put in front is saved with the clusters (the
    file alone would take raw pixels), so `predict clusters.skops` repeats the assignments."""
    out = tmp_path / "clusters"
    assert main(["cluster", str(byo / "images"), "--features", str(byo / "outside.h5"), "--preprocess", "caffe",
                 "--k", "2", "--pca", "none", "--out", str(out)]) == 0
    fitted = {row.split(",")[0]: row.split(",")[1] for row in (out / "assignments.csv").read_text().splitlines()[1:]}
    assert len(fitted) == 12
    assert main(["predict", str(out / "clusters.skops"), str(byo / "images"), "--out", str(tmp_path / "c.csv")]) == 0
    lines = (tmp_path / "c.csv").read_text().splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:]]
    assert {r["path"]: r["cluster"] for r in rows} == fitted


def test_export_a_foreign_model_is_checked_against_keras(byo, tmp_path, capsys):
    out = tmp_path / "outside.savedmodel"
    assert main(["export", str(byo / "outside.keras"), "--format", "savedmodel", "--out", str(out),
                 "--calibration", str(byo / "images"), "--preprocess", "caffe", "--classes", "r,g,b"]) == 0
    card = read_card(out)
    assert card["parity"]["passed"] and card["class_names"] == ["r", "g", "b"]
    files = sorted(str(p) for p in (byo / "images").rglob("*.png"))
    (_, pixels), = list(file_batches(files, (SIZE, SIZE), 64))
    ref = load_model(byo / "outside.keras", facts=ModelFacts.from_options(preprocess="caffe")).predict(pixels)
    assert np.abs(load_model(out).predict(pixels) - ref).max() < 1e-5


def test_a_foreign_savedmodel_needs_its_facts_and_then_predicts_like_keras(byo, tmp_path, capsys):
    """A SavedModel written by Keras's model.export (no layers to inspect): --preprocess, --task and
    --image-size are required (one-line errors), and then its outputs equal the model's."""
    plain = keras.saving.load_model(byo / "outside.keras")
    plain.export(str(tmp_path / "sm"), verbose=False)
    img = str(byo / "images" / "cat" / "cat.0.png")
    assert main(["predict", str(tmp_path / "sm"), img, "--classes", "r,g,b"]) == 2
    assert "--preprocess" in _err(capsys)
    assert main(["predict", str(tmp_path / "sm"), img, "--classes", "r,g,b", "--preprocess", "caffe"]) == 2
    assert "--task" in _err(capsys)
    facts = ModelFacts.from_options(classes="r,g,b", preprocess="caffe", task="multiclass", image_size=(SIZE, SIZE))
    loaded = load_model(tmp_path / "sm", facts=facts)
    files = sorted(str(p) for p in (byo / "images").rglob("*.png"))
    (_, pixels), = list(file_batches(files, loaded.image_size, 64))
    ref = np.asarray(plain(_by_hand(pixels, "caffe"), training=False))
    assert np.abs(loaded.predict(pixels) - ref).max() < 1e-5
    rows = predict_paths(loaded, files)
    assert [r["class"] for r in rows] == [["r", "g", "b"][i] for i in ref.argmax(axis=1)]


def _nested_mobilenet_h5(path: Path, size: int = 96) -> Path:
    """The issue's notebook model: Sequential(Rescaling, frozen MobileNet a0.25 (ImageNet), Flatten, Dense 128, Dense 1)."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNet(input_shape=(size, size, 3), alpha=0.25, include_top=False,
                                            weights="imagenet")
    backbone.trainable = False
    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 127.5, offset=-1), backbone,
                              keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.save(path)
    return path


@pytest.fixture
def cats_dogs(assets_dir, tmp_path):
    """3 real photos each in cat/ and dog/ (links to ../shared/assets/cats_vs_dogs)."""
    data = tmp_path / "data"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        for src in sorted((assets_dir / "cats_vs_dogs" / cls).glob("*.jpg"))[:3]:
            (data / cls / src.name).symlink_to(src)
    return data


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_analyze_with_class_folders(keras_home_with_mobilenet, cats_dogs, tmp_path, capsys):
    """The issue's second failure: analyze refused cat/ and dog/ ("it knows: 0"); now the error names
    --classes, and with it the report is written with metrics of the model's own predictions."""
    model = _nested_mobilenet_h5(tmp_path / "model.h5")
    assert main(["analyze", str(model), str(cats_dogs), "--explain", "none"]) == 2
    assert "--classes" in _err(capsys)
    out = tmp_path / "analysis"
    assert main(["analyze", str(model), str(cats_dogs), "--classes", "cat,dog", "--explain", "gradcam",
                 "--gallery", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not [w for w in metrics["warnings"] if "gradcam" in w], metrics["warnings"]
    files = sorted(str(p) for p in cats_dogs.rglob("*.jpg"))
    (_, pixels), = list(file_batches(files, (96, 96), 8))
    p_dog = keras.saving.load_model(model).predict(pixels, verbose=0)[:, 0]
    truth = np.array([0 if "/cat/" in f else 1 for f in files])
    assert metrics["accuracy"] == pytest.approx(float(np.mean((p_dog >= 0.5) == truth)), abs=1e-6)


def test_gradcam_on_the_sequential_wrapped_nested_backbone(keras_home_with_mobilenet, cats_dogs, tmp_path):
    """Grad-CAM finds the last convolution inside MobileNet nested in the user's Sequential model
    (behind the preprocessing kerasclf puts in front) and gives a map per image of its predicted class."""
    model = _nested_mobilenet_h5(tmp_path / "model.h5")
    loaded = load_model(model, facts=ModelFacts.from_options(classes="cat,dog"))
    files = sorted(str(p) for p in cats_dogs.rglob("*.jpg"))
    (_, pixels), = list(file_batches(files, loaded.image_size, 8))
    predicted = (loaded.predict(pixels)[:, 0] >= 0.5).astype(int).tolist()
    heat = explain(loaded.model, pixels, method="gradcam", class_index=predicted)
    assert heat.shape == (6, 96, 96) and np.isfinite(heat).all()
    assert (heat.reshape(6, -1).std(axis=1) > 0).all()  # a map of the predicted class, not a constant


def _flowers_sample(assets_dir: Path, data: Path, per_class: int = 40) -> Path:
    """``data``: the first ``per_class`` real photos of each flower class, linked from the assets."""
    for cls in sorted(p.name for p in (assets_dir / "flowers").iterdir() if p.is_dir()):
        (data / cls).mkdir(parents=True)
        for src in sorted((assets_dir / "flowers" / cls).glob("*.jpg"))[:per_class]:
            (data / cls / src.name).symlink_to(src)
    return data


def test_cluster_flowers_with_mobilenet_by_name_beats_chance(keras_home_with_mobilenet, assets_dir, tmp_path, capsys):
    """The seed's "pretrained features -> PCA -> KMeans" offline: `--features MobileNet --alpha 0.25
    --weights imagenet` on 40 real photos of each of the 5 flower classes; purity well above chance
    (0.2 here: equal classes; 0.24 on the whole folder)."""
    data = _flowers_sample(assets_dir, tmp_path / "flowers")
    out = tmp_path / "clusters"
    assert main(["cluster", str(data), "--features", "MobileNet", "--alpha", "0.25", "--weights", "imagenet",
                 "--image-size", "128", "128", "--k", "5", "--pca", "20", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["sizes"]) == 200
    assert summary["scores"]["purity"] > 0.35, summary["scores"]  # measured 0.42 (k=5, PCA 20); chance 0.2


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_head_command_on_real_flowers_beats_chance_and_its_file_predicts(assets_dir, tmp_path, capsys):
    """`kerasclf head FOLDER` (its defaults: EfficientNet-Lite0 ImageNet features from the installed wheel,
    plain, C chosen on validation) on 40 real photos of each flower class; the saved head predicts from
    the files; --tta --taps add the mirror image and Lite0's four stage ends."""
    data = _flowers_sample(assets_dir, tmp_path / "flowers")
    out = tmp_path / "head"
    assert main(["head", str(data), "--image-size", "128", "128", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["features"] == {"tta": False, "taps": [], "dim": 1280}
    assert metrics["test"]["n_images"] == 40 and metrics["test"]["accuracy"] > 0.5, metrics["test"]  # chance 0.2
    assert f"test accuracy {metrics['test']['accuracy']:.4f}" in printed and f"C={metrics['C']:g}" in printed
    assert main(["predict", str(out / "head.skops"), str(data / "daisy"), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 40 and sum(r["class"] == "daisy" for r in rows) > 20  # mostly its training images
    assert main(["head", str(data), "--image-size", "128", "128", "--tta", "--taps", "--out", str(tmp_path / "h2")]) == 0
    enriched = json.loads((tmp_path / "h2" / "metrics.json").read_text())["features"]
    assert enriched["tta"] is True and enriched["dim"] == 1280 + 40 + 80 + 112 + 192, enriched
    save_model(tiny_cnn(5), tmp_path / "mine.keras", meta={"class_names": list("abcde")})
    assert main(["head", str(data), "--features", str(tmp_path / "mine.keras"), "--taps", "--out",
                 str(tmp_path / "h3")]) == 2
    assert "--taps: kerasclf knows no intermediate layers" in capsys.readouterr().err
