"""PCA + KMeans on real digits: purity above chance, names files, montages, fresh-process reload."""
from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasclf.errors import ConfigError, KerasclfError
from kerasclf.features import (
    ClusterModel,
    cluster_scores,
    elbow_silhouette,
    extract_features,
    fit_clusters,
    montages,
    predict_folder,
    read_names,
    run_cluster,
    write_names_template,
)
from kerasclf.testing import run_python


@pytest.fixture(scope="module")
def flat_features(digits_spec, cnn_factory, tmp_path_factory):
    """Flattened conv features of a random-init tiny CNN on all 1,797 digits (32x32 RGB)."""
    model = cnn_factory(0, pool="flat")
    fs = extract_features(model, digits_spec, image_size=(32, 32),
                          cache_dir=tmp_path_factory.mktemp("cluster_cache"), verbose=0)
    return model, fs


def test_kmeans_on_cnn_features_is_far_above_chance(flat_features):
    _, fs = flat_features
    cm = fit_clusters(fs.features, pca=50, k=10, seed=0)
    s = cluster_scores(fs.labels, cm.predict(fs.features))
    print(f"\nrandom-init CNN (flatten) + PCA50 + KMeans10 on digits: purity {s['purity']:.3f}, "
          f"ARI {s['ari']:.3f}, PCA kept {cm.explained_variance:.1%}")
    assert s["purity"] > 0.55 and s["ari"] > 0.35  # chance purity 0.10, ARI 0
    assert 0.5 < cm.explained_variance <= 1.0 and cm.n_components == 50


def test_kmeans_on_autoencoder_features(digits_spec, ae_factory):
    ae = ae_factory(latent=32)
    x = tf.image.resize(np.repeat(digits_spec.images, 3, -1).astype("float32"), (32, 32)).numpy()
    ae.compile("adam", "mse")
    hist = ae.fit(x, x / 255.0, epochs=6, batch_size=64, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] / 3
    fs = extract_features(ae, digits_spec, layer="encoder", image_size=(32, 32), cache_dir=None, verbose=0)
    cm = fit_clusters(fs.features, pca=0.95, k=10, seed=0)  # keep 95% of the variance
    s = cluster_scores(fs.labels, cm.predict(fs.features))
    print(f"\nconv autoencoder (6 epochs) latent + PCA95% ({cm.n_components} comps) + KMeans10: "
          f"purity {s['purity']:.3f}, ARI {s['ari']:.3f}")
    assert s["purity"] > 0.5 and s["ari"] > 0.3
    assert cm.explained_variance >= 0.95


def test_scores_and_bad_options():
    s = cluster_scores(np.array([0, 0, 1, 1, 2, 2]), np.array([1, 1, 0, 0, 0, 0]))
    assert s["purity"] == pytest.approx(4 / 6) and 0 < s["ari"] < 1 and s["chance_purity"] == pytest.approx(1 / 3)
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ConfigError, match="k=1"):
        fit_clusters(X, k=1)
    with pytest.raises(KerasclfError, match="20 images but k=30"):
        fit_clusters(X, k=30)
    assert fit_clusters(X, pca=10, k=2).n_components == 4  # capped at the feature count


def test_names_file_round_trip(tmp_path):
    p = write_names_template(tmp_path / "clusters.csv", 4)
    assert p.read_text().splitlines()[0] == "cluster,name"
    assert read_names(p, k=4) == {i: f"cluster_{i}" for i in range(4)}
    names = {0: "zero", 1: "one, or seven", 2: "ocho \u00f1", 3: "three"}

    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cluster", "name"])
        for c in (2, 0, 3, 1):  # any order, quoted commas, non-ASCII
            w.writerow([c, names[c]])
        w.writerow([])  # blank lines are fine
    assert read_names(p, k=4) == names
    write_names_template(p, 4)  # an existing (filled) file is kept
    assert read_names(p) == names


@pytest.mark.parametrize("body,row,what", [
    ("cluster,name\n0,a\nx,b\n", 3, "not an integer"),
    ("cluster,name\n0,a\n0,b\n", 3, "appears twice"),
    ("cluster,name\n0,a\n7,b\n", 3, "out of range"),
    ("cluster,name\n0,a\n1,  \n", 3, "empty name"),
    ("id;label\n0;a\n", 1, "header"),
    ("cluster,name\n0,a\n-1,b\n", 3, "out of range"),
])
def test_bad_names_file_names_file_and_row(tmp_path, body, row, what):
    p = tmp_path / "names.csv"
    p.write_text(body)
    with pytest.raises(KerasclfError) as err:
        read_names(p, k=3)
    msg = str(err.value)
    assert str(p) in msg and f"row {row}" in msg and what in msg and "\n" not in msg


def test_missing_clusters_and_missing_file(tmp_path):
    p = tmp_path / "names.csv"
    p.write_text("cluster,name\n0,a\n")
    with pytest.raises(ConfigError, match=r"names\.csv: no name for cluster\(s\) 1, 2"):
        read_names(p, k=3)
    with pytest.raises(ConfigError, match="not found"):
        read_names(tmp_path / "nope.csv")


def test_montages_and_elbow_plot(flat_features, digits_spec, tmp_path):
    _, fs = flat_features
    cm = fit_clusters(fs.features[:400], pca=20, k=5)
    a = cm.predict(fs.features[:400])
    files = montages(digits_spec.subset(np.arange(400)), a, tmp_path / "m", per_cluster=16,
                     names={0: "round ones"})
    assert len(files) == len(set(a)) and files[0].name == "cluster_00_round_ones.png"

    with Image.open(files[1]) as im:  # a 4x4 grid of upsampled 8x8 digits
        assert im.size[0] >= 4 * 48
    res = elbow_silhouette(fs.features[:400], [2, 4, 6], tmp_path / "elbow.png", pca=20)
    assert sorted(res) == [2, 4, 6] and (tmp_path / "elbow.png").stat().st_size > 1000
    assert res[2]["inertia"] > res[6]["inertia"] and all(-1 <= v["silhouette"] <= 1 for v in res.values())


FRESH = textwrap.dedent("""
    import sys, json, numpy as np
    from kerasclf.features import ClusterModel
    from kerasclf.data.spec import DataSpec
    from sklearn.datasets import load_digits
    cm = ClusterModel.load(sys.argv[1])
    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:300, :, :, None]
    a = cm.predict_images(images)
    np.save(sys.argv[2], a)
""")


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_clustering_reloaded_in_a_fresh_process_gives_same_assignments(flat_features, digits_spec, tmp_path):
    model, fs = flat_features
    cm = fit_clusters(fs.features, pca=30, k=10, seed=0, record=fs.record)
    expected = cm.predict(fs.features[:300])
    path = cm.save(tmp_path / "clusters.skops", extractor=fs.extractor)
    info = json.loads((tmp_path / "clusters.json").read_text())
    assert info["k"] == 10 and info["record"]["model_path"] == "clusters.extractor.keras"
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    out = tmp_path / "assign.npy"
    proc = run_python(script, str(path), str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = np.load(out)
    assert np.array_equal(got, expected)
    # and the same in this process, from the file
    assert np.array_equal(ClusterModel.load(path).predict_images(digits_spec.images[:300]), expected)


def test_run_cluster_then_predict_folder(digits_spec, cnn_factory, tmp_path, png_writer, capsys):
    spec = digits_spec.subset(np.arange(500))
    model = cnn_factory(0, pool="flat")
    out = tmp_path / "run"
    summary = run_cluster(spec, features_model=model, pca=20, k=10, out_dir=out,
                          image_size=(32, 32), elbow_ks=[5, 10], verbose=0)
    for name in ("clusters.skops", "clusters.json", "clusters.csv", "assignments.csv",
                 "summary.json", "elbow.png", "clusters.extractor.keras"):
        assert (out / name).is_file(), name
    assert len(summary["montages"]) == len([s for s in summary["sizes"] if s])
    assert summary["scores"]["purity"] > 0.5 and 0 < summary["explained_variance"] < 1
    assert summary["n_images"] == 500 and summary["images_per_second"] > 0
    with pytest.raises(KerasclfError, match="already exists"):
        run_cluster(spec, features_model=model, pca=20, k=10, out_dir=out, verbose=0)
    again = run_cluster(spec, features_model=model, pca=20, k=10, out_dir=out, image_size=(32, 32),
                        overwrite=True, verbose=0)
    assert again["features_from_cache"] and again["sizes"] == summary["sizes"]

    # the user names the clusters, then classifies a new folder
    names_csv = out / "clusters.csv"
    names_csv.write_text("cluster,name\n" + "".join(f"{c},kind {c}\n" for c in range(10)))
    names = read_names(names_csv, k=10)
    cm = ClusterModel.load(out / "clusters.skops")
    files = png_writer(tmp_path / "new", digits_spec.images[500:520], size=32)
    capsys.readouterr()
    rows = predict_folder(cm, [tmp_path / "new"], names, plot_path=tmp_path / "pred.png")
    printed = capsys.readouterr().out.strip().splitlines()
    assert [r["path"] for r in rows] == files and len(printed) == 20
    assert all(r["name"] == f"kind {r['cluster']}" for r in rows)
    assert printed[0] == f"{files[0]}\t{rows[0]['name']}"
    assert (tmp_path / "pred.png").stat().st_size > 1000  # the first 15, titled by name


def test_run_cluster_on_an_unlabelled_folder(digits_spec, cnn_factory, tmp_path, png_writer):
    png_writer(tmp_path / "photos", digits_spec.images[:60], size=24)  # loose files, no class folders
    summary = run_cluster(tmp_path / "photos", features_model=cnn_factory(0, pool="flat"), pca=10, k=4,
                          out_dir=tmp_path / "run", image_size=(32, 32), verbose=0)
    assert summary["n_images"] == 60 and "scores" not in summary and sum(summary["sizes"]) == 60
    assert read_names(summary["names_csv"], k=4) == {i: f"cluster_{i}" for i in range(4)}
