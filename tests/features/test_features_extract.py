"""Feature extraction: shapes, the on-disk cache (hits, keys, atomic writes), layers, files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kerasclf.data.pipeline import split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ModelError, UnknownNameError
from kerasclf.features import extract as ex
from kerasclf.features import extract_features, weights_fingerprint
from kerasclf.zoo import feature_model, input_size


@pytest.fixture
def counter(monkeypatch):
    """Counts forward passes (wraps the one function every batch goes through)."""
    calls = {"n": 0}
    real = ex._run_batch

    def counting(fmodel, x):
        calls["n"] += 1
        return real(fmodel, x)

    monkeypatch.setattr(ex, "_run_batch", counting)
    return calls


def test_second_extraction_is_a_cache_hit(digits_spec, cnn_factory, counter, tmp_path):
    spec = digits_spec.subset(np.arange(300))
    model = cnn_factory(0)
    fs = extract_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), batch_size=64, verbose=0)
    assert not fs.from_cache and counter["n"] == 5  # ceil(300 / 64) batches
    assert fs.features.shape == (300, 32) and fs.features.dtype == np.float32
    assert fs.ids == spec.ids() and np.array_equal(fs.labels, spec.labels)
    assert fs.record.layer == "features" and fs.record.image_size == (32, 32)
    first = np.array(fs.features)

    again = extract_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), batch_size=64, verbose=0)
    assert again.from_cache and counter["n"] == 5  # the model did not run again
    assert isinstance(again.features, np.memmap)  # read back lazily, not loaded into memory
    np.testing.assert_array_equal(np.asarray(again.features), first)
    assert again.key == fs.key and again.path == fs.path
    # same features as running the model directly on the pixels training sees (the one pipeline);
    # streaming and memmap change nothing
    pixels, _ = split_arrays(spec, np.arange(64), image_size=(32, 32))
    direct = feature_model(model, "features").predict_on_batch(pixels)
    np.testing.assert_allclose(first[:64], direct, rtol=1e-4, atol=1e-5)


def test_cache_key_follows_weights_data_layer_and_size(digits_spec, cnn_factory, tmp_path):
    spec = digits_spec.subset(np.arange(64))
    kw = dict(cache_dir=tmp_path, image_size=(32, 32), verbose=0)
    a = cnn_factory(0)
    base = extract_features(a, spec, **kw)
    b = cnn_factory(1)  # same architecture and name, other weights
    other = extract_features(b, spec, **kw)
    assert other.key != base.key and not other.from_cache
    assert weights_fingerprint(a) != weights_fingerprint(b)

    b.set_weights(a.get_weights())  # now identical weights: a hit, though a different object
    assert extract_features(b, spec, **kw).from_cache

    kernel = a.get_layer("conv1").kernel  # one value changed is enough
    kernel.assign(kernel.numpy() + np.eye(1, kernel.numpy().size).reshape(kernel.shape).astype("float32"))
    changed = extract_features(a, spec, **kw)
    assert changed.key != base.key

    keys = {changed.key,
            extract_features(a, spec, **dict(kw, image_size=(24, 24))).key,
            extract_features(a, spec, layer="conv1", **kw).key,
            extract_features(a, spec, index=np.arange(32), **kw).key}
    assert len(keys) == 4
    rel = spec.subset(np.arange(64))
    rel.labels = rel.labels[::-1].copy()  # same pixels, other labels: another entry
    assert extract_features(a, rel, **kw).key != changed.key


def test_interrupted_extraction_leaves_no_cache_entry(digits_spec, cnn_factory, monkeypatch, tmp_path):
    spec = digits_spec.subset(np.arange(200))
    model = cnn_factory(0)
    real = ex._run_batch
    state = {"n": 0}

    def dies(fmodel, x):
        state["n"] += 1
        if state["n"] == 2:
            raise KeyboardInterrupt
        return real(fmodel, x)

    monkeypatch.setattr(ex, "_run_batch", dies)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), batch_size=64, verbose=0)
    assert list(tmp_path.iterdir()) == []  # neither a partial entry nor a temp folder
    monkeypatch.setattr(ex, "_run_batch", real)
    fs = extract_features(model, spec, cache_dir=tmp_path, image_size=(32, 32), batch_size=64, verbose=0)
    assert not fs.from_cache and len(fs) == 200
    assert [p.name for p in tmp_path.iterdir()] == [fs.path.name]


def test_corrupt_entry_is_recomputed(digits_spec, cnn_factory, tmp_path):
    spec = digits_spec.subset(np.arange(40))
    model = cnn_factory(0)
    fs = extract_features(model, spec, cache_dir=tmp_path, verbose=0)
    (fs.path / "features.npy").write_bytes(b"garbage")
    again = extract_features(model, spec, cache_dir=tmp_path, verbose=0)
    assert not again.from_cache and np.asarray(again.features).shape == (40, 32)


def test_no_cache_and_native_size(digits_spec, cnn_factory):
    fs = extract_features(cnn_factory(0), digits_spec.subset(np.arange(10)), cache_dir=None, verbose=0)
    assert fs.path is None and fs.features.shape == (10, 32)
    assert fs.record.model == "memory:tiny_cnn_gap"
    assert fs.images_per_second > 0


def test_layers_spatial_nested_and_unknown(digits_spec, cnn_factory, ae_factory):
    spec = digits_spec.subset(np.arange(8))
    conv = extract_features(cnn_factory(0), spec, layer="conv2", cache_dir=None, verbose=0)
    assert conv.features.shape == (8, 32)  # a spatial map is global-average pooled
    flat = extract_features(cnn_factory(0, pool="flat"), spec, cache_dir=None, verbose=0)
    assert flat.features.shape == (8, 8 * 8 * 32)
    ae = ae_factory(latent=12)
    enc = extract_features(ae, spec, layer="encoder", cache_dir=None, verbose=0)
    assert enc.features.shape == (8, 12)
    # the encoder is used after the outer model's resize + preprocess
    x, _ = split_arrays(spec, image_size=input_size(ae))  # the pixels training would see
    inner = ae.get_layer("encoder").predict_on_batch(ae.get_layer("resize")(x).numpy() / 255.0)
    np.testing.assert_allclose(enc.features, inner, rtol=1e-4, atol=1e-5)
    with pytest.raises(ModelError, match="no layer 'nope'.*features"):
        extract_features(cnn_factory(0), spec, layer="nope", cache_dir=None, verbose=0)


def test_image_files_and_changed_file_invalidates(tmp_path, digits_spec, cnn_factory, png_writer):
    paths = png_writer(tmp_path / "imgs", digits_spec.images[:20])
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    paths.append(str(tmp_path / "imgs" / "broken.png"))
    spec = DataSpec(class_names=[str(i) for i in range(10)], labels=np.r_[digits_spec.labels[:20], 0],
                    paths=paths, source="test pngs")
    model = cnn_factory(0)
    cache = tmp_path / "cache"
    fs = extract_features(model, spec, cache_dir=cache, image_size=(32, 32), verbose=0)
    assert len(fs) == 20 and fs.ids == paths[:20]  # the broken file is left out and listed
    assert [p for p, _ in fs.info["skipped"]] == [paths[-1]]
    assert extract_features(model, spec, cache_dir=cache, image_size=(32, 32), verbose=0).from_cache

    Image.new("RGB", (40, 40), (255, 0, 0)).save(paths[3])  # the data changed on disk
    assert not extract_features(model, spec, cache_dir=cache, image_size=(32, 32), verbose=0).from_cache


def test_unknown_model_name_is_a_user_error(digits_spec):
    with pytest.raises(UnknownNameError, match=r"unknown model 'no_such_model_xyz'; known: .*kerasclf zoo"):
        extract_features("no_such_model_xyz", digits_spec, cache_dir=None, verbose=0)
