"""PCA / t-SNE scatter plots, including small N (perplexity adapted) and multilabel colouring."""
import numpy as np
import pytest

from kerasclf.analysis.embed import embed_features, project, tsne_perplexity
from kerasclf.errors import ConfigError, DataError


def test_embed_pca_and_tsne_small_n(tmp_path, png_ok):
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (6, 16)), rng.normal(5, 1, (6, 16))])
    out = embed_features(feats, np.repeat([0, 1], 6), tmp_path, class_names=["cat", "dog"])
    assert set(out) == {"pca", "tsne"}
    for p in out.values():
        png_ok(p)
    assert out["pca"].name == "embedding_pca.png"
    assert tsne_perplexity(12) < 12


def test_embed_prefix_many_classes_and_multilabel(tmp_path, png_ok):
    rng = np.random.default_rng(1)
    out = embed_features(rng.normal(size=(60, 8)), np.arange(60) % 30, tmp_path / "feat.png", methods=("pca",))
    assert out["pca"].name == "feat_pca.png"
    png_ok(out["pca"])
    ml = embed_features(rng.normal(size=(20, 8)), rng.integers(0, 2, (20, 3)), tmp_path, methods=("pca",),
                        class_names=["a", "b", "c"])
    png_ok(ml["pca"])


def test_embed_errors():
    with pytest.raises(ConfigError, match="umap"):
        embed_features(np.zeros((5, 2)), [0] * 5, "/tmp/x", methods=("umap",))
    with pytest.raises(DataError):
        project(np.zeros((2, 3)))
