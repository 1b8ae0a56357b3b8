"""Speed settings chosen by measurement: mixed precision, XLA and steps per execution.

A recipe's ``train.mixed_precision``, ``train.jit_compile`` and ``train.steps_per_execution`` may be
``"auto"``; :func:`apply_speed_settings` turns ``"auto"`` into a concrete choice for the device the
run is on, sets Keras's global dtype policy, and returns what it chose so the run can record it.

Defaults, and the measurements they come from (TensorFlow 2.21 / Keras 3.15 on the 2-core
development CPU, an Intel Xeon with AVX-512 BF16 and AMX, shared with other jobs so ±20 %;
``simple_cnn`` at 32×32, batch 64, images/second, best of rounds after a warm-up; measured by hand,
not yet by a script in benchmarks/; docs/benchmarks.md holds the scripted measurements):

===================  ===============================  =============================================
setting              ``"auto"`` resolves to            why (measured)
===================  ===============================  =============================================
mixed_precision      GPU with compute capability ≥ 8  bf16 has float32's range (no loss scaling) and
                     (A100, H100, L4 …) and TPU:      runs on tensor cores. The ``predictions``
                     ``mixed_bfloat16``; older GPUs   layer (``dtype="float32"``) and the loss stay
                     (V100, T4): ``mixed_float16``;   float32. CPU with AMX: training 280 → 380
                     CPU with AMX / AVX-512 BF16:     img/s, inference 970 → 3,100 img/s (batch
                     ``mixed_bfloat16``, except for   128). Depthwise convolutions are slower in
                     depthwise-conv models            bf16 there (MobileNet 0.25: training 101 →
                     (MobileNet, EfficientNet):       80 img/s), and without AMX / AVX-512 BF16
                     ``None``; other CPUs: ``None``   oneDNN emulates bf16: float32 then.
jit_compile (XLA)    TensorFlow on CPU: ``False``;    XLA's CPU convolutions: training 264 → 45
                     elsewhere ``"auto"`` (Keras      img/s float32 and 480 → 25 img/s bf16;
                     uses XLA when every layer        inference bf16 3,100 → 890 img/s. On GPUs
                     supports it)                     and on JAX (which always compiles) XLA is the
                                                      fast path.
steps_per_execution  8                                bf16 training 380 → 480 img/s; float32
                                                      unchanged (280 vs 276); on accelerators it
                                                      hides the host round-trip per step.
===================  ===============================  =============================================

Example:
    >>> from kerasclf.train.speed import choose_mixed_precision, resolve_jit
    >>> choose_mixed_precision(None), choose_mixed_precision("mixed_float16")
    (None, 'mixed_float16')
    >>> resolve_jit("false"), resolve_jit("auto", device={"platform": "gpu"}, backend="jax")
    (False, 'auto')
"""
from __future__ import annotations

import functools
import os
from typing import Any

import keras

from kerasclf.errors import ConfigError

__all__ = [
    "POLICIES", "CPU_BF16_SLOW", "device_info", "cpu_has_bf16", "choose_mixed_precision", "resolve_jit",
    "resolve_steps_per_execution", "apply_speed_settings",
]

#: The mixed-precision policies a recipe may name (``None`` / ``"float32"`` means off).
POLICIES = ("mixed_bfloat16", "mixed_float16")

_OFF = {None, False, "none", "None", "float32", "off", "false", "no", ""}
_TRUE = {True, "true", "True", "yes", "on", "1", 1}
_FALSE = {False, "false", "False", "no", "off", "0", 0, None, "none"}


@functools.lru_cache(maxsize=None)
def device_info() -> dict[str, Any]:
    """The accelerator Keras will run on: ``{"platform": "gpu"|"tpu"|"cpu", "name", "compute_capability"}``.

    Reads the active backend only (TensorFlow or JAX), never initialises the other one.
    ``compute_capability`` is a ``(major, minor)`` tuple on NVIDIA GPUs, else ``None``.

    Example:
        >>> device_info()["platform"] in ("cpu", "gpu", "tpu")
        True
    """
    backend = keras.backend.backend()
    info: dict[str, Any] = {"platform": "cpu", "name": "cpu", "compute_capability": None, "count": 1}
    try:
        if backend == "tensorflow":
            import tensorflow as tf  # TensorFlow is optional when Keras runs on JAX

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                info.update(platform="gpu", name=details.get("device_name", "gpu"),
                            compute_capability=details.get("compute_capability"), count=len(gpus))
            elif tf.config.list_physical_devices("TPU"):
                info.update(platform="tpu", name="tpu", count=len(tf.config.list_physical_devices("TPU")))
        elif backend == "jax":
            import jax

            dev = jax.devices()[0]
            if dev.platform in ("gpu", "cuda", "rocm"):
                cc = getattr(dev, "compute_capability", None)
                cap = tuple(int(p) for p in str(cc).split(".")[:2]) if cc else None
                info.update(platform="gpu", name=getattr(dev, "device_kind", "gpu"), compute_capability=cap,
                            count=len(jax.devices()))
            elif dev.platform == "tpu":
                info.update(platform="tpu", name=getattr(dev, "device_kind", "tpu"), count=len(jax.devices()))
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                info.update(platform="gpu", name=torch.cuda.get_device_name(0),
                            compute_capability=torch.cuda.get_device_capability(0),
                            count=torch.cuda.device_count())
    except Exception:  # a broken driver must not stop a CPU run
        pass
    return info


#: Backbones built on depthwise convolutions, whose bf16 kernels measured slower than float32 on
#: the CPU (MobileNet alpha 0.25: training 101 → 80 img/s, inference 370 → 270 img/s).
CPU_BF16_SLOW = ("mobilenet", "efficientnet", "nasnet", "convnext", "xception")


def _depthwise(model: Any) -> bool:
    if model is None:
        return False
    if isinstance(model, str):
        return any(tag in model.lower() for tag in CPU_BF16_SLOW)
    layers = getattr(model, "_flatten_layers", None)
    found = layers(include_self=False, recursive=True) if layers else getattr(model, "layers", [])
    return any(type(layer).__name__ in ("DepthwiseConv2D", "SeparableConv2D") for layer in found)


def choose_mixed_precision(requested: str | None = "auto", *, device: dict[str, Any] | None = None,
                           model: Any = None, backend: str | None = None) -> str | None:
    """The mixed-precision policy to use: ``"mixed_bfloat16"``, ``"mixed_float16"`` or ``None``.

    Args:
        requested: ``"auto"`` (choose for the device), a policy name from :data:`POLICIES`, or
            ``None`` / ``"float32"`` / ``"none"`` for full precision.
        device: a :func:`device_info` dict (default: the current device); tests pass one.
        model: the zoo model or backbone name (``"efficientnet_b0_head"``, ``"MobileNet"``) or a
            built ``keras.Model``; on a CPU, models built on depthwise convolutions stay float32.
        backend: the Keras backend (default: the active one). CPU bf16 is a TensorFlow (oneDNN)
            gain only: XLA's CPU bf16 (JAX) measured slower than float32.

    Returns:
        The policy name, or ``None`` for float32. ``"auto"`` gives ``mixed_bfloat16`` on GPUs of
        compute capability 8 or more and on TPUs, ``mixed_float16`` on older GPUs,
        ``mixed_bfloat16`` on CPUs with native bf16 (:func:`cpu_has_bf16`) for models with
        ordinary convolutions (where it measured faster) and ``None`` on other CPUs and for
        depthwise-convolution models (:data:`CPU_BF16_SLOW`; slower in bf16 on the CPU) and
        on the JAX backend's CPU. ``KERASCLF_CPU_BF16=0`` / ``1`` overrides the CPU
        choice.

    Raises:
        ConfigError: on an unknown policy name.

    Example:
        >>> choose_mixed_precision("auto", device={"platform": "gpu", "compute_capability": (9, 0)})
        'mixed_bfloat16'
        >>> choose_mixed_precision("auto", device={"platform": "gpu", "compute_capability": (7, 0)})
        'mixed_float16'
        >>> choose_mixed_precision("auto", device={"platform": "cpu", "cpu_bf16": False})
    """
    if requested in _OFF:
        return None
    if requested in POLICIES:
        return str(requested)
    if requested != "auto":
        raise ConfigError(f"train.mixed_precision={requested!r}: use auto, none, mixed_bfloat16 or mixed_float16")
    dev = device if device is not None else device_info()
    if dev.get("platform") == "tpu":
        return "mixed_bfloat16"
    if dev.get("platform") == "gpu":
        cap = dev.get("compute_capability")
        if cap and tuple(cap)[0] >= 8:
            return "mixed_bfloat16"
        return "mixed_float16"
    override = os.environ.get("KERASCLF_CPU_BF16", "").lower()
    if override in ("0", "false", "no", "1", "true", "yes"):
        return "mixed_bfloat16" if override in ("1", "true", "yes") else None
    if _depthwise(model):
        return None
    if backend is None:
        backend = keras.backend.backend()
    if backend != "tensorflow":
        return None
    return "mixed_bfloat16" if dev.get("cpu_bf16", cpu_has_bf16()) else None


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (Intel AMX or AVX-512 BF16; read from /proc/cpuinfo).

    Only there did bf16 measure faster than float32 (see docs/benchmarks.md); elsewhere
    oneDNN emulates it and it is slower.

    Example:
        >>> isinstance(cpu_has_bf16(), bool)
        True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_jit(requested: Any = "auto", *, device: dict[str, Any] | None = None,
                backend: str | None = None) -> bool | str:
    """Normalise a ``jit_compile`` setting for ``model.compile``.

    Args:
        requested: ``"auto"``, a bool, or a YAML/CLI spelling of one (``"true"``, ``"no"``, ``1`` …).
        device: a :func:`device_info` dict (default: the current device).
        backend: the Keras backend (default: the active one).

    Returns:
        ``True``, ``False`` or ``"auto"``. ``"auto"`` resolves to ``False`` with TensorFlow on a
        CPU (XLA's CPU convolutions trained ``simple_cnn`` about 6× slower than TensorFlow's oneDNN
        kernels, see docs/benchmarks.md) and stays ``"auto"`` elsewhere, where Keras compiles
        with XLA whenever every layer supports it (always on JAX, whose ``False`` means op-by-op).

    Raises:
        ConfigError: on anything else.

    Example:
        >>> resolve_jit(True), resolve_jit("no")
        (True, False)
        >>> resolve_jit("auto", device={"platform": "gpu"}, backend="tensorflow")
        'auto'
        >>> resolve_jit("auto", device={"platform": "cpu"}, backend="tensorflow")
        False
    """
    if isinstance(requested, str) and requested.lower() == "auto":
        dev = device if device is not None else device_info()
        if backend is None:
            backend = keras.backend.backend()
        if backend == "tensorflow" and dev.get("platform") == "cpu":
            return False
        return "auto"
    key = requested.lower() if isinstance(requested, str) else requested
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise ConfigError(f"train.jit_compile={requested!r}: use auto, true or false")


def resolve_steps_per_execution(requested: Any = "auto", *, device: dict[str, Any] | None = None) -> int:
    """Normalise ``steps_per_execution``: ``"auto"`` is 8 (measured faster or equal everywhere).

    Args:
        requested: ``"auto"`` or a positive integer (or its string).
        device: unused today; kept so the choice can become per-device without an API change.

    Example:
        >>> resolve_steps_per_execution(4), resolve_steps_per_execution("auto")
        (4, 8)
    """
    if isinstance(requested, str) and requested.lower() == "auto":
        return 8
    ok = isinstance(requested, int) and not isinstance(requested, bool) or (
        isinstance(requested, str) and requested.strip().isdigit())
    n = int(requested) if ok else 0
    if n < 1:
        raise ConfigError(f"train.steps_per_execution={requested!r}: use auto or a positive integer")
    return n


def apply_speed_settings(train_cfg: Any, *, model: Any = None) -> dict[str, Any]:
    """Resolve a recipe's speed settings and set Keras's global dtype policy.

    Always sets the policy (``"float32"`` when mixed precision is off), so a previous run in the
    same process cannot leak its policy into this one. Build the model *after* calling this.

    Args:
        train_cfg: a :class:`~kerasclf.train.recipe.TrainCfg` (or anything with
            ``mixed_precision``, ``jit_compile`` and ``steps_per_execution`` attributes).
        model: what will be built — the zoo name, or the backbone for ``backbone_head``
            (``recipe.model.options.get("backbone", recipe.model.name)``); used by
            :func:`choose_mixed_precision` on CPUs.

    Returns:
        ``{"mixed_precision", "jit_compile", "steps_per_execution", "device", "backend"}``: the
        concrete values, to pass to ``compile`` and to record in the run's metrics.

    Example:
        >>> from kerasclf.train.recipe import TrainCfg
        >>> s = apply_speed_settings(TrainCfg(mixed_precision=None, jit_compile=False, steps_per_execution=1))
        >>> s["mixed_precision"], s["jit_compile"], s["steps_per_execution"]
        (None, False, 1)
    """
    dev = device_info()
    policy = choose_mixed_precision(getattr(train_cfg, "mixed_precision", None), device=dev, model=model)
    keras.mixed_precision.set_global_policy(policy or "float32")
    return {
        "mixed_precision": policy,
        "jit_compile": resolve_jit(getattr(train_cfg, "jit_compile", "auto"), device=dev),
        "steps_per_execution": resolve_steps_per_execution(getattr(train_cfg, "steps_per_execution", 1), device=dev),
        "device": dev.get("name", "cpu"),
        "backend": keras.backend.backend(),
    }
