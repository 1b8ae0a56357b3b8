"""Recipes: YAML experiment descriptions validated into dataclasses.

An unknown key is an error that names it (with close matches); ``--set key=value`` overrides any
field by its dotted path.

Example:
    >>> r = Recipe.from_dict({"name": "demo", "data": {"source": "digits"},
    ...                       "model": {"name": "simple_cnn"}, "train": {"epochs": 3}})
    >>> r.train.epochs, r.train.optimizer.name
    (3, 'adam')
    >>> apply_overrides(r.to_dict(), ["train.optimizer.learning_rate=0.01"])["train"]["optimizer"]["learning_rate"]
    0.01
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kerasclf.data import sources, splits
from kerasclf.data.decisions import apply_decisions
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError
from kerasclf.recipes import builtin_path
from kerasclf.zoo.layers import TTA_VIEWS

__all__ = [
    "Recipe", "DataCfg", "SplitCfg", "ModelSection", "TrainCfg", "OptimizerCfg", "ScheduleCfg",
    "EarlyStoppingCfg", "ReduceLRCfg", "FineTuneCfg", "LRFindCfg", "load_recipe", "apply_overrides",
]


@dataclass
class SplitCfg:
    """Stratified split ratios and seed; ``manifest`` reuses an existing split CSV."""
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2
    seed: int = 42
    manifest: str | None = None


@dataclass
class DataCfg:
    """Where the images come from (``source`` + its options) and how they are fed.

    The fields below are the one list of pipeline keys; every other key is the source's own option
    (``path``, ``pattern``, ``attributes``, ``name`` ...), checked by ``kerasclf.data.sources.load``.

    Attributes:
        image_size: ``[H, W]`` the images are resized to (default: the model's input size).
        batch_size: images per batch.
        cache: ``memory``, a file prefix, or ``null`` (decode every epoch).
        augment: an augmentation policy name or list (see :mod:`kerasclf.data.augment`).
        split: split ratios, seed, or an existing manifest.
        channels: 1 or 3 (default: the model's input channels).
        shuffle: reshuffle the training split every epoch (``false`` keeps the manifest order).
        max_images: use a seeded stratified sample of at most this many images (every class keeps
            its share; seed ``split.seed``) — a quick run on a big folder. ``null``: all of them.
        decisions: a ``decisions.csv`` of ``kerasclf review`` (or a list of them, applied in order):
            its relabels and exclusions are applied before the sample and the split; the files
            stay as they are (:mod:`kerasclf.data.decisions`).
    """
    source: str = "folder"
    image_size: list[int] | None = None
    batch_size: int = 32
    cache: str | None = "memory"
    augment: Any = None
    split: SplitCfg = field(default_factory=SplitCfg)
    channels: int | None = None
    shuffle: bool = True
    max_images: int | None = None
    decisions: str | list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_images is not None and self.max_images < 2:
            raise ConfigError(f"data.max_images: {self.max_images}; give at least 2, or null for all images")

    def load_spec(self) -> DataSpec:
        """The :class:`~kerasclf.data.spec.DataSpec` of ``source`` with its options, ``decisions``
        applied (and, with ``max_images``, its seeded stratified sample)."""
        spec = sources.load({"source": self.source, **self.options})
        if self.decisions:
            spec = apply_decisions(spec, self.decisions)
        if self.max_images is not None and self.max_images < len(spec):
            spec = spec.subset(splits.sample_indices(spec, self.max_images, seed=self.split.seed))
        return spec


@dataclass
class ModelSection:
    """A zoo model by name plus builder options (``weights``, ``backbone``, ``dropout`` ...)."""
    name: str = "simple_cnn"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerCfg:
    """``momentum``: sgd / rmsprop only (unset: 0.9 for sgd, 0.0 for rmsprop); ``weight_decay``: every
    optimizer (unset: 1e-4 for adamw, none for the others); ``clipnorm`` > 0 clips each gradient.
    ``learning_rate: find`` runs the LR finder (``train.lr_find``) first and uses its suggestion."""
    name: str = "adam"
    learning_rate: float | str = 1e-3
    momentum: float | None = None
    weight_decay: float | None = None
    clipnorm: float | None = None


@dataclass
class ScheduleCfg:
    """``none`` | ``exponential`` (decay_rate every decay_steps) | ``cosine`` (over all steps) |
    ``one_cycle`` (from lr/div_factor up to lr over the first ``warmup`` fraction of the steps, then
    cosine down to lr/final_div; the momentum does not cycle)."""
    name: str = "none"
    decay_steps: int | None = None
    decay_rate: float = 0.96
    warmup_steps: int = 0
    alpha: float = 0.0
    warmup: float = 0.3
    div_factor: float = 25.0
    final_div: float = 1e4


@dataclass
class EarlyStoppingCfg:
    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass
class ReduceLRCfg:
    monitor: str = "val_loss"
    factor: float = 0.5
    patience: int = 2
    min_lr: float = 1e-6


@dataclass
class FineTuneCfg:
    """Stage 2 of transfer learning: unfreeze (all, the last N layers, or from a named layer).

    ``groups``: the unfrozen backbone layers split into this many groups (stem to head) for
    ``lr_decay`` (discriminative LRs: the group next to the head trains at ``learning_rate``, each
    group below at ``lr_decay`` times the one above; 1.0 = one LR) and ``gradual`` (unfreeze one
    more group per epoch, head side first). Batch-norm layers stay in inference mode while the
    backbone is fine-tuned (their statistics never move); ``freeze_bn: true`` also keeps their scale
    and offset fixed, ``false`` trains those with the unfrozen layers. ``schedule``: a
    ``train.schedule`` name for this stage (its other keys are shared), ``none`` keeps the LR.
    ``learning_rate: find`` runs the LR finder on the unfrozen model."""
    epochs: int = 5
    learning_rate: float | str = 1e-5
    unfreeze: Any = True
    groups: int = 1
    lr_decay: float = 1.0
    gradual: bool = False
    freeze_bn: bool = True
    schedule: str = "none"


@dataclass
class LRFindCfg:
    """The LR finder's sweep: ``steps`` batches from ``start`` to ``end`` (exponential); it stops
    when the smoothed loss exceeds ``diverge`` times its minimum. ``suggestion``: ``valley`` or
    ``steepest`` (fastai's two), used by ``learning_rate: find``."""
    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    diverge: float = 4.0
    suggestion: str = "valley"


@dataclass
class TrainCfg:
    epochs: int = 20
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    early_stopping: EarlyStoppingCfg | None = None
    reduce_lr: ReduceLRCfg | None = None
    fine_tune: FineTuneCfg | None = None
    lr_find: LRFindCfg = field(default_factory=LRFindCfg)
    class_weight: Any = None
    cache_frozen: Any = "auto"
    deterministic: bool = False
    tensorboard: bool = True
    ood: bool = True  # fit the OOD flag's statistics when the run ends (model.ood.npz); false skips it
    # test-time views (e.g. [flip]): val and test are also scored averaged over them (model.tta.keras),
    # and metrics.json's tta.chosen says whether that beat the plain model on validation
    tta: list[str] = field(default_factory=list)
    label_smoothing: float = 0.0
    monitor: str = "val_loss"
    steps_per_epoch: int | None = None
    seed: int = 42
    mixed_precision: str | None = "auto"
    jit_compile: Any = "auto"
    steps_per_execution: Any = "auto"
    strategy: str = "auto"
    verbose: int = 1  # Keras: 0 silent, 2 a line per epoch, 1 a bar on a terminal (a line per epoch in a log file)
    # minutes for the whole run: the fine-tuning stage times its first epoch and runs as many as fit
    # (at most fine_tune.epochs), and every stage stops when its next epoch would not fit (train/budget.py)
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        """Refuse values of the training-loop keys that would otherwise be ignored or fail late."""
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise ConfigError(f"train.budget_minutes: {self.budget_minutes}; give minutes > 0, or null for no budget")
        for key, lr in (("optimizer.learning_rate", self.optimizer.learning_rate),
                        ("fine_tune.learning_rate", self.fine_tune.learning_rate if self.fine_tune else 1.0)):
            if isinstance(lr, str) and lr != "find":
                raise ConfigError(f"train.{key}: '{lr}' is not a number or 'find' (the LR finder)")
        if isinstance(self.tta, str):
            self.tta = [self.tta]
        bad = [v for v in self.tta or [] if v not in TTA_VIEWS]
        if bad:
            raise ConfigError(f"train.tta: unknown view {bad[0]!r}; use a list of {', '.join(TTA_VIEWS)} (or [])")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"train.class_weight: {self.class_weight!r}; use balanced or null")
        views = self.cache_frozen
        if views not in ("auto", True, False) and not (type(views) is int and views >= 1):
            raise ConfigError(f"train.cache_frozen: {views!r}; use auto, true, false or a number of views (>= 1)")
        if self.lr_find.suggestion not in ("valley", "steepest"):
            raise ConfigError(f"train.lr_find.suggestion: '{self.lr_find.suggestion}'; use valley or steepest")
        if not 0 < self.lr_find.start < self.lr_find.end or self.lr_find.steps < 5:
            raise ConfigError(f"train.lr_find: need 0 < start < end and steps >= 5, got start="
                              f"{self.lr_find.start}, end={self.lr_find.end}, steps={self.lr_find.steps}")
        ft = self.fine_tune
        if ft is not None and (ft.groups < 1 or not 0 < ft.lr_decay <= 1):
            raise ConfigError(f"train.fine_tune: groups must be >= 1 and 0 < lr_decay <= 1, got groups="
                              f"{ft.groups}, lr_decay={ft.lr_decay}")
        if ft is not None and (ft.lr_decay < 1 or ft.gradual) and ft.groups < 2:
            raise ConfigError("train.fine_tune.lr_decay / gradual act between layer groups; set "
                              "train.fine_tune.groups >= 2 (e.g. 3)")


@dataclass
class Recipe:
    """A whole experiment: data, model, training and where the run folder goes."""
    name: str = "run"
    data: DataCfg = field(default_factory=DataCfg)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainCfg = field(default_factory=TrainCfg)
    output_dir: str = "runs"
    description: str = ""

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "recipe") -> "Recipe":
        raw = copy.deepcopy(raw or {})
        data = raw.get("data")
        if isinstance(data, dict):
            pipeline_keys = {f.name for f in dataclasses.fields(DataCfg)} - {"options"}
            opts = {k: data.pop(k) for k in list(data) if k not in pipeline_keys}
            data["options"] = {**data.get("options", {}), **opts}
        model = raw.get("model")
        if isinstance(model, str):
            raw["model"] = {"name": model}
        elif isinstance(model, dict):
            opts = {k: model.pop(k) for k in list(model) if k not in ("name", "options")}
            model["options"] = {**model.get("options", {}), **opts}
        return _build(cls, raw, where)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (data/model options flattened back) that ``from_dict`` accepts."""
        out = dataclasses.asdict(self)
        out["data"].update(out["data"].pop("options"))
        out["model"].update(out["model"].pop("options"))
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _type_ok(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _dataclass_in(tp: Any) -> Any:
    for a in (typing.get_args(tp) or (tp,)):
        if dataclasses.is_dataclass(a):
            return a
    return None


def _build(cls: Any, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, fields, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(sorted(fields))}"
        raise ConfigError(f"unknown key '{where}.{k}'{hint}")
    kwargs = {}
    for name, value in raw.items():
        tp = hints[name]
        sub = _dataclass_in(tp)
        if sub is not None and isinstance(value, dict):
            kwargs[name] = _build(sub, value, f"{where}.{name}")
        elif sub is not None and value is True and type(None) in typing.get_args(tp):
            kwargs[name] = sub()  # `early_stopping: true` means the defaults
        elif sub is not None and value is False and type(None) in typing.get_args(tp):
            kwargs[name] = None
        else:
            if not _type_ok(value, tp):
                raise ConfigError(f"{where}.{name}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
            kwargs[name] = float(value) if tp is float else value
    return cls(**kwargs)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply ``key=value`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        builtin = builtin_path(str(path))
        if builtin is None:
            raise ConfigError(f"recipe {path} not found; give a YAML file path or a built-in name "
                              f"(kerasclf/recipes/*.yaml)")
        path = builtin
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"recipe {path}{at} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    raw = apply_overrides(raw, overrides or [])
    return Recipe.from_dict(raw, where=path.stem)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys from ``key=value`` strings; values are parsed as YAML (``3``, ``null``, ``[1,2]``)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
        key, value = item.split("=", 1)
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    return raw


def _flat_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A YAML tree as ``{"train.optimizer.name": "adam", "models[0].name": ...}``."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat_tree(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(tree, list) and tree and any(isinstance(v, (dict, list)) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(_flat_tree(value, f"{prefix}[{i}]"))
        return out
    return {prefix: tree}


def tree_changes(old: Any, new: Any, *, ignore: tuple[str, ...] = ("verbose",)) -> list[str]:
    """Every key whose value differs between two YAML trees, as ``path: old -> new`` (keys named in
    ``ignore`` never count).

    Example:
        >>> tree_changes({"train": {"epochs": 5, "verbose": 1}}, {"train": {"epochs": 8, "verbose": 2}})
        ['train.epochs: 5 -> 8']
    """
    a, b = _flat_tree(old), _flat_tree(new)
    absent = "(absent)"
    return [f"{k}: {repr(a.get(k, absent))[:60]} -> {repr(b.get(k, absent))[:60]}"
            for k in sorted(set(a) | set(b), key=lambda k: (k not in a, k))
            if a.get(k, absent) != b.get(k, absent) and k.rsplit(".", 1)[-1].split("[")[0] not in ignore]


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two recipes (YAML trees), each read with today's defaults first, so a
    key kerasclf added since a run started (at its default value) is not a change.

    Example:
        >>> recipe_changes({"train": {"epochs": 5}}, {"train": {"epochs": 5, "class_weight": None}})
        []
    """
    def normal(raw: dict[str, Any]) -> Any:
        try:
            return Recipe.from_dict(raw).to_dict()
        except ConfigError:  # a key this version no longer knows: compare the trees as written
            return raw
    return tree_changes(normal(old), normal(new))
