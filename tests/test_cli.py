"""The command line: one-line errors with exit 2, the zoo listing, train/predict/evaluate."""
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import kerasclf
import kerasclf.cli as cli
from kerasclf.cli import main
from kerasclf.testing import write_image_folder
from kerasclf.train import load_recipe, train
from kerasclf.zoo import build

ROOT = Path(__file__).resolve().parents[1]


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_recipe_key_is_one_line_exit_2(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ntrain: {epochz: 3}\n")
    assert main(["train", str(recipe)]) == 2
    line = _err_line(capsys)
    assert line.startswith("error: unknown key") and "epochz" in line and "epochs" in line


def test_unknown_model_is_one_line_exit_2(tmp_path, capsys):
    assert main(["train", "demo", "--set", "model.name=efficientnet_b0", "--output-dir", str(tmp_path)]) == 2
    assert "efficientnet_b0_head" in _err_line(capsys)


def test_empty_class_folder_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "dog").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(tmp_path / "imgs" / "cat" / "a.png")
    code = main(["train", "own_folder", "--set", f"data.path={tmp_path / 'imgs'}",
                 "--output-dir", str(tmp_path / "runs")])
    assert code == 2
    assert "dog" in _err_line(capsys)


def test_zoo_lists_models(capsys):
    assert main(["zoo", "simple*"]) == 0
    out = capsys.readouterr().out
    assert "simple_cnn" in out and "1,777,636" in out and "32x32x3" in out


def test_unregistered_custom_layer_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.keras"
    build("simple_cnn", num_classes=2).save(model)
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(tmp_path / "a.png")
    monkeypatch.delitem(keras.saving.get_custom_objects(), "kerasclf>Preprocess")
    assert main(["predict", str(model), str(tmp_path / "a.png")]) == 2
    line = _err_line(capsys)
    assert "'Preprocess'" in line and "`import kerasclf`" in line


def test_console_script_entry_point(capsys):
    """`kerasclf` is cli.main (run as a program in tests/test_startup.py); --version answers."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"kerasclf": "kerasclf.cli:main"}
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"kerasclf {kerasclf.__version__}"


def test_demo_fails_when_its_accuracy_bar_is_not_met(tmp_path, capsys, monkeypatch):
    """--min-accuracy gates the exit status: below the bar the demo exits 1 and says so on stderr."""
    def fake_train(recipe, **kw):
        assert recipe.name == "demo" and recipe.train.epochs == 1
        return SimpleNamespace(metrics={"test": {"accuracy": 0.42}})

    monkeypatch.setattr(cli, "train", fake_train)
    monkeypatch.setattr(cli, "_print_run", lambda result: None)
    args = ["demo", "--epochs", "1", "--output-dir", str(tmp_path), "--verbose", "0"]
    assert main([*args, "--min-accuracy", "0.5"]) == 1
    captured = capsys.readouterr()
    assert "test accuracy 0.4200 is below 0.5" in captured.err and "OK" not in captured.out
    assert main([*args, "--min-accuracy", "0.42"]) == 0  # the bar is inclusive
    assert "demo: test accuracy 0.4200 >= 0.42: OK" in capsys.readouterr().out
    assert main(args) == 1  # the default bar is the demo's promise of 0.95


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_demo_train_predict_evaluate(tmp_path, capsys):
    """The demo pipeline for 2 epochs, then predict and evaluate on written image files."""
    runs = tmp_path / "runs"
    # 2 of the demo's 15 epochs already clear a real bar (ten digits: chance is 0.1; measured 0.71)
    assert main(["demo", "--epochs", "2", "--min-accuracy", "0.5", "--output-dir", str(runs), "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    acc = json.loads((runs / "demo" / "metrics.json").read_text())["test"]["accuracy"]
    with capsys.disabled():
        print(f"\ndemo after 2 epochs: test accuracy {acc:.4f}")
    assert f"demo: test accuracy {acc:.4f} >= 0.5: OK" in out
    model = runs / "demo" / "model.keras"
    assert model.is_file()
    # a second demo into the same folder is refused, the first one kept
    assert main(["demo", "--epochs", "1", "--output-dir", str(runs)]) == 2
    assert "--overwrite" in _err_line(capsys)
    # predict on digit images written as files, including a bad one

    digits = load_digits()
    folder = tmp_path / "new"
    for label in (0, 1):
        (folder / str(label)).mkdir(parents=True)
        for i in np.flatnonzero(digits.target == label)[:3]:
            img = (digits.images[i] * 255 / 16).astype("uint8")
            Image.fromarray(img).resize((32, 32)).save(folder / str(label) / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    csv_path = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(folder), "--out", str(csv_path)]) == 0
    text = csv_path.read_text()
    assert text.count("\n") == 1 + 7 and "broken.png" in text
    (folder / "broken.png").unlink()
    assert main(["evaluate", str(model), str(folder)]) == 0
    assert "accuracy" in capsys.readouterr().out
    # a class folder the model does not know: one line naming it, for evaluate and analyze alike
    (folder / "letters").mkdir()
    Image.fromarray(np.zeros((32, 32), "uint8")).save(folder / "letters" / "a.png")
    for command in (["evaluate", str(model), str(folder)], ["analyze", str(model), str(folder)]):
        assert main(command) == 2
        line = _err_line(capsys)
        assert "letters" in line and "rename the folders" in line


@pytest.mark.slow
def test_demo_reaches_its_promised_accuracy(tmp_path):
    result = train(load_recipe("demo", [f"output_dir={tmp_path}"]), verbose=0)
    assert result.metrics["test"]["accuracy"] >= 0.95
    sizes = result.metrics["split_sizes"]
    assert sum(sizes.values()) == 1797 and abs(sizes["test"] - 0.2 * 1797) <= 2 and abs(sizes["val"] - 180) <= 2


def test_check_reports_bad_files_and_strict_exit(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "imgs", n_per_class=4, classes=2)
    (folder / "class0" / "empty.jpg").write_bytes(b"")
    report = tmp_path / "check.json"
    assert main(["check", str(folder), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "empty.jpg" in out and report.is_file()
    assert main(["check", str(folder), "--strict"]) == 1
    assert (folder / "class0" / "empty.jpg").exists()  # never deleted or moved
