"""Label audit: out-of-fold probabilities + cleanlab find planted label errors; bad input is one line;
the user's files are never changed."""
from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.extras  # the [audit] extra; tests/test_extras_optional.py reruns these without it
pytest.importorskip("cleanlab", reason="cleanlab is not installed (pip install 'kerasclf[audit]')")

from kerasclf.analysis.label_issues import ISSUE_COLUMNS, label_issue_sections  # noqa: E402
from kerasclf.cli import main  # noqa: E402
from kerasclf.data.sources import from_folder  # noqa: E402
from kerasclf.errors import DataError, ModelError  # noqa: E402
from kerasclf.features.audit import audit, audit_probabilities, out_of_fold_probabilities  # noqa: E402
from kerasclf.features.enriched import MOBILENET_TAPS, enriched_features  # noqa: E402
from kerasclf.testing import write_image_folder  # noqa: E402


def _blobs(n_per_class: int = 60, k: int = 3, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, dim))
    y = np.repeat(np.arange(k), n_per_class)
    return centres[y] + rng.normal(0, 1, (len(y), dim)), y


def test_planted_label_errors_are_found_in_features():
    x, y = _blobs()
    noisy = y.copy()
    planted = np.array([3, 70, 150, 175])
    noisy[planted] = (y[planted] + 1) % 3
    probs, info = out_of_fold_probabilities(x, noisy, folds=5)
    assert probs.shape == (180, 3) and np.allclose(probs.sum(1), 1)
    assert info["accuracy"] > 0.9 and str(info["C"]) in info["log_loss_by_C"]
    is_issue, scores, shares = audit_probabilities(noisy, probs)
    assert set(np.flatnonzero(is_issue)) >= set(planted)            # every planted error is flagged
    assert is_issue.sum() <= len(planted) + 3                         # and little else
    assert set(np.argsort(scores)[:len(planted)]) == set(planted)    # ranked first
    assert shares.shape == (3,) and shares.max() < 0.2               # about 4 in 180, not more


@pytest.fixture
def labelled_folder(tmp_path) -> tuple[Path, list[str]]:
    """Three classes of square-position images; three images filed under the wrong class."""
    root = write_image_folder(tmp_path / "data", n_per_class=20, size=24, classes=3, formats=("png",))
    wrong = []
    for src_cls, dst_cls in (("class0", "class1"), ("class1", "class2"), ("class2", "class0")):
        src = sorted((root / src_cls).iterdir())[0]
        dst = root / dst_cls / f"misfiled_{src.name}"
        shutil.move(src, dst)
        wrong.append(str(dst))
    return root, wrong


@pytest.fixture
def pixel_model(tmp_path) -> Path:
    """A feature model file whose output is the 6x6 downsampled image (square positions separate)."""
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.AveragePooling2D(4)(inputs)
    model = keras.Model(inputs, keras.layers.Flatten(name="features")(x), name="pixels")
    path = tmp_path / "pixels.keras"
    model.save(path)
    return path


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_audit_cli_finds_misfiled_images_and_changes_nothing(labelled_folder, pixel_model, tmp_path, capsys):
    root, wrong = labelled_folder
    (root / "class0" / "broken.png").write_bytes(b"not a png")  # an unreadable file: a listed skip
    before = _snapshot(root)
    out = tmp_path / "audit"
    code = main(["audit", str(root), "--features", str(pixel_model), "--out", str(out), "--folds", "3",
                 "--cache-dir", str(tmp_path / "cache"), "--gallery", "6", "--preprocess", "none",
                 "--no-tta"])  # class0 and class2 squares are mirror images: flip-averaging would merge them
    assert code == 0
    assert _snapshot(root) == before                                   # nothing moved or changed
    with (out / "label_issues.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ISSUE_COLUMNS
    assert {r["file"] for r in rows[:3]} == set(wrong)                # the misfiled images rank first
    given = {Path(r["file"]).name: (r["given_label"], r["suggested_label"]) for r in rows[:3]}
    assert all(g != s for g, s in given.values())
    assert [float(r["score"]) for r in rows] == sorted(float(r["score"]) for r in rows)
    printed = capsys.readouterr().out
    assert "estimated share of label errors" in printed and "skipped 1 unreadable" in printed
    assert "broken.png" in (out / "skipped.csv").read_text()
    page = (out / "label_issues.html").read_text()
    assert "misfiled_" in page and "data:image/png;base64," in page and "<script" not in page
    sections = label_issue_sections(out)
    assert [s.anchor() for s in sections] == ["label-quality", "label-issues"]
    assert len(sections[1].table.rows) == len(rows)
    assert {r[0] for r in sections[0].table.rows} == {"class0", "class1", "class2"}


def test_audit_bad_input_is_one_line(labelled_folder, pixel_model, tmp_path, capsys):
    root, _ = labelled_folder
    one = tmp_path / "one_class"
    shutil.copytree(root / "class0", one / "only")
    assert main(["audit", str(one), "--features", str(pixel_model), "--preprocess", "none",
                 "--out", str(tmp_path / "a1")]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    few = tmp_path / "few"
    shutil.copytree(root / "class0", few / "many")
    (few / "rare").mkdir()
    for p in sorted((root / "class1").iterdir())[:2]:
        shutil.copy(p, few / "rare" / p.name)
    with pytest.raises(DataError, match=r"too few in rare \(2\).*lower --folds"):
        audit(few, features=keras.saving.load_model(pixel_model), folds=5, cache_dir=None, verbose=0)
    assert main(["audit", "--features", str(pixel_model)]) == 2
    assert "give the DATA folder" in capsys.readouterr().err


def test_default_mobilenet_features_add_pooled_taps_and_the_probabilities_average_two_fits(tmp_path, pixel_model):
    spec = from_folder(write_image_folder(tmp_path / "d", n_per_class=6, size=24, classes=2, formats=("png",)))
    kw = dict(build_kwargs={"alpha": 0.25}, weights=None, image_size=(32, 32), cache_dir=None, verbose=0)
    keras.utils.set_random_seed(0)
    tapped = enriched_features(spec, "MobileNet", taps=MOBILENET_TAPS, **kw)
    keras.utils.set_random_seed(0)
    pooled = enriched_features(spec, "MobileNet", **kw)
    assert tapped.features.shape == (12, 64 + 128 + 128 + 256 + 256) and tapped.info["pooled_columns"] == 256
    np.testing.assert_allclose(tapped.features[:, -256:], pooled.features, rtol=1e-4, atol=1e-5)  # pooled last
    labels = np.asarray(tapped.labels, int)
    probs, info = out_of_fold_probabilities(tapped.features, labels, folds=3, last=256)
    assert probs.shape == (12, 2) and np.allclose(probs.sum(1), 1)
    assert info["columns"] == [832, 256] and len(info["C"]) == 2
    with pytest.raises(ModelError, match="backbone"):  # a model without a zoo backbone: one line, no traceback
        enriched_features(spec, keras.saving.load_model(pixel_model), taps=("conv_pw_5_relu",), cache_dir=None,
                       verbose=0, image_size=(24, 24))
