"""Real ImageNet weights, offline: MobileNet alpha 0.25 loads through Keras's own loader and its
features separate real cats from dogs, while the same network with random weights does not."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kerasclf.data.pipeline import make_dataset
from kerasclf.data.sources import from_folder
from kerasclf.data.splits import split_indices
from kerasclf.zoo import build, feature_model

pytestmark = pytest.mark.assets


def test_mobilenet_imagenet_weights_load_offline(keras_home_with_mobilenet):
    real = build("backbone_head", num_classes=2, backbone="MobileNet", alpha=0.25, weights="imagenet")
    random = build("backbone_head", num_classes=2, backbone="MobileNet", alpha=0.25, weights=None)
    w_real = real.get_layer("backbone").get_layer("conv1").get_weights()[0]
    w_rand = random.get_layer("backbone").get_layer("conv1").get_weights()[0]
    assert w_real.shape == w_rand.shape and not np.allclose(w_real, w_rand)
    assert real.get_layer("backbone").count_params() == 218_544


def test_pretrained_features_beat_random_ones_on_real_cats_and_dogs(keras_home_with_mobilenet, assets_dir):
    folder = assets_dir / "cats_vs_dogs"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    spec = from_folder(folder)
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(spec.labels == c), 150, replace=False) for c in (0, 1)])
    spec = spec.subset(pick)
    parts = split_indices(spec, (0.7, 0.0, 0.3), seed=0)

    def accuracy(weights):
        model = build("backbone_head", num_classes=2, backbone="MobileNet", alpha=0.25, weights=weights)
        extractor = feature_model(model)
        feats = {}
        for name in ("train", "test"):
            ds = make_dataset(spec, parts[name], image_size=(224, 224), batch_size=50, cache=None)
            xs, ys = zip(*[(extractor.predict_on_batch(x), np.asarray(y)) for x, y in ds])
            feats[name] = np.concatenate(xs), np.concatenate(ys).reshape(-1)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
        clf.fit(*feats["train"])
        return clf.score(*feats["test"])

    real, random = accuracy("imagenet"), accuracy(None)
    print(f"cats vs dogs, logistic regression on MobileNet-0.25 features: imagenet {real:.3f}, random {random:.3f}")
    assert real >= 0.80
    assert random < 0.68 and real - random > 0.15
