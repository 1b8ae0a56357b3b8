"""Attribution: Grad-CAM must point at the evidence; nested backbones must work.

The check that matters: a tiny CNN trained on images whose class is given by a bright square in
the top-left or bottom-right quadrant (position jittered per image). Its Grad-CAM heatmap must
peak inside that image's square for most test images, and be hotter inside than outside.
"""
import keras
import numpy as np
import pytest

from kerasclf.analysis.explain import (
    TAP,
    build_explain_model,
    explain,
    find_last_conv_layer,
    overlay,
)
from kerasclf.errors import BackendError, ModelError
from kerasclf.zoo import build


def _hits(maps, boxes):
    peak, hotter = [], []
    for m, (y0, y1, x0, x1) in zip(maps, boxes):
        r, c = np.unravel_index(np.argmax(m), m.shape)
        peak.append(y0 <= r < y1 and x0 <= c < x1)
        inside = np.zeros(m.shape, bool)
        inside[y0:y1, x0:x1] = True
        hotter.append(m[inside].mean() > m[~inside].mean())
    return np.mean(peak), np.mean(hotter)


def test_square_model_learned_the_task(trained_square_model, square_data):
    model, history = trained_square_model
    _, _, xte, yte, _ = square_data
    assert (model.predict(xte, verbose=0).argmax(1) == yte).mean() >= 0.9


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_peaks_inside_the_square(trained_square_model, square_data, method):
    model, _ = trained_square_model
    _, _, xte, yte, boxes = square_data
    assert find_last_conv_layer(model) == "conv3"
    maps = explain(model, xte, method=method, class_index=yte)
    assert maps.shape == xte.shape[:3] and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    peak, hotter = _hits(maps, boxes)
    assert peak >= 0.7, f"{method} peaked inside the square for only {peak:.0%} of the images"
    assert hotter >= 0.8, f"{method} was hotter inside the square for only {hotter:.0%} of the images"
    # explaining the predicted class gives the same maps (the model is right on these images)
    np.testing.assert_allclose(explain(model, xte[:4], method=method), maps[:4], atol=1e-5)


def test_cam_follows_the_input_size(trained_square_model, square_data):
    model, _ = trained_square_model
    _, _, xte, yte, boxes = square_data
    big = np.repeat(np.repeat(xte[:6], 2, axis=1), 2, axis=2)  # 64x64: the model resizes inside
    maps = explain(model, big, class_index=yte[:6])
    assert maps.shape == (6, 64, 64)
    peak, _ = _hits(maps, boxes[:6] * 2)
    assert peak >= 0.5


def test_smoothgrad_and_named_layer(trained_square_model, square_data):
    model, _ = trained_square_model
    _, _, xte, yte, _ = square_data
    sal = explain(model, xte[:3], method="smoothgrad", class_index=yte[:3], smooth_samples=4)
    assert sal.shape == (3, 32, 32) and 0 <= sal.min() and sal.max() == pytest.approx(1.0)
    named = explain(model, xte[:3], method="gradcam", layer="conv2")
    assert named.shape == (3, 32, 32)
    one = explain(model, xte[0], method="gradcam")
    assert one.shape == (32, 32)
    with pytest.raises(ModelError, match="no layer 'nope'"):
        explain(model, xte[:1], layer="nope")
    with pytest.raises(ModelError, match="unknown explanation method"):
        explain(model, xte[:1], method="lime")
    with pytest.raises(ModelError, match="out of range"):
        explain(model, xte[:1], class_index=5)


def test_nested_backbone_model(mobilenet_model):
    model = mobilenet_model
    path = find_last_conv_layer(model)
    assert path == "backbone/conv_pw_13_relu"
    flat, where = build_explain_model(model)
    assert where == path
    assert tuple(flat.get_layer(TAP).output.shape[1:]) == (2, 2, 256)
    x = np.random.default_rng(0).uniform(0, 255, (2, 50, 70, 3)).astype("float32")
    # same weights: the flat model's logits reproduce the original's log-probabilities up to a constant
    logits = flat.predict(x, verbose=0)
    logp = np.log(model.predict(x, verbose=0))
    np.testing.assert_allclose((logits - logp).std(axis=1), 0, atol=1e-4)
    for method in ("gradcam", "gradcam++", "smoothgrad"):
        maps = explain(model, x, method=method, smooth_samples=3)
        assert maps.shape == (2, 50, 70) and np.isfinite(maps).all()
        assert maps.min() >= 0 and maps.max() <= 1
    assert explain(model, x, layer="backbone/conv_pw_12_relu").shape == (2, 50, 70)
    assert explain(model, x, layer="conv_pw_12").shape == (2, 50, 70)  # plain inner names are found too
    with pytest.raises(ModelError, match="whole model"):
        build_explain_model(model, "backbone")


def test_backend_error(monkeypatch, mobilenet_model):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BackendError, match="TensorFlow backend"):
        explain(mobilenet_model, np.zeros((1, 32, 32, 3)))


def test_overlay():
    img = np.full((20, 30, 3), 128, "uint8")
    heat = np.zeros((5, 5))
    heat[0, 0] = 1
    out = overlay(img, heat)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[-1, -1])
    assert overlay(img[..., 0] / 255.0, heat).shape == (20, 30, 3)


def test_explain_model_is_cached_and_follows_training(make_cnn, make_squares):
    model = make_cnn(2)
    x, y, _ = make_squares(8, seed=5)
    flat1, _ = build_explain_model(model)
    assert build_explain_model(model)[0] is flat1
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=1, verbose=0)
    flat2, _ = build_explain_model(model)
    logp = np.log(model.predict(x, verbose=0))
    np.testing.assert_allclose((flat2.predict(x, verbose=0) - logp).std(axis=1), 0, atol=1e-4)


def test_last_conv_of_a_resnet_is_its_last_residual_unit():
    model = build("resnet", num_classes=3, input_shape=(32, 32, 3), stages=(8, 16), units_per_stage=(1, 2))
    assert find_last_conv_layer(model) == "stage2_unit2"
    maps = explain(model, np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert maps.shape == (2, 32, 32) and np.isfinite(maps).all()
