"""One description of a labelled image collection, whatever its source.

Every source (folder, flat names, CSV, CelebA attributes, TFDS, keras.datasets, arrays) returns a
:class:`DataSpec`; splits, pipelines, checks and training read only this.

Example:
    >>> import numpy as np
    >>> spec = DataSpec.from_arrays(np.zeros((4, 8, 8, 3), "uint8"), np.array([0, 1, 0, 1]),
    ...                             class_names=["a", "b"])
    >>> spec.task, len(spec), spec.num_classes
    ('binary', 4, 2)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from kerasclf.errors import DataError

__all__ = ["DataSpec", "Task", "infer_task"]

Task = Literal["binary", "multiclass", "multilabel"]


def infer_task(num_classes: int, multilabel: bool = False) -> Task:
    """``multilabel`` if asked, else ``binary`` for two classes and ``multiclass`` above."""
    if multilabel:
        return "multilabel"
    return "binary" if num_classes <= 2 else "multiclass"


@dataclass
class DataSpec:
    """Images (file paths or an in-memory uint8 array) with labels, class names and task.

    Attributes:
        class_names: one name per class (per attribute for ``multilabel``).
        labels: int array ``(N,)`` for binary/multiclass; 0/1 array ``(N, K)`` for multilabel.
        paths: image file paths, or ``None`` when ``images`` holds the pixels.
        images: uint8 array ``(N, H, W, C)``, or ``None`` when ``paths`` is used.
        task: ``binary`` | ``multiclass`` | ``multilabel``.
        groups: optional group id per item (same person / same photo stay in one split).
        preset_split: optional ``train``/``val``/``test`` per item when the source was pre-split.
        source: a human-readable description of where the data came from.
        given_labels: the labels as the source gave them, when review decisions were applied
            (:func:`kerasclf.data.decisions.apply_decisions`); ``None`` otherwise.
        excluded: ``(id, given label)`` of the items the decisions left out.
    """

    class_names: list[str]
    labels: np.ndarray
    paths: list[str] | None = None
    images: np.ndarray | None = None
    task: Task = "multiclass"
    groups: np.ndarray | None = None
    preset_split: np.ndarray | None = None
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    given_labels: np.ndarray | None = None
    excluded: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if (self.paths is None) == (self.images is None):
            raise DataError(f"{self.source or 'data'}: give exactly one of paths or images")
        n = len(self.paths) if self.paths is not None else len(self.images)
        if n == 0:
            raise DataError(f"{self.source or 'data'}: no images found; check the path and the file extensions")
        if len(self.labels) != n:
            raise DataError(f"{self.source or 'data'}: {n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stratify_key(self) -> np.ndarray:
        """A 1-D key to stratify on: the class, or the label combination for multilabel."""
        if self.labels.ndim == 1:
            return self.labels
        return np.array(["".join(map(str, row.astype(int))) for row in self.labels])

    def ids(self) -> list[str]:
        """Stable identifiers used in manifests: the path, or ``#<index>`` for arrays."""
        if self.paths is not None:
            return list(self.paths)
        return [f"#{i}" for i in range(len(self))]

    def subset(self, index: np.ndarray) -> "DataSpec":
        """A new spec with only the items at ``index`` (same classes and task)."""
        index = np.asarray(index, dtype=int)
        return DataSpec(
            class_names=list(self.class_names),
            labels=self.labels[index],
            paths=[self.paths[i] for i in index] if self.paths is not None else None,
            images=self.images[index] if self.images is not None else None,
            task=self.task,
            groups=self.groups[index] if self.groups is not None else None,
            preset_split=self.preset_split[index] if self.preset_split is not None else None,
            source=self.source,
            skipped=self.skipped,  # shared: files skipped while reading a subset are reported once
            given_labels=self.given_labels[index] if self.given_labels is not None else None,
            excluded=self.excluded,
        )

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None,
                    task: Task | None = None, source: str = "arrays") -> "DataSpec":
        """Wrap numpy images ``(N, H, W[, C])`` and labels; grayscale gets a channel axis."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.dtype != np.uint8:
            if images.max() <= 1.0:
                images = images * 255.0
            images = np.clip(images, 0, 255).astype(np.uint8)
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        multilabel = labels.ndim == 2
        if class_names is None:
            k = labels.shape[1] if multilabel else int(labels.max()) + 1
            class_names = [str(i) for i in range(k)]
        task = task or infer_task(len(class_names), multilabel)
        return cls(class_names=list(class_names), labels=labels.astype(int), images=images,
                   task=task, source=source)
