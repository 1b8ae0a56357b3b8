"""The configurations a comparison chooses from: each model alone, with flip TTA, and ensembles.

A *member* is one trained model of a comparison: a Keras model (``model.keras``) or a
scikit-learn head on backbone features (``head.skops``). A *configuration* is a member alone,
a member with test-time augmentation (TTA: the image and its left-right mirror), or the mean
of several members' probabilities (an ensemble, of any member kinds). TTA of a Keras member is
:func:`kerasclf.export.compose.tta_model` (probabilities averaged over the views); TTA of a
scikit-learn head wraps its feature extractor in the same ``tta_model``, so the features are
averaged over the views before the head.

Every configuration is scored by one function, :func:`config_probs`, on validation and (the
chosen one only) on test. :func:`save_configuration` saves the chosen one as **one model** from
the very objects that were scored: a Keras model (every member Keras; TTA and ensembles composed
by :mod:`kerasclf.export.compose`, so it exports like any model), a head file (a scikit-learn
head, with TTA baked into its extractor), or, for an ensemble that mixes a head with other
members, ``configuration.json`` (a head is no Keras layer, so that is not one Keras model);
:func:`load_configuration` reads any of the three back.

Example:
    >>> members = {m.label: m for m in (Member("cnn", "runs/c/models/cnn"),)}   # doctest: +SKIP
    >>> cfg = Configuration("cnn+tta", "tta", ["cnn"], tta=True)                # doctest: +SKIP
    >>> config_probs(cfg, members, lambda size: x_val, "multiclass").shape      # doctest: +SKIP
    (180, 10)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasclf.analysis.metrics import binary_positive_probs
from kerasclf.data.pipeline import split_arrays
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ModelError
from kerasclf.export.compose import ensemble_model, tta_model
from kerasclf.features.artifacts import weights_fingerprint
from kerasclf.features.heads import HeadPipeline, load_head, save_head
from kerasclf.io import LoadedModel, load_model, model_card, save_model, write_card

__all__ = ["KINDS", "Member", "Configuration", "MemberAverage", "candidate_configs", "config_probs", "predict_probs",
           "save_configuration", "load_configuration", "largest_size"]

KINDS = ("single", "tta", "ensemble")
HEAD_FILES = ("head.skops", "head.json", "head.extractor.keras")


@dataclass
class Member:
    """One trained model of a comparison, loaded on first use (``run_dir`` holds ``model.keras`` or
    ``head.skops``).

    Example:
        >>> Member("cnn", "runs/cmp/models/cnn").artifact.name      # doctest: +SKIP
        'model.keras'
    """

    label: str
    run_dir: Path
    _loaded: dict[bool, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def sklearn(self) -> bool:
        """True when the member is a scikit-learn head (``head.skops``), False for a Keras model."""
        return (self.run_dir / "head.skops").is_file()

    @property
    def artifact(self) -> Path:
        """The member's file: ``head.skops`` or ``model.keras`` in ``run_dir``."""
        return self.run_dir / ("head.skops" if self.sklearn else "model.keras")

    def predictor(self, tta: bool = False) -> LoadedModel | HeadPipeline:
        """The member (``tta``: with the flip view baked in), a :class:`LoadedModel` or a :class:`HeadPipeline`."""
        if tta not in self._loaded:
            if not tta:
                self._loaded[False] = load_head(self.artifact) if self.sklearn else load_model(self.artifact)
            else:
                base = self.predictor(False)
                self._loaded[True] = _with_tta(base)
        return self._loaded[tta]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` the member was trained at (read from its saved metadata).

        Example:
            >>> Member("cnn", "runs/cmp/models/cnn").image_size      # doctest: +SKIP
            (32, 32)
        """
        size = self.predictor(False).image_size
        if not size:
            raise ModelError(f"{self.artifact}: no image size recorded; re-run this model of the comparison")
        return int(size[0]), int(size[1])


def _with_tta(base: LoadedModel | HeadPipeline) -> LoadedModel | HeadPipeline:
    if isinstance(base, HeadPipeline):
        extractor = tta_model(base.feature_extractor())
        record = dataclasses.replace(base.record, model=f"memory:{extractor.name}", weights=None, model_path=None,
                                     weights_fingerprint=weights_fingerprint(extractor))
        return HeadPipeline(head=base.head, record=record, base_dir=base.base_dir, extractor=extractor,
                            info=base.info)
    return LoadedModel(path=base.path, format=base.format, model=tta_model(base.model), meta=dict(base.meta))


@dataclass
class Configuration:
    """A candidate: ``kind`` is ``single`` | ``tta`` | ``ensemble``; ``members`` are member labels.

    Example:
        >>> Configuration("cnn+tta", "tta", ["cnn"], tta=True).one_member
        True
    """

    label: str
    kind: str
    members: list[str]
    tta: bool = False

    @property
    def one_member(self) -> bool:
        """True for a single model (alone or with TTA), False for an ensemble."""
        return len(self.members) == 1

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready fields (``configuration``, ``kind``, ``members``, ``tta``).

        Example:
            >>> Configuration("a+tta", "tta", ["a"], tta=True).to_dict()["members"]
            ['a']
        """
        return {"configuration": self.label, "kind": self.kind, "members": list(self.members), "tta": self.tta}


def candidate_configs(ranked: Sequence[str], *, tta: bool, ensemble: int) -> list[Configuration]:
    """Every single model, each with TTA (``tta``), and the mean of the top ``ensemble`` models
    (``ranked`` best first; also with TTA members when ``tta``).

    Example:
        >>> [c.label for c in candidate_configs(["a", "b", "c"], tta=True, ensemble=2)]
        ['a', 'b', 'c', 'a+tta', 'b+tta', 'c+tta', 'ensemble(a,b)', 'ensemble+tta(a,b)']
    """
    out = [Configuration(r, "single", [r]) for r in ranked]
    if tta:
        out += [Configuration(f"{r}+tta", "tta", [r], tta=True) for r in ranked]
    top = list(ranked[:max(0, int(ensemble))])
    if len(top) >= 2:
        out.append(Configuration(f"ensemble({','.join(top)})", "ensemble", top))
        if tta:
            out.append(Configuration(f"ensemble+tta({','.join(top)})", "ensemble", top, tta=True))
    return out


def largest_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The ``(height, width)`` with the most pixels (ties: the taller), the size an ensemble of
    members trained at different sizes records: each member resizes to its own size inside, so
    feeding the largest loses nothing. (``max`` over tuples compared the heights first, so it
    picked ``(224, 100)`` over ``(160, 160)``.)

    Example:
        >>> largest_size([(224, 100), (160, 160)])
        (160, 160)
    """
    if not sizes:
        raise ModelError("no member sizes to choose from; a configuration needs at least one member")
    h, w = max(((int(a), int(b)) for a, b in sizes), key=lambda s: (s[0] * s[1], s[0], s[1]))
    return h, w


def predict_probs(predictor: Any, images: np.ndarray, task: str) -> np.ndarray:
    """Probabilities in one layout for every kind: ``(N, 1)`` of the positive class for binary.

    Example:
        >>> predict_probs(load_configuration("runs/cmp/chosen"), images, "multiclass").shape  # doctest: +SKIP
        (8, 5)
    """
    p = np.asarray(predictor.predict(images), dtype="float64")
    return binary_positive_probs(p).reshape(-1, 1) if task == "binary" else p.reshape(len(p), -1)


def config_probs(cfg: Configuration, members: dict[str, Member], read: Callable[[tuple[int, int]], np.ndarray],
                 task: str, memo: dict[tuple[str, bool], np.ndarray] | None = None) -> np.ndarray:
    """Probabilities of ``cfg`` on one split: each member on the split read at its own size
    (``read(size)``), averaged. ``memo`` (one dict per split) keeps each member's probabilities.

    Example:
        >>> p = config_probs(cfg, members, lambda size: arrays("val", size)[0], "multiclass", {})  # doctest: +SKIP
    """
    memo = {} if memo is None else memo
    out = []
    for label in cfg.members:
        key = (label, cfg.tta)
        if key not in memo:
            m = members[label]
            memo[key] = predict_probs(m.predictor(cfg.tta), read(m.image_size), task)
        out.append(memo[key])
    return out[0] if len(out) == 1 else np.mean(out, axis=0)


def save_configuration(cfg: Configuration, members: dict[str, Member], folder: str | Path, *,
                       class_names: Sequence[str], task: str) -> dict[str, Any]:
    """Save ``cfg`` into ``folder`` (replaced) as one model; returns what was written.

    Returns ``{"path", "format": "keras" | "head" | "members", "one_keras_model": bool, "note"}``.

    Example:
        >>> save_configuration(cfg, members, "runs/cmp/chosen", class_names=names, task="multiclass")["format"]  # doctest: +SKIP
        'keras'
    """
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    chosen = [members[m] for m in cfg.members]
    heads = [m.label for m in chosen if m.sklearn]
    if not heads:
        models = [m.predictor(cfg.tta).model for m in chosen]
        model = models[0] if len(models) == 1 else ensemble_model(models)
        sizes = [m.image_size for m in chosen]
        meta = {"class_names": list(class_names), "task": task, "image_size": list(largest_size(sizes)),
                "model_name": cfg.label, "num_outputs": int(model.outputs[0].shape[-1]), "threshold": 0.5,
                "configuration": cfg.to_dict()}
        path = save_model(model, folder / "model.keras", meta=meta)
        write_card(path, model_card(path, meta))
        what = "the model" if cfg.kind == "single" else "TTA and ensemble members composed into one Keras model"
        return {"path": str(path), "format": "keras", "one_keras_model": True,
                "note": f"{what}: {path} (kerasclf predict / export take it as any model)"}
    if len(chosen) == 1:
        m = chosen[0]
        if cfg.tta:
            pipe = m.predictor(True)
            path = save_head(folder / "head.skops", pipe.head, pipe.record, extractor=pipe.feature_extractor(),
                             metrics=pipe.info.get("metrics"))
        else:
            for name in HEAD_FILES:
                if (m.run_dir / name).is_file():
                    shutil.copyfile(m.run_dir / name, folder / name)
            path = folder / "head.skops"
        return {"path": str(path), "format": "head", "one_keras_model": False,
                "note": f"a scikit-learn head on Keras features{' with flip TTA in its extractor' if cfg.tta else ''}: "
                        f"{path} (kerasclf predict takes it); a scikit-learn head is not a Keras layer, so it is "
                        f"not one Keras model and does not export to TFLite/ONNX"}
    spec = {**cfg.to_dict(), "task": task, "class_names": list(class_names),
            "members_files": [{"label": m.label, "path": os.path.relpath(m.artifact.resolve(), folder.resolve()),
                               "tta": cfg.tta} for m in chosen]}
    path = folder / "configuration.json"
    path.write_text(json.dumps(spec, indent=2))
    return {"path": str(path), "format": "members", "one_keras_model": False,
            "note": f"an ensemble with scikit-learn head(s) ({', '.join(heads)}): it cannot be one Keras model (a "
                    f"head is not a Keras layer); {path} lists its members, and "
                    f"kerasclf.candidates.load_configuration reads it back as one predictor"}


@dataclass
class MemberAverage:
    """An ensemble kept as its members (one holds a scikit-learn head): ``predict`` resizes the
    images to each member's size and averages their probabilities.

    Example:
        >>> load_configuration("runs/cmp/chosen").predict(images).shape   # doctest: +SKIP
        (8, 5)
    """

    members: list[Member]
    tta: bool
    task: str
    class_names: list[str]

    @property
    def image_size(self) -> tuple[int, int]:
        """The largest member input size (by area): :func:`largest_size` of the members' sizes."""
        return largest_size([m.image_size for m in self.members])

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Mean probabilities of the members, each on ``images`` resized to its own size."""
        images = np.asarray(images)
        spec = DataSpec(class_names=["_"], labels=np.zeros(len(images), int), images=images, source="images")
        cfg = Configuration("members", "ensemble", [m.label for m in self.members], tta=self.tta)
        return config_probs(cfg, {m.label: m for m in self.members},
                            lambda size: split_arrays(spec, image_size=size, batch_size=batch_size)[0], self.task)


def load_configuration(folder: str | Path) -> LoadedModel | HeadPipeline | MemberAverage:
    """The model :func:`save_configuration` wrote in ``folder``; each has ``predict(images)`` and ``image_size``.

    Example:
        >>> load_configuration("runs/cmp/chosen").image_size   # doctest: +SKIP
        (32, 32)
    """
    folder = Path(folder)
    if (folder / "model.keras").is_file():
        return load_model(folder / "model.keras")
    if (folder / "head.skops").is_file():
        return load_head(folder / "head.skops")
    path = folder / "configuration.json"
    if not path.is_file():
        raise ModelError(f"{folder} holds no saved configuration (model.keras, head.skops or configuration.json); "
                         f"run kerasclf compare again")
    spec = json.loads(path.read_text())
    members = [Member(m["label"], (folder / m["path"]).parent) for m in spec["members_files"]]  # relative: the
    # comparison folder can be moved
    return MemberAverage(members=members, tta=bool(spec.get("tta")), task=spec["task"],
                         class_names=list(spec["class_names"]))
