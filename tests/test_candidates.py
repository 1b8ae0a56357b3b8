"""Compare's choice between single models, TTA and ensembles: a deliberately strong scikit-learn
head and weak Keras models, built by hand (no training), so the numbers can be checked for
consistency: every gain is against the best single model, the tested configuration is the chosen
one, and the saved model reproduces what was tested."""
import json
import re

import keras
import numpy as np
import pytest

from kerasclf.candidates import (Configuration, Member, MemberAverage, config_probs, largest_size, load_configuration,
                                 predict_probs, save_configuration)
from kerasclf.data import splits
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ModelError
from kerasclf.experiment import _choose, _row
from kerasclf.features import extract_features, fit_head, save_head
from kerasclf.io import save_model
from kerasclf.testing import tiny_cnn

NAMES = ["red", "green", "blue"]
SIZE = 16


def _colour_images(n_per_class=24, seed=0):
    """Noise with one colour channel raised: trivial for features, unknown to an untrained CNN."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, size=(3 * n_per_class, SIZE, SIZE, 3))
    y = np.repeat(np.arange(3), n_per_class)
    x[np.arange(len(y)), :, :, y] += 140
    return x.astype("uint8"), y


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """``(root, spec, manifest, rows)``: two weak Keras models (untrained, with a history) and a strong head."""
    root = tmp_path_factory.mktemp("candidates")
    keras.utils.set_random_seed(0)
    spec = DataSpec.from_arrays(*_colour_images(), class_names=NAMES)
    manifest = root / "split.csv"
    parts = splits.split_or_reuse(spec, manifest, (0.5, 0.25, 0.25), seed=0)
    rows = []
    for i, label in enumerate(("weak_a", "weak_b")):
        run = root / "models" / label
        save_model(tiny_cnn(3, (SIZE, SIZE, 3)), run / "model.keras",
                   meta={"class_names": NAMES, "task": "multiclass", "image_size": [SIZE, SIZE]})
        (run / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                                         f"0,0.3,1.2,0.3,1.1\n1,0.35,1.1,{0.3 + 0.02 * i},1.05\n")
        rows.append(_row(label, "scratch", run, {"params": 1}))
    run = root / "models" / "strong"
    fs = extract_features(tiny_cnn(3, (SIZE, SIZE, 3)), spec, index=parts["train"], image_size=(SIZE, SIZE),
                          cache_dir=None, verbose=0)
    save_head(run / "head.skops", fit_head(fs.features, fs.labels, "logreg"), fs.record, extractor=fs.extractor)
    rows.append(_row("strong", "sklearn", run, {"params": 1}))
    return root, spec, manifest, rows


def test_choice_is_consistent_with_a_strong_head_and_weak_keras_models(members):
    root, spec, manifest, rows = members
    out = root / "cmp"
    out.mkdir(exist_ok=True)
    board = _choose(out, [dict(r) for r in rows], spec, manifest, tta=True, ensemble=3)
    singles = {r["label"]: r["val_acc"] for r in board.rows}
    # the set-up: the head is the best single model by far
    assert board.best == "strong" == board.rows[0]["label"]
    assert singles["strong"] > max(singles["weak_a"], singles["weak_b"]) + 0.2, singles
    # 3 singles, 3 with TTA, the top-3 ensemble with and without TTA
    assert len(board.candidates) == 8
    assert {c["kind"] for c in board.candidates} == {"single", "tta", "ensemble"}
    for c in board.candidates:  # every gain is against the best single model, never another
        assert c["gain"] == pytest.approx(c["val_acc"] - max(singles.values()))
        if c["kind"] == "single":
            assert c["val_acc"] == singles[c["configuration"]]
    top = max(c["val_acc"] for c in board.candidates)
    pick = board.candidates[0]
    assert pick["configuration"] == board.chosen and pick["val_acc"] == top
    # the tested configuration is the chosen one; its test score is that of the saved model
    test = board.test
    assert test["configuration"] == board.chosen and test["val_acc"] == pick["val_acc"]
    assert test["best_single"] == "strong" and test["gain"] == pick["gain"]
    parts = splits.read_manifest(manifest, spec)
    x_test, y_test = spec.images[parts["test"]].astype("float32"), spec.labels[parts["test"]]
    saved = load_configuration(out / "chosen")
    p = predict_probs(saved, x_test, "multiclass")
    assert test["n"] == len(y_test) and test["accuracy"] == pytest.approx(np.mean(p.argmax(1) == y_test))
    assert test["accuracy"] > 0.8  # three classes: chance is 1/3
    # leaderboard.json says the same
    summary = json.loads((out / "leaderboard.json").read_text())
    assert summary["best"] == "strong" and summary["chosen"] == board.chosen
    assert summary["test"]["accuracy"] == test["accuracy"] and len(summary["candidates"]) == 8
    # the report: gains against the strong head, the chosen row highlighted, its sections, both curves
    html = (out / "report.html").read_text()
    cand = re.search(r"<section id='candidates'>(.*?)</section>", html, re.S).group(1)
    assert "against the best single model, strong (validation accuracy" in cand
    assert "<th>gain vs strong</th>" in cand
    best_row = re.findall(r"<td>(.*?)</td>", re.search(r"<tr class='best'>(.*?)</tr>", cand).group(1))
    assert best_row[0] == board.chosen and float(best_row[-1]) == pytest.approx(pick["gain"], abs=1e-4)
    gains = [float(re.findall(r"<td>(.*?)</td>", r)[-1]) for r in re.findall(r"<tr(?: class='best')?>(.*?)</tr>", cand)
             if "<td>" in r]
    assert gains == pytest.approx([c["gain"] for c in board.candidates], abs=1e-4)
    for sid in ("confusion", "per-class", "galleries", "calibration"):
        heading = re.search(rf"<section id='{sid}'>\s*<h2>(.*?)</h2>", html).group(1)
        assert heading.endswith(f": {board.chosen}"), heading
    assert re.search(r"<section id='curves'>.*?weak_a, weak_b.*?</section>", html, re.S)
    assert f"The chosen configuration ({board.chosen}," in html and f"accuracy {test['accuracy']:.4f}" in html


def test_saved_configurations_reproduce_what_was_scored(members, tmp_path):
    root, spec, manifest, rows = members
    ms = {r["label"]: Member(r["label"], r["run_dir"]) for r in rows}
    x = spec.images[:20].astype("float32")
    cases = [(Configuration("ensemble+tta(weak_a,weak_b)", "ensemble", ["weak_a", "weak_b"], tta=True), "keras"),
             (Configuration("weak_a+tta", "tta", ["weak_a"], tta=True), "keras"),
             (Configuration("strong+tta", "tta", ["strong"], tta=True), "head"),
             (Configuration("ensemble(strong,weak_a)", "ensemble", ["strong", "weak_a"]), "members")]
    for cfg, fmt in cases:
        scored = config_probs(cfg, ms, lambda size: x, "multiclass")
        saved = save_configuration(cfg, ms, tmp_path / cfg.label, class_names=NAMES, task="multiclass")
        assert saved["format"] == fmt and saved["one_keras_model"] == (fmt == "keras")
        if fmt != "keras":
            assert "not one Keras model" in saved["note"] or "cannot be one Keras model" in saved["note"]
        again = predict_probs(load_configuration(tmp_path / cfg.label), x, "multiclass")
        np.testing.assert_allclose(again, scored, atol=1e-5, err_msg=cfg.label)
    # TTA really averages the mirror: the Keras TTA differs from the model alone, and equals the mean by hand
    plain = config_probs(Configuration("weak_a", "single", ["weak_a"]), ms, lambda size: x, "multiclass")
    mirror = config_probs(Configuration("weak_a", "single", ["weak_a"]), ms, lambda size: x[:, :, ::-1], "multiclass")
    tta = config_probs(Configuration("weak_a+tta", "tta", ["weak_a"], tta=True), ms, lambda size: x, "multiclass")
    np.testing.assert_allclose(tta, (plain + mirror) / 2, atol=1e-5)
    assert np.abs(tta - plain).max() > 1e-4


def test_mixed_size_ensemble_records_the_largest_size_by_area(tmp_path):
    """Members at (24, 8) and (16, 16): the saved ensemble records (16, 16), the one with more
    pixels; ``max`` over the tuples picked (24, 8) (larger height) and threw away resolution."""
    assert largest_size([(224, 100), (160, 160)]) == (160, 160)
    assert largest_size([(8, 32), (16, 16)]) == (16, 16)           # tie on area: the taller
    with pytest.raises(ModelError, match="at least one member"):
        largest_size([])
    ms = {}
    for label, size in (("tall", (24, 8)), ("square", (16, 16))):
        save_model(tiny_cnn(3, (*size, 3)), tmp_path / label / "model.keras",
                   meta={"class_names": NAMES, "task": "multiclass", "image_size": list(size)})
        ms[label] = Member(label, tmp_path / label)
    cfg = Configuration("ensemble(tall,square)", "ensemble", ["tall", "square"])
    save_configuration(cfg, ms, tmp_path / "chosen", class_names=NAMES, task="multiclass")
    loaded = load_configuration(tmp_path / "chosen")
    assert tuple(loaded.image_size) == (16, 16)
    assert MemberAverage(list(ms.values()), tta=False, task="multiclass", class_names=NAMES).image_size == (16, 16)
