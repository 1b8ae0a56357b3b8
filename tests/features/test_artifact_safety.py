"""Nothing kerasclf loads can run code: heads, clusterings and feature caches refuse pickle payloads."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.preprocessing import FunctionTransformer

from kerasclf.cli import main
from kerasclf.data.spec import DataSpec
from kerasclf.errors import KerasclfError
from kerasclf.features import ClusterModel, extract_features, fit_clusters, fit_head, load_head
from kerasclf.features.artifacts import (
    ExtractorRecord,
    convert_artifact,
    read_artifact,
    save_artifact,
)
from kerasclf.features.commands import load_predictor


class Payload:
    """Unpickling this runs ``touch <marker>``: the side effect the tests look for."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _evil(tmp_path: Path, name: str, kind: str) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    joblib.dump({"info": {"kind": kind}, "head": Payload(marker), "kmeans": Payload(marker)}, path)
    return path, marker


def _xy():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    return rng.normal(size=(60, 6)) + y[:, None] * 2.0, y


@pytest.mark.parametrize("name,kind,loader", [
    ("head.joblib", "kerasclf.head", load_head),
    ("clusters.joblib", "kerasclf.clusters", ClusterModel.load),
    ("head.pkl", "kerasclf.head", load_predictor),
    ("renamed.skops", "kerasclf.head", load_predictor),  # a pickle given the new suffix
])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, name, kind, loader):
    path, marker = _evil(tmp_path, name, kind)
    before = _sha(path)
    with pytest.raises(KerasclfError) as err:
        loader(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert f"kerasclf convert-artifact {path} --trust" in msg
    assert not marker.exists(), "the pickle payload ran"
    assert _sha(path) == before


def test_cli_predict_refuses_payload_in_one_line(tmp_path, capsys):
    path, marker = _evil(tmp_path, "evil.joblib", "kerasclf.head")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), "uint8")).save(tmp_path / "photos" / "a.png")
    assert main(["predict", str(path), str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "convert-artifact" in err and str(path) in err
    assert not marker.exists()
    # converting needs --trust (and without it nothing is loaded)
    assert main(["convert-artifact", str(path)]) == 2
    assert "--trust" in capsys.readouterr().err and not marker.exists()
    assert not path.with_suffix(".skops").exists()


def test_skops_file_with_untrusted_types_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "head.skops"
    save_artifact({"info": {"kind": "kerasclf.head"}, "head": FunctionTransformer(os.system,
                   kw_args={})}, path)
    with pytest.raises(KerasclfError, match="types kerasclf does not load.*system") as err:
        load_head(path)
    assert "\n" not in str(err.value) and not marker.exists()
    (tmp_path / "junk.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(KerasclfError, match="junk.skops"):
        read_artifact(tmp_path / "junk.skops")


@pytest.mark.parametrize("kind,options", [("logreg", {}), ("linear_svm", {}),
                                          ("linear_svm", {"calibrate": True}), ("hgb", {"max_iter": 5})])
def test_every_head_kind_round_trips_through_the_trusted_list(tmp_path, kind, options):
    X, y = _xy()
    head = fit_head(X, y, kind, **options)
    path = save_artifact({"head": head, "info": {"kind": "kerasclf.head"}}, tmp_path / "h.skops")
    back = read_artifact(path)["head"]
    np.testing.assert_allclose(back.predict_proba(X), head.predict_proba(X))


def test_clusters_round_trip_and_old_file_converts_when_trusted(tmp_path, capsys):
    X, _ = _xy()
    cm = fit_clusters(X, pca=3, k=3, standardize=True)
    cm.save(tmp_path / "clusters.skops")
    np.testing.assert_array_equal(ClusterModel.load(tmp_path / "clusters.skops").predict(X), cm.predict(X))

    rec = ExtractorRecord(model="simple_cnn", layer="features", image_size=(32, 32))
    old = tmp_path / "old" / "head.joblib"
    old.parent.mkdir()
    head = fit_head(X, _xy()[1], "linear_svm", calibrate=True)
    joblib.dump({"head": head, "info": {"kind": "kerasclf.head", "record": rec.to_dict()}}, old)
    before = _sha(old)
    with pytest.raises(KerasclfError, match="--trust"):
        convert_artifact(old)
    assert main(["convert-artifact", str(old), "--trust"]) == 0
    assert "head.skops" in capsys.readouterr().out
    pipe = load_head(old.with_suffix(".skops"))
    np.testing.assert_allclose(pipe.predict_proba_features(X), head.predict_proba(X), rtol=1e-5)  # float32 features
    assert _sha(old) == before
    assert main(["convert-artifact", str(old), "--trust"]) == 2  # never overwrites


def test_feature_cache_with_a_pickled_array_is_recomputed_not_loaded(tmp_path, cnn_factory):
    spec = DataSpec.from_arrays(np.random.default_rng(0).integers(0, 255, (12, 8, 8, 3), dtype=np.uint8),
                                np.arange(12) % 2)
    model = cnn_factory(0)
    fs = extract_features(model, spec, image_size=(32, 32), cache_dir=tmp_path / "cache", verbose=0)
    first = np.array(fs.features)  # a copy: the cache file is replaced below
    marker = tmp_path / "cache.ran"
    np.save(fs.path / "features.npy", np.array([Payload(marker)] * 3, dtype=object), allow_pickle=True)
    again = extract_features(model, spec, image_size=(32, 32), cache_dir=tmp_path / "cache", verbose=0)
    assert not again.from_cache and not marker.exists()
    np.testing.assert_allclose(np.asarray(again.features), first, rtol=1e-5)
