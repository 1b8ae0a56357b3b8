"""A time budget for a whole run (``train.budget_minutes``): epochs sized by measured epoch times.

The fine-tuning stage runs its first epoch at its full learning rate and times it (training steps
after the first, the first step's extra cost of tracing, validation); then it runs as many more
epochs as fit in what is left of the budget, at most ``fine_tune.epochs`` in all, with its
schedule spread over exactly those. Every stage also stops early when its next epoch would not
fit (:class:`EpochClock`), so a run without fine-tuning keeps the budget too, and fine-tuning does
not start when not even its first epoch can fit (:meth:`RunBudget.epoch_fits`). Time is reserved
for what comes after training: scoring val and test (and their TTA views), fitting the OOD flag
and saving, estimated from the measured validation speed.

Example:
    >>> budget = RunBudget(minutes=15, start=0.0)
    >>> budget.epochs_that_fit(EpochTime(train_s=100, val_s=4, first_step_extra_s=8), left_s=500,
    ...                        reserve_s=40, most=9)
    4
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import keras

__all__ = ["RunBudget", "EpochTime", "EpochClock", "finish_reserve", "TRAIN_COST"]

#: a fine-tuning epoch's seconds per image over the prediction's, assumed before one is timed (measured:
#: about 1.2 for EfficientNet-Lite0 from block4a on 2 cores; 2 keeps the guess on the safe side)
TRAIN_COST = 2.0


@dataclass
class EpochTime:
    """One epoch's measured seconds: training (all steps), validation, and the first step's extra
    cost over a steady step (tracing: paid again by every new ``fit`` call)."""
    train_s: float
    val_s: float
    first_step_extra_s: float

    @property
    def total_s(self) -> float:
        """A steady epoch's seconds (training without the tracing, plus validation)."""
        return self.train_s - self.first_step_extra_s + self.val_s


@dataclass
class RunBudget:
    """``minutes`` for the whole run, counted from ``start`` (``time.perf_counter()``); what it decided."""
    minutes: float
    start: float
    reserve_s: float = 0.0  # seconds kept for scoring and saving after training
    image_s: float | None = None  # measured seconds to read and predict one image (no gradients)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def left_s(self) -> float:
        """Seconds left before the budget ends (negative once it is spent)."""
        return self.minutes * 60.0 - (time.perf_counter() - self.start)

    @staticmethod
    def epochs_that_fit(epoch: EpochTime, *, left_s: float, reserve_s: float, most: int) -> int:
        """Whole steady epochs that fit in ``left_s`` after ``reserve_s`` and one more tracing, at most ``most``."""
        room = left_s - reserve_s - epoch.first_step_extra_s
        return max(0, min(int(most), int(math.floor(room / max(epoch.total_s, 1e-6)))))

    def epoch_fits(self, n_images: int) -> bool:
        """Whether a first training epoch over ``n_images`` can still end inside the budget: its
        cost guessed as :data:`TRAIN_COST` times the measured prediction time per image (``True``
        while nothing is measured yet)."""
        if self.image_s is None:
            return True
        return TRAIN_COST * self.image_s * n_images <= self.left_s() - self.reserve_s

    def record(self, **decision: Any) -> None:
        self.decisions.append(decision)

    def report(self) -> dict[str, Any]:
        """What goes into ``metrics.json`` under ``budget``."""
        return {"minutes": self.minutes, "used_minutes": round((time.perf_counter() - self.start) / 60.0, 2),
                "reserve_s": round(self.reserve_s, 1), "decisions": self.decisions}


def finish_reserve(val_s: float, n_val: int, *, n_train: int, n_test: int, tta_views: int,
                   ood: bool, fixed_s: float = 20.0) -> float:
    """Seconds the end of a run needs, from the validation speed (``val_s`` for ``n_val`` images):
    val and test scored plain and with each TTA view, up to 2,000 training and the validation
    images read again for the OOD flag, and ``fixed_s`` for saving and figures."""
    per_image = val_s / max(n_val, 1)
    images = (n_val + n_test) * (1 + tta_views) + ((min(n_train, 2000) + n_val) if ood else 0)
    return per_image * images + fixed_s


class EpochClock(keras.callbacks.Callback):
    """Times every epoch of a ``fit`` (:class:`EpochTime` in ``epochs``); with a ``budget``, stops
    training when the next epoch would end after the budget's time less its reserve.

    Example:
        >>> clock = EpochClock()
        >>> clock.epochs
        []
    """

    def __init__(self, budget: RunBudget | None = None, reserve_fn: Callable[[float], None] | None = None):
        super().__init__()
        self.budget = budget
        self.reserve_fn = reserve_fn  # called with each epoch's validation seconds (validation on images)
        self.epochs: list[EpochTime] = []
        self.stopped = False

    def measured_val(self, val_s: float) -> None:
        """A validation time measured elsewhere (the cached stage's feature pass) sets the reserve."""
        if self.reserve_fn is not None:
            self.reserve_fn(val_s)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._begin = time.perf_counter()
        self._marks: list[tuple[int, float]] = []
        self._val_s = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._marks.append((batch, time.perf_counter()))

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._val_begin = time.perf_counter()

    def on_test_end(self, logs: dict | None = None) -> None:
        self._val_s += time.perf_counter() - self._val_begin

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        total = time.perf_counter() - self._begin
        train_s = total - self._val_s
        extra = 0.0
        if len(self._marks) >= 2:  # steady seconds per step from the marks after the first call back
            (b0, t0), (b1, t1) = self._marks[0], self._marks[-1]
            steady = (t1 - t0) / max(b1 - b0, 1)
            extra = max(0.0, (t0 - self._begin) - steady * (b0 + 1))
        self.epochs.append(EpochTime(train_s=train_s, val_s=self._val_s, first_step_extra_s=extra))
        if self._val_s > 0:
            self.measured_val(self._val_s)
        if self.budget is not None and self.epochs[-1].total_s > self.budget.left_s() - self.budget.reserve_s:
            self.model.stop_training = True
            self.stopped = True
            self.budget.record(event="stopped", after_epoch=epoch + 1, left_s=round(self.budget.left_s(), 1),
                               epoch_s=round(self.epochs[-1].total_s, 1))

    def last(self) -> EpochTime | None:
        """The last epoch's times (``None`` before the first)."""
        return self.epochs[-1] if self.epochs else None

    def to_dict(self) -> list[dict[str, float]]:
        return [{k: round(v, 2) for k, v in asdict(e).items()} for e in self.epochs]
