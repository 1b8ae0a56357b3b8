"""``kerasclf review``: the sources it reads (audit, check, run), its folder rules, the server's
refusals, and the loop from an audit to data whose labels the decisions fixed, files untouched."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasclf.cli import main
from kerasclf.data.checks import run_check
from kerasclf.data.decisions import apply_decisions, current_decisions, read_decisions
from kerasclf.data.pipeline import split_arrays
from kerasclf.data.sources import from_folder
from kerasclf.errors import ConfigError, DataError
from kerasclf.io import load_model
from kerasclf.review import default_folder, open_review
from kerasclf.review.items import collect_items, from_run
from kerasclf.review.page import script_json
from kerasclf.testing import write_image_folder
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe

needs_cleanlab = pytest.mark.skipif(importlib.util.find_spec("cleanlab") is None,
                                    reason="the [audit] extra (cleanlab) is not installed")


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def misfiled(tmp_path) -> tuple[Path, dict[str, str]]:
    """Three classes of square-position images; three filed under the wrong class (``{path: true class}``)."""
    root = write_image_folder(tmp_path / "data", n_per_class=20, size=24, classes=3, formats=("png",))
    wrong = {}
    for src_cls, dst_cls in (("class0", "class1"), ("class1", "class2"), ("class2", "class0")):
        src = sorted((root / src_cls).iterdir())[0]
        dst = root / dst_cls / f"misfiled_{src.name}"
        shutil.move(src, dst)
        wrong[str(dst)] = src_cls
    return root, wrong


@pytest.fixture
def pixel_model(tmp_path) -> Path:
    """A feature model file whose output is the 6x6 downsampled image (square positions separate)."""
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.AveragePooling2D(4)(inputs)
    keras.Model(inputs, keras.layers.Flatten(name="features")(x), name="pixels").save(tmp_path / "pixels.keras")
    return tmp_path / "pixels.keras"


def _post(url: str, body: bytes, kind: str = "application/json", host: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": kind})
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if e.headers.get("Content-Type") == "application/json" else {}


@needs_cleanlab
def test_from_an_audit_to_decided_labels_without_moving_a_file(misfiled, pixel_model, tmp_path, capsys):
    root, wrong = misfiled
    before = _snapshot(root)
    audit_dir = tmp_path / "data_audit"
    assert main(["audit", str(root), "--features", str(pixel_model), "--out", str(audit_dir), "--folds", "3",
                 "--cache-dir", str(tmp_path / "cache"), "--gallery", "0", "--preprocess", "none", "--no-tta"]) == 0
    review = open_review([audit_dir])
    assert review.folder == tmp_path / "data_audit_review" == default_folder([audit_dir])
    flagged = {it.path: it for it in review.found.items}
    assert set(wrong) <= set(flagged) and all(it.reasons == ["label issue"] for it in flagged.values())
    assert all(flagged[p].suggested == true for p, true in wrong.items())  # the audit's suggestion
    server = review.server()
    thread = server.start()
    try:  # the page's requests, as the browser test's keys make them: the true class is the oracle
        for path, it in flagged.items():
            label = wrong.get(path, it.given)
            action = "relabel" if label != it.given else "keep"
            assert _post(server.url + "decide", json.dumps({"path": path, "action": action, "new_label": label,
                                                            "reason": "label issue"}).encode())[0] == 200
        assert _post(server.url + "quit", b"{}")[0] == 200
    finally:
        thread.join(10)
    assert not thread.is_alive()  # quit stopped it
    log = review.decisions_path
    now = current_decisions(read_decisions(log))
    assert {p for p, d in now.items() if d.action == "relabel"} == set(wrong)
    fixed = apply_decisions(from_folder(root), log)
    for path, true in wrong.items():
        assert fixed.class_names[fixed.labels[fixed.paths.index(path)]] == true
    # the audit with the decisions applied no longer flags them; the data folder is as it was
    assert main(["audit", str(root), "--features", str(pixel_model), "--out", str(tmp_path / "again"), "--folds", "3",
                 "--cache-dir", str(tmp_path / "cache"), "--gallery", "0", "--preprocess", "none", "--no-tta",
                 "--decisions", str(log)]) == 0
    again = json.loads((tmp_path / "again" / "label_quality.json").read_text())
    assert again["n_issues"] < len(flagged) and not set(wrong) & {
        r.split(",")[1] for r in (tmp_path / "again" / "label_issues.csv").read_text().splitlines()[1:]}
    assert _snapshot(root) == before
    # re-reviewing continues: the page carries the earlier decisions
    again_review = open_review([audit_dir])
    assert len(again_review.decisions()) == len(flagged) and '"action": "relabel"' in again_review.render()


def test_a_check_report_gives_conflicts_and_duplicates_with_their_labels(tmp_path):
    root = write_image_folder(tmp_path / "data", n_per_class=6, size=24, classes=2, formats=("png",))
    first = sorted((root / "class0").iterdir())[0]
    shutil.copy(first, root / "class1" / "same_photo.png")      # a conflict
    shutil.copy(first, root / "class0" / "copy.png")            # and, in the same group, a duplicate
    other = sorted((root / "class1").iterdir())[0]
    shutil.copy(other, root / "class1" / "again.png")           # a plain duplicate
    run_check(root, out_json=tmp_path / "check.json")
    found = collect_items([tmp_path / "check.json"])
    by_name = {Path(it.path).name: it for it in found.items}
    assert by_name["same_photo.png"].reasons == ["conflict"] and by_name["same_photo.png"].given == "class1"
    assert by_name["again.png"].reasons == ["duplicate"] and by_name["again.png"].given == "class1"
    assert "class0" in " ".join(by_name["same_photo.png"].notes)  # names the other copy's label
    assert found.class_names == ["class0", "class1"] and found.roots == [str(root)]
    with pytest.raises(ConfigError, match="inside the data folder"):
        open_review([tmp_path / "check.json"], out=root / "review")
    with pytest.raises(DataError, match="not a review source"):
        collect_items([root])


@pytest.mark.slow  # 35-55 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_a_run_gives_its_top_losses_and_ood_flags_and_its_review_folder_rules(tmp_path):
    root = write_image_folder(tmp_path / "data", n_per_class=12, size=24, classes=3, formats=("png",))
    misfiled = {}
    for src_cls, dst_cls in (("class0", "class1"), ("class2", "class0")):
        src = sorted((root / src_cls).iterdir())[0]
        shutil.move(src, root / dst_cls / f"misfiled_{src.name}")
        misfiled[str(root / dst_cls / f"misfiled_{src.name}")] = src_cls
    recipe = Recipe.from_dict({"name": "r", "output_dir": str(tmp_path / "runs"),
                               "data": {"source": "folder", "path": str(root), "image_size": [24, 24], "batch_size": 8},
                               "model": {"name": "simple_cnn"}, "train": {"epochs": 8, "verbose": 0, "seed": 1}})
    run = train(recipe).run_dir  # 8 epochs: enough for the squares, so a misfiled photo's loss stands out
    found = from_run(run, top_losses=5)
    losses = {it.path: it for it in found.items if "top loss" in it.reasons}
    spec = from_folder(root)  # recomputed apart: the model's loss on each image against its folder label
    x, y = split_arrays(spec, image_size=(24, 24))
    probs = load_model(run / "model.keras").model.predict(x, verbose=0)
    loss = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1))
    assert set(losses) == {spec.paths[i] for i in np.argsort(-loss)[:5]}
    assert all(it.suggested == spec.class_names[int(probs[spec.paths.index(p)].argmax())] for p, it in losses.items())
    assert any(losses[p].suggested == true != losses[p].given for p, true in misfiled.items() if p in losses)
    assert all(it.split in ("train", "val", "test") for it in found.items)
    assert found.class_names == ["class0", "class1", "class2"] and found.roots == [str(root)]
    assert (run / "model.ood.npz").is_file()  # the OOD flag was there to be read
    review = open_review([run], top_losses=5)
    assert review.folder == run / "review" and (run / "review" / "review.json").is_file()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a review folder"):
        open_review([run], out=tmp_path / "notes")
    check = tmp_path / "check.json"
    run_check(root, out_json=check)
    with pytest.raises(ConfigError, match="review of other sources.*--overwrite"):
        open_review([check], out=run / "review")
    review.decisions_path.write_text("path,action,new_label,reason,time\n")
    open_review([check], out=run / "review", overwrite=True)
    assert review.decisions_path.read_text() == "path,action,new_label,reason,time\n"  # kept, not replaced
    with pytest.raises(ConfigError, match="unknown split 'training'"):
        from_run(run, splits=("training",))


def test_the_server_answers_only_its_token_and_host_and_takes_only_decisions_of_its_images(tmp_path):
    root = write_image_folder(tmp_path / "data", n_per_class=4, size=24, classes=2, formats=("png",))
    first = sorted((root / "class0").iterdir())[0]
    shutil.copy(first, root / "class1" / "same.png")
    run_check(root, out_json=tmp_path / "check.json")
    review = open_review([tmp_path / "check.json"])
    server = review.server()
    thread = server.start()
    try:
        base = server.url.rsplit("/", 2)[0]
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "/", timeout=10)                      # no token: nothing
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + "/wrong-token/", timeout=10)
        page = urllib.request.urlopen(server.url, timeout=10).read().decode()
        assert "same.png" in page and "Content-Security-Policy" in page
        path = str(root / "class1" / "same.png")
        good = json.dumps({"path": path, "action": "exclude", "reason": "conflict"}).encode()
        assert _post(server.url + "decide", good, host=f"evil.example:{server.port}")[0] == 404  # DNS rebinding
        assert _post(server.url + "decide", good, kind="text/plain")[0] == 415
        code, body = _post(server.url + "decide", json.dumps({"path": "/etc/passwd", "action": "exclude"}).encode())
        assert code == 400 and "not an image of this review" in body["error"]
        code, body = _post(server.url + "decide", json.dumps({"path": path, "action": "relabel",
                                                              "new_label": "class9"}).encode())
        assert code == 400 and "unknown class" in body["error"]
        assert _post(server.url + "decide", json.dumps({"path": path, "action": "move"}).encode())[0] == 400
        assert _post(server.url + "decide", good)[0] == 200
        assert not review.decisions_path.with_name("passwd").exists()
        assert [d.action for d in read_decisions(review.decisions_path)] == ["exclude"]
        assert _post(server.url + "closed", b"")[0] == 200                    # the tab went away ...
        assert urllib.request.urlopen(server.url, timeout=10).status == 200   # ... and was reloaded: still up
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_names_cannot_end_the_data_block():
    text = script_json({"name": "</script><script>alert(1)</script>", "x": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "x": "\u2028&"}


def test_the_cli_writes_the_page_without_serving_and_refuses_a_bad_source(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", n_per_class=4, size=24, classes=2, formats=("png",))
    shutil.copy(sorted((root / "class0").iterdir())[0], root / "class1" / "same.png")
    run_check(root, out_json=tmp_path / "check.json")
    capsys.readouterr()
    assert main(["review", str(tmp_path / "check.json"), "--no-serve"]) == 0
    out = capsys.readouterr().out
    assert "2 conflict" in out and (tmp_path / "check_review" / "review.html").is_file()
    assert main(["review", str(tmp_path / "nothing_here")]) == 2
    assert "error: " in capsys.readouterr().err
    assert np.sum([p.is_file() for p in root.rglob("*")]) == 9  # nothing written into the data
