"""Save and reload models in ``.keras`` (default), ``.h5`` and exported SavedModel form.

kerasclf metadata (class names, task, input size, model name, threshold) travels *inside* the
saved artefact: an extra ``kerasclf.json`` entry in the ``.keras`` zip, an HDF5 attribute in
``.h5``, and a ``kerasclf.json`` file in the export folder. Reloading needs no custom_objects.

Example:
    >>> from kerasclf.io import save_model, load_model           # doctest: +SKIP
    >>> save_model(model, "runs/demo/model.keras", meta={"class_names": ["0", "1"]})
    >>> loaded = load_model("runs/demo/model.keras")
    >>> loaded.meta["class_names"], loaded.predict(images).shape
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf

from kerasclf import __version__
from kerasclf.data.decisions import manifest_decisions
from kerasclf.errors import ConfigError, ModelError
from kerasclf.security import check_model
from kerasclf.zoo import build, input_size
from kerasclf.zoo.adapt import adapt, has_input_preprocessing, output_activation
from kerasclf.zoo.cut import fixed_input
from kerasclf.zoo.layers import PREPROCESS_MODES, Preprocess

__all__ = ["save_model", "load_model", "LoadedModel", "read_meta", "model_format", "serving_function",
           "model_card", "write_card", "read_card", "card_path", "ModelFacts", "adopt_model", "chosen_model",
           "is_run_folder"]

META_NAME = "kerasclf.json"
H5_ATTR = "kerasclf_meta"


def model_format(path: str | Path) -> str:
    """``keras`` | ``h5`` | ``export`` from the path (a folder or no suffix means export)."""
    p = Path(path)
    if p.suffix == ".keras":
        return "keras"
    if p.suffix in (".h5", ".hdf5"):
        return "h5"
    if p.suffix in ("", ".savedmodel", ".export") or p.is_dir():
        return "export"
    raise ModelError(f"{path}: unknown model format '{p.suffix}'; use .keras, .h5 or a folder name for export")


def save_model(model: Any, path: str | Path, *, meta: dict[str, Any] | None = None,
               overwrite: bool = False) -> Path:
    """Save ``model`` to ``path`` (format from the suffix) with kerasclf metadata inside.

    Never replaces an existing file or folder unless ``overwrite=True``.
    """
    path = Path(path)
    fmt = model_format(path)
    if path.exists() and not overwrite:
        raise ModelError(f"{path} already exists; pass overwrite=True (or --overwrite) or choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("kerasclf_version", __version__)
    text = json.dumps(meta, indent=2, default=_json_default)
    if fmt == "keras":
        tmp = path.with_name(path.name + ".tmp.keras")
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_NAME, text)
        tmp.replace(path)
    elif fmt == "h5":
        tmp = path.with_name(path.name + ".tmp.h5")
        model.save(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[H5_ATTR] = text
        tmp.replace(path)
    else:
        if path.exists():
            shutil.rmtree(path)
        _export_inference(model, path)
        (path / META_NAME).write_text(text)
    return path


def _input_spec(model: Any, image_size: tuple[int, int] | None = None) -> tf.TensorSpec:
    """The float32 ``images`` spec of the model's input; ``image_size`` fixes a dynamic H, W."""
    shape = list(model.inputs[0].shape[1:])
    if image_size is not None:
        shape[0], shape[1] = int(image_size[0]), int(image_size[1])
    return tf.TensorSpec(shape=(None, *shape), dtype=tf.float32, name="images")


def serving_function(model: Any, image_size: tuple[int, int] | None = None) -> Any:
    """The model as a concrete ``tf.function`` in inference mode (``training=False``), input ``images``.

    Every runtime export (ONNX, LiteRT, OpenVINO) converts this one function, so none of them can
    trace a layer in training mode. ``image_size`` fixes the spatial input size.

    Example:
        >>> fn = serving_function(tiny_cnn(2), (16, 16))        # doctest: +SKIP
        >>> fn.structured_input_signature[0][0].shape
        TensorShape([None, 16, 16, 3])
    """
    return tf.function(lambda images: model(images, training=False)).get_concrete_function(
        _input_spec(model, image_size))


def _export_inference(model: Any, path: Path) -> None:
    """SavedModel with one ``serve`` endpoint that runs the model in inference mode.

    ``model.export`` traced custom layers (ResidualUnit) with batch statistics; an explicit
    ``training=False`` endpoint via ``keras.export.ExportArchive`` does not.
    """
    spec = [_input_spec(model)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda x: model(x, training=False), input_signature=spec)
    archive.write_out(str(path), verbose=False)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The kerasclf metadata stored with a saved model (``{}`` if it has none)."""
    path = Path(path)
    fmt = model_format(path)
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read(META_NAME)) if META_NAME in zf.namelist() else {}
        if fmt == "h5":
            with h5py.File(path, "r") as f:
                return json.loads(f.attrs[H5_ATTR]) if H5_ATTR in f.attrs else {}
        meta = path / META_NAME
        return json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read this model file ({type(exc).__name__}: {exc}); "
                         f"is it a complete .keras/.h5 file saved by Keras 3?") from None


@dataclass
class LoadedModel:
    """A reloaded model with its metadata; ``predict`` takes raw 0..255 RGB batches."""

    path: Path
    format: str
    model: Any
    meta: dict[str, Any] = field(default_factory=dict)
    #: the model was not saved by kerasclf (no metadata in the file)
    foreign: bool = False
    #: what :class:`ModelFacts` added to a foreign model: ``{"preprocess": mode, "activation": name}``
    adapted: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        """The recorded (or ``--classes``) names, else ``"0".."K-1"`` (two for one sigmoid unit)."""
        names = self.meta.get("class_names")
        return list(names) if names else [str(i) for i in range(2 if self.num_outputs == 1 else self.num_outputs)]

    @property
    def names_known(self) -> bool:
        """Whether the class names were recorded or given (not the ``0..K-1`` stand-ins)."""
        return bool(self.meta.get("class_names"))

    @property
    def task(self) -> str:
        task = self.meta.get("task")
        if task:
            return task
        if self.foreign:
            said = (f"output activation '{self.meta['output_activation']}'" if self.meta.get("output_activation")
                    else "a SavedModel's output" if self.format == "export" else "output activation unknown")
            raise ModelError(f"{self.path}: its output does not say the task ({said}); "
                             f"pass --task binary|multiclass|multilabel")
        return "binary" if self.num_outputs == 1 else "multiclass"

    @property
    def num_outputs(self) -> int:
        if self.format == "export":
            return int(self.meta.get("num_outputs") or len(self.meta.get("class_names", [])) or 0)
        return int(self.model.outputs[0].shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.meta.get("image_size")
        if size:
            return int(size[0]), int(size[1])
        if self.format != "export":
            return input_size(self.model)
        raise ModelError(f"{self.path}: no image size recorded; pass --image-size")

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw model outputs for a float/uint8 batch ``(N, H, W, 3)`` of 0..255 pixels."""
        images = np.asarray(images, dtype="float32")
        if self.format == "export":
            if self.adapted.get("preprocess"):  # a foreign SavedModel has no layers to put it in front of
                images = np.asarray(Preprocess(self.adapted["preprocess"])(images))
            if not hasattr(self.model, "serve"):
                raise ModelError(f"{self.path}: this SavedModel has no 'serve' endpoint; write it with Keras's "
                                 f"model.export(PATH) (or give kerasclf the .keras/.h5 file)")
            outs = [np.asarray(self.model.serve(images[i:i + batch_size]))
                    for i in range(0, len(images), batch_size)]
            return np.concatenate(outs) if outs else np.zeros((0, self.num_outputs), "float32")
        return np.asarray(self.model.predict(images, batch_size=batch_size, verbose=0))


def load_model(path: str | Path, *, num_classes: int | None = None, compile: bool = False,
               facts: ModelFacts | None = None, trust: bool | None = None) -> LoadedModel:
    """Reload a ``.keras`` / ``.h5`` file or an export folder, saved by :func:`save_model` or by anyone.

    The file passes the security gate first (:func:`kerasclf.security.check_model`): one that would
    do more than compute its outputs is refused before Keras or TensorFlow opens it.

    Args:
        path: the saved model.
        num_classes: if given, checked against the model's output; a mismatch raises
            :class:`~kerasclf.errors.ModelError` naming both numbers.
        compile: also restore the optimizer and loss (``.keras``/``.h5`` only).
        facts: what the file cannot say (class names, task, image size, preprocessing), see
            :class:`ModelFacts`; a model without kerasclf metadata is resolved with them.
        trust: run a file the gate refuses, after a one-line warning (``None``: as an enclosing
            :func:`kerasclf.security.trusted` block says; default refuse). Keras ``safe_mode`` stays on.

    Raises:
        UnsafeModelError: the gate refused the file (it names the op, layer or path).

    Example:
        >>> m = load_model("notebook.h5", facts=ModelFacts.from_options(classes="cat,dog",  # doctest: +SKIP
        ...                preprocess="none"))
        >>> m.class_names, m.task
        (['cat', 'dog'], 'binary')
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model {path} not found; check the path (a run writes runs/<name>/model.keras)")
    fmt = model_format(path)
    check_model(path, trust=trust)
    meta = read_meta(path)
    try:
        if fmt == "export":
            model = tf.saved_model.load(str(path))
        else:
            model = keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(_load_error(path, fmt, exc)) from None
    loaded = _resolve_facts(LoadedModel(path=path, format=fmt, model=model, meta=meta, foreign=not meta),
                            facts or ModelFacts())
    if num_classes is not None:
        units = loaded.num_outputs
        expected = 1 if (num_classes == 2 and units == 1) else num_classes
        if units != expected:
            raise ModelError(f"{path} predicts {units} output(s) "
                             f"({len(loaded.class_names)} classes) but num_classes={num_classes} was "
                             f"given; use the model trained for these classes or pass num_classes={len(loaded.class_names)}")
    return loaded


def load_any_model(model_or_name: Any, **build_kwargs: Any) -> Any:
    """A Keras model from a model, a :class:`LoadedModel`, a saved ``.keras``/``.h5`` file or a zoo name.

    Args:
        model_or_name: ``keras.Model``; ``LoadedModel``; path to ``.keras``/``.h5``; registry or
            ``keras.applications`` name.
        **build_kwargs: passed to :func:`kerasclf.zoo.build` for a name (e.g. ``weights=None``).

    Example:
        >>> m = load_any_model("resnet50_features", weights="imagenet")   # doctest: +SKIP
    """
    if isinstance(model_or_name, LoadedModel):
        return model_or_name.model
    if not isinstance(model_or_name, (str, Path)):
        return model_or_name  # already a model
    name = str(model_or_name)
    if Path(name).suffix in (".keras", ".h5", ".hdf5") or Path(name).is_dir():
        loaded = load_model(name)
        if loaded.format == "export":
            raise ModelError(f"{name}: an exported SavedModel has no layers to cut; "
                             f"use the .keras file of the model")
        return loaded.model
    return build(name, **build_kwargs)


_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


def _load_error(path: Path, fmt: str, exc: Exception) -> str:
    """One line for a model Keras could not load; an unregistered custom class names the fix."""
    text = str(exc).strip()
    missing = _UNKNOWN_CLASS.search(text)
    if missing:
        name = missing.group(1)
        return (f"{path}: Keras does not know the custom class '{name}' this model uses; "
                f"`import kerasclf` (it registers its own layers) and the package that defines any other "
                f"custom layer before `keras.saving.load_model`; if '{name}' is a kerasclf layer, the model "
                f"was saved by a newer kerasclf: upgrade it")
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"{path}: could not load this {fmt} model ({first[:200]}); was it saved by Keras 3 / kerasclf?"


CARD_KEYS = ("class_names", "task", "image_size", "num_outputs", "model_name", "threshold", "thresholds", "temperature")


def card_path(artefact: str | Path) -> Path:
    """Where the model card of ``artefact`` lives: ``<folder>/card.json`` for a folder,
    ``<stem>.card.json`` beside a Keras file (``model.keras`` -> ``model.card.json``), else
    ``<name>.card.json`` (``model.onnx`` -> ``model.onnx.card.json``), so the exports of one model
    (``model.onnx``, ``model.tflite``, ``model.int8.xml`` ...) never overwrite its card or each other's.

    Example:
        >>> card_path("runs/x/model.keras").name, card_path("runs/x/model.int8.tflite").name
        ('model.card.json', 'model.int8.tflite.card.json')
    """
    p = Path(artefact)
    if p.is_dir() or p.suffix in ("", ".savedmodel", ".export"):
        return p / "card.json"
    return p.with_name((p.stem if p.suffix in (".keras", ".h5", ".hdf5") else p.name) + ".card.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_card(model_path: str | Path, meta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The model card of a saved model: what a user of any artefact made from it must know.

    Class names, task, input contract, preprocessing inside the model, and, when the model sits
    in a run folder, the split manifest's hash, the validation/test metrics and the recipe.
    ``extra`` (e.g. ``export=...``, ``parity=...``) is added as is.

    Example:
        >>> card = model_card("runs/demo/model.keras")               # doctest: +SKIP
        >>> card["input"]["pixels"], card["metrics"]["val"]["accuracy"]
        ('raw RGB 0..255, float32', 0.97)
    """
    model_path = Path(model_path)
    meta = dict(read_meta(model_path) if meta is None else meta)
    card: dict[str, Any] = {k: meta[k] for k in CARD_KEYS if k in meta}
    size = meta.get("image_size")
    card["input"] = {"pixels": "raw RGB 0..255, float32", "shape": ["N", *(size or ["H", "W"]), 3],
                     "resize": "any image: kerasclf resizes it to image_size with the training reader",
                     "preprocessing": "inside the model (rescaling / the backbone's own); do not normalise"}
    card["source_model"] = {"path": str(model_path), "sha256": _sha256(model_path) if model_path.is_file() else None}
    run = model_path.parent
    if (run / "split.csv").is_file():
        card["data"] = {"split_manifest": str(run / "split.csv"), "split_sha256": _sha256(run / "split.csv")}
        changed = manifest_decisions(run / "split.csv")
        if changed is not None:  # review decisions (data.decisions) were applied before the split
            card["data"]["decisions"] = changed
    if (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
        tta = metrics.get("tta") or {}
        scored = "{}_tta" if tta.get("model") == model_path.name else "{}"  # the run's TTA model: its own scores
        card["metrics"] = {k: {m: v for m, v in metrics[scored.format(k)].items() if isinstance(v, (int, float))}
                           for k in ("val", "test") if isinstance(metrics.get(scored.format(k)), dict)}
        if tta:
            card["chosen_model"] = _run_choice(tta)
    if (run / "recipe.yaml").is_file():
        card["recipe"] = (run / "recipe.yaml").read_text()
    card["versions"] = {"kerasclf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                        "python": platform.python_version()}
    card.update(extra)
    return card


def _run_choice(tta: dict[str, Any]) -> dict[str, Any]:
    """Which of a run's models it chose on validation (``metrics.json``'s ``tta``), and why."""
    views = "+".join(tta.get("views") or [])
    plain, with_tta = tta.get("val_plain"), tta.get("val_tta")
    scores = (f"validation accuracy {with_tta:.4f} with {views} TTA, {plain:.4f} without"
              if plain is not None and with_tta is not None else "no validation score to compare")
    if tta.get("chosen"):
        return {"file": tta["model"], "why": f"{views} TTA won on validation ({scores})"}
    return {"file": "model.keras", "why": f"{views} TTA did not beat the plain model ({scores})"}


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a run folder (it holds ``recipe.yaml`` and ``split.csv``)."""
    return (Path(path) / "recipe.yaml").is_file() and (Path(path) / "split.csv").is_file()


def chosen_model(run_dir: str | Path) -> tuple[Path, str]:
    """The model a run folder chose on validation, as its model card says, and why: ``model.tta.keras``
    when flip TTA won (``train.tta``), else ``model.keras``.

    Example:
        >>> path, why = chosen_model("runs/demo")                         # doctest: +SKIP
        >>> path.name, why
        ('model.keras', 'the run trained one model')
    """
    plain = Path(run_dir) / "model.keras"
    if not plain.is_file():
        raise ModelError(f"{run_dir} has no model.keras; give a run folder written by `kerasclf train` or a model file")
    card = read_card(plain) if card_path(plain).is_file() else model_card(plain)
    choice = card.get("chosen_model") or {"file": plain.name, "why": "the run trained one model"}
    path = plain.with_name(choice["file"])
    if not path.is_file():
        raise ModelError(f"{path} is missing: the run chose it ({choice['why']}); train the run again")
    return path, choice["why"]


def write_card(artefact: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` as ``card.json`` and a short ``card.md`` beside ``artefact``; returns the JSON path."""
    path = card_path(artefact)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2, default=_json_default))
    path.with_suffix(".md").write_text(_card_markdown(card))
    return path


def read_card(artefact: str | Path) -> dict[str, Any]:
    """The model card beside ``artefact``; a missing one is a :class:`ModelError` naming the fix."""
    path = card_path(artefact)
    older = Path(artefact).with_name(Path(artefact).stem + ".card.json")  # where exports made before today put it
    if not path.is_file() and older.is_file():
        card = json.loads(older.read_text())
        if (card.get("export") or {}).get("file") == Path(artefact).name:
            return card
    if not path.is_file():
        raise ModelError(f"{artefact}: its model card {path} is missing; export it again with "
                         f"`kerasclf export MODEL --format ...` (the card carries class names and input size)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc}); export the model again") from None


def _card_markdown(card: dict[str, Any]) -> str:
    names = card.get("class_names") or []
    lines = [f"# Model card: {card.get('model_name') or card.get('source_model', {}).get('path', 'model')}", "",
             f"- task: {card.get('task')}; {len(names)} classes: {', '.join(map(str, names[:20]))}"
             + (" ..." if len(names) > 20 else ""),
             f"- input: {card['input']['pixels']}, shape {card['input']['shape']}; {card['input']['preprocessing']}"]
    if "export" in card:
        e = card["export"]
        lines.append(f"- artefact: {e.get('format')} ({e.get('runtime')}), int8: {e.get('int8', False)}")
    if "parity" in card:
        p = card["parity"]
        lines.append(f"- parity with Keras on {p.get('n_images')} images ({p.get('images')}): top-1 agreement "
                     f"{p.get('top1_agreement')}, max abs prob diff {p.get('max_abs_diff')}"
                     + (f", accuracy {p.get('keras_accuracy')} -> {p.get('artefact_accuracy')}"
                        if p.get("artefact_accuracy") is not None else "") + f"; passed: {p.get('passed')}")
    for split, m in (card.get("metrics") or {}).items():
        if "accuracy" in m:
            lines.append(f"- {split} accuracy: {m['accuracy']:.4f}")
    if "chosen_model" in card:
        lines.append(f"- the run predicts with {card['chosen_model']['file']}: {card['chosen_model']['why']}")
    if "data" in card:
        lines.append(f"- split manifest sha256: {card['data']['split_sha256'][:16]}...")
        if "decisions" in card["data"]:
            d = card["data"]["decisions"]
            lines.append(f"- review decisions (data.decisions): {d['relabelled']} labels changed, {d['excluded']} "
                         f"images excluded; split.csv keeps each given label beside the one used")
    if "ood" in card:
        o = card["ood"]
        lines.append(f"- out-of-distribution flag: {o['score']} score above {o['threshold']:g} (fitted on the "
                     f"{o['fitted_on']}, {o['val_fpr']:.1%} of it flagged; statistics in model.ood.npz)")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items()))
    return "\n".join(lines) + "\n"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# --------------------------------------------------------------------------------------------
# a model kerasclf did not save: the facts its file cannot say

TASK_NAMES = ("binary", "multiclass", "multilabel")
_TASK_ACTIVATION = {"binary": "sigmoid", "multiclass": "softmax", "multilabel": "sigmoid"}


@dataclass(frozen=True)
class ModelFacts:
    """What a command must know about a model that its file may not record; ``None`` = ask the file.

    One object carries ``--classes``, ``--task``, ``--image-size`` and ``--preprocess`` to
    :func:`load_model`, which checks them against the model and applies them (see
    :func:`_resolve_facts`); every command resolves a model's facts there.

    Example:
        >>> f = ModelFacts.from_options(classes="cat,dog", preprocess="tf", image_size=(96, 96))
        >>> f.class_names, f.preprocess, f.image_size
        (('cat', 'dog'), 'tf', (96, 96))
    """

    class_names: tuple[str, ...] | None = None
    task: str | None = None
    image_size: tuple[int, int] | None = None
    preprocess: str | None = None

    @classmethod
    def from_options(cls, *, classes: str | list[str] | tuple[str, ...] | None = None, task: str | None = None,
                     image_size: Any = None, preprocess: str | None = None) -> ModelFacts:
        """Facts from command-line style values: ``classes`` is ``"a,b"``, a list, or a text file (one name a line)."""
        if task is not None and task not in TASK_NAMES:
            raise ConfigError(f"--task '{task}' is not one of {', '.join(TASK_NAMES)}")
        if preprocess is not None and preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"--preprocess '{preprocess}' is not one of {', '.join(PREPROCESS_MODES)}")
        size = None
        if image_size is not None:
            size = tuple(int(v) for v in image_size)
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f"--image-size {image_size}: give two positive numbers, height and width")
        return cls(class_names=_parse_classes(classes), task=task, image_size=size, preprocess=preprocess)

    @property
    def given(self) -> list[str]:
        """The command-line options these facts set (for messages), e.g. ``["--classes"]``."""
        names = {"class_names": "--classes", "task": "--task", "image_size": "--image-size", "preprocess": "--preprocess"}
        return [opt for key, opt in names.items() if getattr(self, key) is not None]


def _parse_classes(classes: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        path = Path(classes)
        if path.is_file():
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            where = str(path)
        elif path.suffix in (".txt", ".csv") and "," not in classes:
            raise ConfigError(f"--classes {classes}: no such file; give a text file with one class name a line, "
                              f"or the names themselves: --classes cat,dog")
        else:
            names, where = [c.strip() for c in classes.split(",")], "--classes"
    else:
        names, where = [str(c).strip() for c in classes], "--classes"
    if not names or any(not n for n in names):
        raise ConfigError(f"{where}: empty class name in {list(names)}; give names like --classes cat,dog")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: class name(s) {', '.join(dupes)} given twice; each output needs its own name")
    return tuple(names)


def _resolve_facts(loaded: LoadedModel, facts: ModelFacts) -> LoadedModel:
    """``loaded`` with ``facts`` checked and applied; a foreign model with missing facts gets a one-line error.

    - preprocessing: a foreign Keras model with no Rescaling / Normalization / Preprocess layer
      needs ``--preprocess`` (``none`` when it takes raw 0..255 pixels); the mode is put inside the
      model (:func:`kerasclf.zoo.adapt.adapt`). A kerasclf model has it inside already.
    - task: ``--task``, else the recorded one, else read from a foreign model's output
      (one sigmoid unit: binary with two classes; several sigmoid units: multilabel; softmax:
      multiclass); logits (a linear output) get the task's activation appended.
    - class names and image size: checked against the output units and a fixed input size.
    """
    path, meta, model = loaded.path, dict(loaded.meta), loaded.model
    if facts.preprocess is not None and not loaded.foreign:
        raise ModelError(f"{path} was saved by kerasclf with its preprocessing inside; drop "
                         f"--preprocess {facts.preprocess}")
    adapted: dict[str, Any] = {}
    task = facts.task or meta.get("task")
    if loaded.format == "export":
        units = 1 if task == "binary" else (len(facts.class_names) if facts.class_names else None)
        if loaded.foreign and facts.preprocess is None:
            raise ModelError(f"{path} is a SavedModel without kerasclf metadata, so its pixel scale is unknown; "
                             f"pass --preprocess {'|'.join(PREPROCESS_MODES)} (none: it takes raw 0..255 pixels)")
        if loaded.foreign and facts.preprocess != "none":
            adapted["preprocess"] = facts.preprocess
        if units and not meta.get("num_outputs"):
            meta["num_outputs"] = units
    else:
        units = int(model.outputs[0].shape[-1])
        act = output_activation(model)
        if loaded.foreign:
            meta["output_activation"] = act
            if facts.preprocess is None and not has_input_preprocessing(model):
                raise ModelError(f"{path} has no kerasclf metadata and no Rescaling/Normalization layer at its "
                                 f"input, so its pixel scale is unknown; pass --preprocess "
                                 f"{'|'.join(PREPROCESS_MODES)} (none: it takes raw 0..255 pixels)")
            if facts.preprocess is not None:
                adapted["preprocess"] = facts.preprocess
            if task is None and act == "sigmoid":
                task = "binary" if units == 1 else "multilabel"
            elif task is None and act == "softmax" and units > 1:
                task = "multiclass"
            if task is not None and act == "linear":
                adapted["activation"] = _TASK_ACTIVATION[task]
            elif task is not None and act not in (None, "sigmoid", "softmax"):
                raise ModelError(f"{path}: its output layer's activation is '{act}', not probabilities or logits; "
                                 f"kerasclf needs a softmax/sigmoid (or linear) output for --task {task}")
            elif task == "multilabel" and act == "softmax":
                raise ModelError(f"{path} ends in a softmax (one class per image) but --task multilabel was given; "
                                 f"use --task multiclass")
        if task is not None:
            _check_task_units(path, task, units)
    if task is not None:
        meta["task"] = task
    if facts.class_names is not None:
        n = units if units else None
        expected = 2 if n == 1 else n
        if expected is not None and len(facts.class_names) != expected:
            raise ModelError(f"--classes gives {len(facts.class_names)} names but {path} has {n} output unit(s) "
                             f"({expected} classes); give {expected} names in the order of its outputs")
        meta["class_names"] = list(facts.class_names)
    if facts.image_size is not None:
        if loaded.format != "export":
            fixed, _ = fixed_input(model)
            if fixed is not None and tuple(fixed) != tuple(facts.image_size):
                raise ModelError(f"--image-size {facts.image_size[0]} {facts.image_size[1]}: {path} takes "
                                 f"{fixed[0]}x{fixed[1]} images only; drop --image-size or pass "
                                 f"--image-size {fixed[0]} {fixed[1]}")
        meta["image_size"] = list(facts.image_size)
    if adapted and loaded.format != "export":
        model = adapt(model, preprocess=adapted.get("preprocess"), activation=adapted.get("activation"))
    return LoadedModel(path=path, format=loaded.format, model=model, meta=meta, foreign=loaded.foreign,
                       adapted=adapted)


def _check_task_units(path: Path, task: str, units: int) -> None:
    if task == "binary" and units != 1:
        raise ModelError(f"--task binary means one sigmoid output unit, but {path} has {units}; "
                         f"use --task {'multiclass' if units > 1 else 'binary'}")
    if task in ("multiclass", "multilabel") and units < 2:
        raise ModelError(f"--task {task} needs two or more output units, but {path} has {units}; use --task binary")


def adopt_model(path: str | Path, out: str | Path, facts: ModelFacts | None = None, *,
                overwrite: bool = False) -> Path:
    """``kerasclf adopt``: save a model kerasclf did not train once with its facts inside, plus its model card.

    The written model takes raw 0..255 RGB (``--preprocess`` is put inside it) and carries its
    class names, task and image size, so every later command needs no options.

    Raises:
        ModelError: a fact is missing (the message names the option), or ``out`` exists.

    Example:
        >>> adopt_model("notebook.h5", "adopted.keras",                        # doctest: +SKIP
        ...             ModelFacts.from_options(classes="cat,dog", preprocess="none"))
        PosixPath('adopted.keras')
    """
    path = Path(path)
    loaded = load_model(path, facts=facts or ModelFacts())
    if loaded.format == "export":
        raise ModelError(f"{path}: an exported SavedModel cannot be re-saved as Keras; adopt the .keras/.h5 file")
    task = loaded.task
    if not loaded.names_known:
        n = len(loaded.class_names)
        raise ModelError(f"{path} records no class names; pass --classes with its {n} names in output order "
                         f"(e.g. --classes {','.join(f'class{i}' for i in range(min(n, 3)))}{',...' if n > 3 else ''})")
    size = loaded.image_size
    meta = {key: loaded.meta[key] for key in ("threshold", "thresholds", "temperature") if key in loaded.meta}
    meta.update(class_names=loaded.class_names, task=task, image_size=list(size), num_outputs=loaded.num_outputs,
                model_name=loaded.meta.get("model_name") or loaded.model.name,
                adopted_from={"path": str(path), "sha256": _sha256(path) if path.is_file() else None,
                              "kerasclf_metadata": not loaded.foreign, **{f"{k}_added": v for k, v in loaded.adapted.items()}})
    out = save_model(loaded.model, out, meta=meta, overwrite=overwrite)
    write_card(out, model_card(out, meta))
    return out
