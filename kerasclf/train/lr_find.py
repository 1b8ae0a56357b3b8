"""The learning-rate finder (Smith 2015; fastai's ``lr_find``): train on batches while the LR grows
exponentially, record the smoothed loss, suggest an LR, and put the weights back.

Suggestions follow fastai: ``valley`` (a point two thirds down the longest descending stretch of
the smoothed loss curve) and ``steepest`` (the LR of the steepest descent per log-LR step); the
first 10% and the last 5 points of the sweep are left out first, as fastai does.

Example:
    >>> result = lr_find(model, train_ds, compile_fn, LRFindCfg())     # doctest: +SKIP
    >>> result.suggestion("valley")                                     # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasclf.analysis._figure import new_figure, save_figure
from kerasclf.errors import ConfigError
from kerasclf.train.recipe import LRFindCfg

__all__ = ["LRFindResult", "lr_find", "valley", "steepest", "smooth", "plot_lr_find", "ExponentialSweep"]


class ExponentialSweep(keras.optimizers.schedules.LearningRateSchedule):
    """``start * (end / start) ** (step / (steps - 1))``: the finder's LR at each step (used only
    during a sweep, whose optimizer is never saved: not registered for deserialisation)."""

    def __init__(self, start: float, end: float, steps: int):
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step: Any) -> Any:
        t = keras.ops.cast(step, "float32") / float(max(1, self.steps - 1))
        return self.start * keras.ops.power(self.end / self.start, t)

    def get_config(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps}


def smooth(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Debiased exponential moving average (fastai's Recorder smoothing).

    Example:
        >>> smooth(np.array([1.0, 1.0, 1.0])).round(6).tolist()
        [1.0, 1.0, 1.0]
    """
    out, avg = np.empty(len(losses)), 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(loss)
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def _trim(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(lrs)
    lo, hi = n // 10, max(n // 10 + 2, n - 5)
    return lrs[lo:hi], losses[lo:hi]


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``valley``: two thirds of the way down the longest decreasing run of the loss.

    Example:
        >>> lrs = np.logspace(-5, 0, 40); losses = np.r_[np.linspace(2, 1, 30), np.linspace(1, 3, 10)]
        >>> 1e-5 < valley(lrs, losses) < 1e-1
        True
    """
    lrs, losses = _trim(np.asarray(lrs), np.asarray(losses))
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``steep``: the LR where the loss falls fastest per unit of log LR.

    Example:
        >>> lrs = np.logspace(-5, 0, 40); losses = np.r_[np.linspace(2, 1, 30), np.linspace(1, 3, 10)]
        >>> 1e-5 < steepest(lrs, losses) < 1e-1
        True
    """
    lrs, losses = _trim(np.asarray(lrs), np.asarray(losses))
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[int(np.argmin(grads))])


@dataclass
class LRFindResult:
    """The sweep: learning rates, raw and smoothed losses, and both suggestions."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestions: dict[str, float] = field(default_factory=dict)
    steps_run: int = 0  # training batches the sweep took (non-finite losses included)

    def suggestion(self, name: str = "valley") -> float:
        """The suggested LR by ``name`` (``valley`` or ``steepest``)."""
        return self.suggestions[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: suggestions and the sweep."""
        return {"suggestions": self.suggestions, "lrs": self.lrs.tolist(), "losses": self.losses.tolist(),
                "smoothed": self.smoothed.tolist()}


def lr_find(model: keras.Model, train_ds: Any, compile_fn: Callable[[Any], None], cfg: LRFindCfg, *,
            optimizer: Callable[[Any], Any] | None = None) -> LRFindResult:
    """Sweep the LR from ``cfg.start`` to ``cfg.end`` over ``cfg.steps`` training batches.

    ``compile_fn(optimizer)`` compiles ``model`` with the run's loss; ``optimizer(schedule)`` makes
    the run's optimizer with that LR schedule (default Adam). The weights are put back afterwards,
    so the model is as it was. The sweep stops when the smoothed loss exceeds ``cfg.diverge``
    times its minimum or is not finite.

    Raises:
        ConfigError: the loss diverged before there were enough points to suggest an LR.
    """
    weights = [np.array(w) for w in model.get_weights()]
    sweep = ExponentialSweep(cfg.start, cfg.end, cfg.steps)
    compile_fn(optimizer(sweep) if optimizer else keras.optimizers.Adam(sweep))
    lrs, losses = [], []
    best = np.inf
    try:
        batches = iter(train_ds.repeat())
        for step in range(cfg.steps):
            x, y = next(batches)
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            lrs.append(float(sweep(step)))
            losses.append(loss)
            s = smooth(np.array(losses))[-1]
            if not np.isfinite(s) or s > cfg.diverge * best:
                break
            best = min(best, s)
    finally:
        model.set_weights(weights)
    lrs_a, losses_a = np.array(lrs), np.array(losses)
    smoothed = smooth(losses_a)
    finite = np.isfinite(smoothed)
    lrs_a, losses_a, smoothed = lrs_a[finite], losses_a[finite], smoothed[finite]
    if len(_trim(lrs_a, smoothed)[0]) < 3:
        at = f"{lrs[-1]:.2g}" if lrs else "the first step"
        raise ConfigError(f"train.lr_find: the loss diverged after {len(lrs)} of {cfg.steps} steps (at lr {at}); "
                          f"lower train.lr_find.start (now {cfg.start:g}) or train.lr_find.diverge "
                          f"(now {cfg.diverge:g}) is too tight; also check the labels")
    result = LRFindResult(lrs_a, losses_a, smoothed, steps_run=len(lrs))
    result.suggestions = {"valley": valley(lrs_a, smoothed), "steepest": steepest(lrs_a, smoothed)}
    return result


def plot_lr_find(result: LRFindResult, path: str | Path, *, chosen: str = "valley") -> Path:
    """Smoothed loss against LR (log x) with both suggestions marked; ``chosen`` drawn solid."""
    fig = new_figure((6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed loss")
    for name, color in (("valley", "C3"), ("steepest", "C2")):
        lr = result.suggestions[name]
        i = int(np.argmin(np.abs(result.lrs - lr)))
        ax.plot([lr], [result.smoothed[i]], "o", color=color,
                label=f"{name} {lr:.2e}" + (" (used)" if name == chosen else ""),
                markerfacecolor=color if name == chosen else "none")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log)")
    ax.set_ylabel("training loss (smoothed)")
    lo, hi = float(np.min(result.smoothed)), float(np.percentile(result.smoothed, 95))
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax.legend(loc="best")
    ax.set_title("LR finder")
    fig.tight_layout()
    return save_figure(fig, path)
