"""2-D projections (PCA, t-SNE) of the features before the classifier, coloured by class.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> feats = np.concatenate([rng.normal(0, 1, (20, 8)), rng.normal(4, 1, (20, 8))])
    >>> paths = embed_features(feats, np.repeat([0, 1], 20), "/tmp/emb")  # doctest: +SKIP
    >>> sorted(paths)                                                     # doctest: +SKIP
    ['pca', 'tsne']
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from kerasclf.analysis._figure import new_figure, save_figure
from kerasclf.errors import ConfigError, DataError

__all__ = ["embed_features", "project", "tsne_perplexity"]

METHODS = ("pca", "tsne")


def tsne_perplexity(n: int) -> float:
    """t-SNE perplexity for ``n`` points: 30, or less for small sets (it must stay below ``n``).

    Example:
        >>> tsne_perplexity(1000), tsne_perplexity(20)
        (30.0, 6.0)
    """
    return float(min(30, max(1, min((n - 1) // 3, n - 1))))


def project(features: Any, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """Project ``(N, D)`` features to ``(N, 2)`` with ``pca`` or ``tsne`` (standardised first).

    Example:
        >>> import numpy as np
        >>> project(np.random.default_rng(0).normal(size=(10, 5))).shape
        (10, 2)
    """
    x = np.asarray(features, dtype="float64").reshape(len(features), -1)
    if len(x) < 3:
        raise DataError(f"a 2-D projection needs at least 3 samples; got {len(x)}")
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    if method == "pca":
        z = PCA(n_components=min(2, x.shape[1]), random_state=seed).fit_transform(x)
    elif method == "tsne":
        if x.shape[1] > 50:  # the usual speed-up: t-SNE on the top principal components
            x = PCA(n_components=min(50, len(x) - 1), random_state=seed).fit_transform(x)
        z = TSNE(n_components=2, perplexity=tsne_perplexity(len(x)), init="pca", random_state=seed,
                 learning_rate="auto").fit_transform(x)
    else:
        raise ConfigError(f"unknown projection '{method}'; use one of: {', '.join(METHODS)}")
    if z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], axis=1)
    return z


def _colour_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot or multilabel: colour by the first positive
        return np.where(y.max(axis=1) > 0, y.argmax(axis=1), -1)
    return y.reshape(-1).astype("int64")


def embed_features(features: Any, labels: Any, path: str | Path, *, methods: Sequence[str] = METHODS,
                   class_names: Sequence[str] | None = None, max_points: int = 3000, seed: int = 0) -> dict[str, Path]:
    """Scatter plots of the features projected to 2-D, one PNG per method, coloured by class.

    Args:
        features: ``(N, D)`` features (e.g. the model's ``features`` layer).
        labels: class ids ``(N,)`` (a multilabel matrix is coloured by its first positive).
        path: a folder (files ``embedding_<method>.png`` in it) or a ``.png`` path whose stem
            is used as prefix (``<stem>_<method>.png``).
        methods: any of ``pca``, ``tsne``.
        class_names: legend names (a legend is drawn up to 20 classes, a colour bar above).
        max_points: random subsample above this size (t-SNE is quadratic).
        seed: random seed of the subsample and of t-SNE.

    Returns:
        ``{method: png path}``.

    Example:
        >>> embed_features(feats, labels, "runs/x/figures", class_names=["cat", "dog"])  # doctest: +SKIP
        {'pca': PosixPath('runs/x/figures/embedding_pca.png'), 'tsne': ...}
    """
    x = np.asarray(features, dtype="float64")
    y = _colour_labels(labels)
    if len(x) != len(y):
        raise DataError(f"{len(x)} feature rows but {len(y)} labels")
    if x.ndim != 2 or x.shape[1] < 2:
        raise DataError(f"a 2-D projection needs features of 2 or more dimensions, got shape {x.shape}; "
                        f"cut the model at a wider layer")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown projection '{bad[0]}'; use one of: {', '.join(METHODS)}")
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    path = Path(path)
    if path.suffix.lower() == ".png":
        out_dir, stem = path.parent, path.stem + "_"
    else:
        out_dir, stem = path, "embedding_"
    k = int(y.max()) + 1 if len(y) else 1
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(k)]
    out: dict[str, Path] = {}
    for method in methods:
        z = project(x, method, seed=seed)
        fig = new_figure((6.4, 5.4))
        ax = fig.add_subplot(1, 1, 1)
        if k <= 20:
            cmap = "tab10" if k <= 10 else "tab20"
            from matplotlib import colormaps

            colours = colormaps[cmap]
            for c in np.unique(y):
                m = y == c
                label = "none" if c < 0 else (names[c] if c < len(names) else str(c))
                ax.scatter(z[m, 0], z[m, 1], s=12, alpha=0.8, color="lightgrey" if c < 0 else colours(int(c) % 20),
                           label=label)
            ax.legend(fontsize=7, markerscale=1.5, loc="best", ncols=2 if k > 10 else 1)
        else:
            sc = ax.scatter(z[:, 0], z[:, 1], s=8, c=y, cmap="nipy_spectral", alpha=0.8)
            fig.colorbar(sc, ax=ax, label="class id")
        title = {"pca": "PCA", "tsne": f"t-SNE (perplexity {tsne_perplexity(len(z)):.0f})"}[method]
        ax.set_title(f"features: {title}, {len(z)} samples")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.tight_layout()
        out[method] = save_figure(fig, out_dir / f"{stem}{method}.png")
    return out
