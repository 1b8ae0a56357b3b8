"""Training the zoo's ``autoencoder`` family: reconstruction of unlabelled images.

``kerasclf train`` sends a recipe whose model is an autoencoder here: the target is the input
scaled to 0..1, the loss is mean squared error, and the run folder gets the loss curves and
``reconstructions.png`` (originals above their reconstructions) instead of a confusion matrix.

Example:
    >>> # recipe: {data: {source: unlabelled, path: photos/}, model: {name: conv_autoencoder}}
    >>> # kerasclf train autoencoder.yaml
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["as_reconstruction", "reconstruction_error", "plot_reconstructions"]


def as_reconstruction(ds: Any) -> Any:
    """Map ``(images 0..255, labels)`` batches to ``(images, images / 255)``."""
    return ds.map(lambda x, y: (x, x / 255.0))


def reconstruction_error(model: Any, ds: Any) -> float:
    """Mean squared error (0..1 pixel scale) over a finite ``(images, targets)`` dataset."""
    total, count = 0.0, 0
    for x, target in ds:
        recon = np.asarray(model.predict_on_batch(x))
        total += float(np.sum((recon - np.asarray(target)) ** 2))
        count += int(np.prod(recon.shape))
    return total / max(count, 1)


def plot_reconstructions(model: Any, ds: Any, path: str | Path, n: int = 8) -> Path:
    """Originals (top row) above their reconstructions (bottom row), first ``n`` images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    originals = np.concatenate([np.asarray(x) for x, _ in ds.take(max(1, n // 4 + 1))])[:n]
    recon = np.asarray(model.predict(originals, verbose=0))
    fig, axes = plt.subplots(2, len(originals), figsize=(1.6 * len(originals), 3.4), squeeze=False)
    for i in range(len(originals)):
        for row, img in ((0, originals[i] / 255.0), (1, recon[i])):
            ax = axes[row, i]
            ax.imshow(np.clip(img.squeeze(), 0, 1), cmap="gray" if img.shape[-1] == 1 else None)
            ax.axis("off")
    axes[0, 0].set_title("original", fontsize=9, loc="left")
    axes[1, 0].set_title("reconstruction", fontsize=9, loc="left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
