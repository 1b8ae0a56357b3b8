"""Scale out on the engines Keras already has: ``tf.distribute`` and ``keras.distribution``.

``train.strategy`` in a recipe is one of:

==============  ====================================================  =================================
name            TensorFlow backend                                    JAX backend
==============  ====================================================  =================================
auto            multi_worker when ``TF_CONFIG`` names >1 task,        ``DataParallel`` over all local
                mirrored when >1 GPU, else the default (no-op)        devices when >1, else none
one_device      ``tf.distribute.OneDeviceStrategy`` (GPU 0 or CPU)    no distribution
mirrored        ``tf.distribute.MirroredStrategy`` (all local GPUs,   ``DataParallel`` over all local
                or all logical CPUs when there is no GPU)             devices
multi_worker    ``tf.distribute.MultiWorkerMirroredStrategy``         ``keras.distribution.initialize``
                configured by ``TF_CONFIG``                           (``KERAS_DISTRIBUTION_*``
                                                                      variables) + ``DataParallel``
==============  ====================================================  =================================

The recipe's ``data.batch_size`` is the batch *per replica*; :func:`scaled_batch_and_lr` gives the
global batch and the linearly scaled learning rate. Only the chief writes checkpoints and the final
model (:func:`is_chief`, :func:`chief_path`); ``keras.callbacks.BackupAndRestore`` lets a restarted
worker resume. See docs/scaling.md.

Example:
    >>> from kerasclf.train.distribute import scaled_batch_and_lr
    >>> scaled_batch_and_lr(32, 1e-3, 4)
    (128, 0.004)
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from kerasclf.errors import BackendError, ConfigError

__all__ = [
    "STRATEGIES", "make_strategy", "num_replicas", "scaled_batch_and_lr", "is_chief", "chief_path",
    "cleanup_chief_path", "backup_dir", "strategy_scope", "shard_by_data", "tf_config",
]

#: The names ``train.strategy`` accepts.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable (``{}`` when unset).

    Raises:
        ConfigError: when ``TF_CONFIG`` is not valid JSON.

    Example:
        >>> isinstance(tf_config(), dict)
        True
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); see docs/scaling.md for an example") from None
    if not isinstance(cfg, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'; see docs/scaling.md")
    return cfg


def _cluster_size(cfg: dict[str, Any]) -> int:
    cluster = cfg.get("cluster") or {}
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def _backend() -> str:
    return keras.backend.backend()


def _check_name(name: str) -> str:
    name = (name or "auto").strip().lower().replace("-", "_")
    if name not in STRATEGIES:
        close = difflib.get_close_matches(name, STRATEGIES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"train.strategy={name!r}: {hint}use one of {', '.join(STRATEGIES)}")
    return name


def _tf_strategy(name: str) -> Any:
    import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

    cfg = tf_config()
    if name == "multi_worker" or (name == "auto" and _cluster_size(cfg) > 1):
        # before anything that initialises the runtime (listing logical devices does)
        if not cfg:
            raise ConfigError("train.strategy=multi_worker needs TF_CONFIG on every machine; set it as in "
                              "docs/scaling.md (or use strategy: mirrored on one machine)")
        try:
            return _nested_reduce(tf.distribute.MultiWorkerMirroredStrategy())
        except RuntimeError as e:  # "Collective ops must be configured at program startup"
            raise ConfigError(f"train.strategy=multi_worker: {e}; create the strategy (kerasclf.train."
                              f"distribute.make_strategy) before any other TensorFlow work in the process") from None
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) < 2:
            return tf.distribute.get_strategy()  # the default: one device, no wrapping
        name = "mirrored"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:  # logical CPUs (tests, or a CPU box split on purpose)
        return tf.distribute.MirroredStrategy(devices=[d.name for d in cpus])
    return tf.distribute.MirroredStrategy()


def _nested_reduce(strategy: Any) -> Any:
    """Let ``strategy.reduce`` take a nest of per-replica values, as MirroredStrategy's does.

    Keras 3's TensorFlow trainer (``_maybe_symbolic_build``, called by every ``fit``) reduces the
    first ``(x, y)`` batch with ``strategy.reduce("MEAN", batch)``; MultiWorkerMirroredStrategy's
    collective reduce only takes a single value and fails with "Attempt to convert a value
    (PerReplica ...) to a Tensor". Reducing leaf by leaf is what the call means. The trainer also
    reduces each scalar metric with ``axis=0``, which a scalar does not have; those are reduced
    across replicas only (``axis=None``), which is the mean Keras wants.
    """
    import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

    original = strategy.reduce

    def leaf(reduce_op: Any, v: Any, axis: Any) -> Any:
        if axis is not None:  # a scalar per replica (a metric) has no axis 0: reduce across replicas
            local = strategy.experimental_local_results(v)
            shape = getattr(local[0], "shape", None) if local else None
            if shape is not None and shape.rank == 0:
                axis = None
        return original(reduce_op, v, axis=axis)

    def reduce(reduce_op: Any, value: Any, axis: Any = None) -> Any:
        return tf.nest.map_structure(lambda v: leaf(reduce_op, v, axis), value)

    strategy.reduce = reduce
    return strategy


def _jax_distribution(name: str) -> Any:
    if name == "multi_worker":
        needed = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                  "KERAS_DISTRIBUTION_PROCESS_ID")
        missing = [v for v in needed if v not in os.environ]
        if missing:
            raise ConfigError(f"train.strategy=multi_worker on the JAX backend needs {', '.join(missing)} "
                              f"(TF_CONFIG is TensorFlow's); set them as in docs/scaling.md")
        keras.distribution.initialize()
    if name == "one_device":
        keras.distribution.set_distribution(None)
        return None
    devices = keras.distribution.list_devices()
    if name == "auto" and len(devices) < 2:
        keras.distribution.set_distribution(None)
        return None
    dist = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(dist)
    return dist


def make_strategy(name: str = "auto") -> Any:
    """The distribution for ``train.strategy`` on the active Keras backend.

    Args:
        name: ``"auto"``, ``"one_device"``, ``"mirrored"`` or ``"multi_worker"`` (see the module
            table).

    Returns:
        On TensorFlow a ``tf.distribute.Strategy`` (enter ``strategy.scope()`` to build and
        compile). On JAX a ``keras.distribution.DataParallel`` that is already set globally with
        ``keras.distribution.set_distribution`` (or ``None`` for one device).

    Raises:
        ConfigError: unknown name, or ``multi_worker`` without its cluster configuration.
        BackendError: the backend has no such strategy (e.g. PyTorch).

    Example:
        >>> s = make_strategy("one_device")  # doctest: +SKIP
        >>> s.num_replicas_in_sync  # doctest: +SKIP
        1
    """
    name = _check_name(name)
    backend = _backend()
    if backend == "tensorflow":
        return _tf_strategy(name)
    if backend == "jax":
        return _jax_distribution(name)
    if name in ("auto", "one_device"):
        return None
    raise BackendError(f"train.strategy={name} is not available on the {backend} backend; set "
                       f"KERAS_BACKEND=tensorflow (tf.distribute) or jax (keras.distribution)")


def num_replicas(strategy: Any) -> int:
    """How many replicas a strategy from :func:`make_strategy` trains on (1 for ``None``).

    Example:
        >>> num_replicas(None)
        1
    """
    if strategy is None:
        return 1
    if hasattr(strategy, "num_replicas_in_sync"):
        return int(strategy.num_replicas_in_sync)
    mesh = getattr(strategy, "device_mesh", None)
    if mesh is not None:
        return int(mesh.shape[0]) if hasattr(mesh, "shape") else len(mesh.devices)
    return 1


def scaled_batch_and_lr(batch_size: int, lr: float, replicas: int) -> tuple[int, float]:
    """Global batch size and learning rate for ``replicas`` replicas (the linear scaling rule).

    Each replica keeps the recipe's ``batch_size``, so the global batch is
    ``batch_size × replicas``; the learning rate grows in proportion (Goyal et al., 2017,
    "Accurate, Large Minibatch SGD"): ``lr × replicas``. Use a few epochs of warm-up
    (``train.schedule.warmup_steps``) when the scaled rate is large. One replica changes nothing.

    Args:
        batch_size: the batch per replica (the recipe's ``data.batch_size``).
        lr: the learning rate tuned for ``batch_size`` on one replica.
        replicas: ``num_replicas_in_sync`` of the strategy.

    Returns:
        ``(global_batch_size, scaled_learning_rate)``.

    Raises:
        ConfigError: on a batch size or replica count below 1 or a non-positive rate.

    Example:
        >>> scaled_batch_and_lr(64, 0.01, 1)
        (64, 0.01)
        >>> scaled_batch_and_lr(64, 0.01, 8)
        (512, 0.08)
    """
    if int(batch_size) < 1 or int(replicas) < 1 or not float(lr) > 0:
        raise ConfigError(f"batch_size={batch_size}, learning_rate={lr}, replicas={replicas}: batch size and "
                          f"replicas must be at least 1 and the learning rate positive")
    return int(batch_size) * int(replicas), float(lr) * int(replicas)


def is_chief() -> bool:
    """Whether this process writes checkpoints, the final model and reports.

    True without a cluster; with ``TF_CONFIG``, true for the ``chief`` task, or for ``worker`` 0
    when the cluster has no ``chief``; on a multi-process JAX run, process 0.

    Example:
        >>> is_chief()  # no TF_CONFIG: a single process is its own chief  # doctest: +SKIP
        True
    """
    cfg = tf_config()
    if cfg:
        task = cfg.get("task") or {}
        kind, index = task.get("type", "worker"), int(task.get("index", 0))
        if kind == "chief":
            return True
        if kind == "worker":
            return index == 0 and "chief" not in (cfg.get("cluster") or {})
        return False  # evaluator, ps
    pid = os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID")
    return pid is None or int(pid) == 0


def chief_path(path: str | os.PathLike) -> Path:
    """Where this process should write ``path``: itself on the chief, a temporary copy elsewhere.

    With ``MultiWorkerMirroredStrategy`` every worker must call ``model.save`` / checkpoint
    (saving may take part in collective ops), but only the chief's file is kept. Non-chief
    workers get ``<tmp>/kerasclf_worker_<type><index>/<name>``; remove it with
    :func:`cleanup_chief_path` afterwards.

    Example:
        >>> chief_path("runs/demo/model.keras").as_posix()  # doctest: +SKIP
        'runs/demo/model.keras'
    """
    path = Path(path)
    if is_chief():
        return path
    tag = _worker_tag()
    # stable across restarts (no pid), so a restarted worker finds what it wrote before
    tmp = Path(tempfile.gettempdir()) / f"kerasclf_worker_{tag}"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / path.name


def _worker_tag() -> str:
    """``<type><index>`` of this worker (``worker1``), from TF_CONFIG or the JAX process id."""
    task = tf_config().get("task") or {}
    return f"{task.get('type', 'worker')}{task.get('index', os.environ.get('KERAS_DISTRIBUTION_PROCESS_ID', 0))}"


def backup_dir(path: str | os.PathLike) -> Path:
    """The ``keras.callbacks.BackupAndRestore`` folder for this process.

    Keras 3's BackupAndRestore writes one weights file per folder, so workers sharing a folder
    would collide; the chief uses ``path`` and every other worker ``<path>_<type><index>``
    (kept, not temporary: a restarted worker resumes from it).

    Example:
        >>> backup_dir("runs/demo/backup").name  # doctest: +SKIP
        'backup'
    """
    path = Path(path)
    if is_chief():
        return path
    return path.with_name(f"{path.name}_{_worker_tag()}")


def cleanup_chief_path(path: str | os.PathLike) -> None:
    """Delete a non-chief's temporary copy made by :func:`chief_path` (no-op on the chief)."""
    if is_chief():
        return
    written = chief_path(path)
    shutil.rmtree(written.parent, ignore_errors=True)


def shard_by_data(dataset: Any) -> Any:
    """Make a ``tf.data.Dataset`` shard by element across workers (``AutoShardPolicy.DATA``).

    kerasclf datasets are built from in-memory lists, not from one file per worker, so the
    default ``FILE`` policy cannot split them; ``DATA`` gives each worker every n-th batch.

    Example:
        >>> ds = shard_by_data(tf.data.Dataset.range(4))  # doctest: +SKIP
    """
    import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def strategy_scope(name: str = "auto") -> Iterator[tuple[Any, int]]:
    """Build and compile inside the strategy's scope: ``with strategy_scope(n) as (strategy, replicas)``.

    On TensorFlow this enters ``strategy.scope()``; ``model.fit`` may run inside or outside it.
    On JAX the ``DataParallel`` distribution is set globally and stays set after the block so that
    ``fit`` shards the batches (call ``keras.distribution.set_distribution(None)`` to drop it).

    Args:
        name: a :data:`STRATEGIES` name (``train.strategy``).

    Yields:
        ``(strategy, replicas)``: the strategy/distribution (``None`` on one JAX device) and the
        number of replicas, for :func:`scaled_batch_and_lr`.

    Example:
        >>> with strategy_scope("auto") as (strategy, replicas):  # doctest: +SKIP
        ...     model = build("simple_cnn", num_classes=10)
        ...     model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    """
    strategy = make_strategy(name)
    replicas = num_replicas(strategy)
    if strategy is not None and hasattr(strategy, "scope") and _backend() == "tensorflow":
        with strategy.scope():
            yield strategy, replicas
    else:
        yield strategy, replicas
