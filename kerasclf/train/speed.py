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
                     CPU with AMX:                    img/s, inference 970 → 3,100 img/s (batch
                     ``mixed_bfloat16``, except for   128). Depthwise convolutions are slower in
                     depthwise-conv models            bf16 there (MobileNet 0.25: training 101 →
                     (MobileNet, EfficientNet):       80 img/s). With AVX-512 BF16 but no AMX
                     ``None``; other CPUs (AVX-512    (2-core AMD/Intel hosts) bf16 measured slower
                     BF16 without AMX included):      for inference and no faster for training:
                     ``None``                         float32 there.
jit_compile (XLA)    TensorFlow on CPU: ``False``;    XLA's CPU convolutions: training 264 → 45
                     elsewhere ``"auto"`` (Keras      img/s float32 and 480 → 25 img/s bf16;
                     uses XLA when every layer        inference bf16 3,100 → 890 img/s. On GPUs
                     supports it)                     and on JAX (which always compiles) XLA is the
                                                      fast path.
steps_per_execution  8                                bf16 training 380 → 480 img/s; float32
                                                      unchanged (280 vs 276); on accelerators it
                                                      hides the host round-trip per step.
===================  ===============================  =============================================

**Measured on this host wins.** The table is what measured faster on the hosts above; a host
profile (:func:`host_profile`, written by ``python benchmarks/train.py --save-profile``, which
times each setting alone against plain Keras in one process) overrides it for the host it was
measured on: ``auto`` then turns a setting on only where the profile measured it faster there
(by more than the run's own noise), and off where it measured slower.

Example:
    >>> from kerasclf.train.speed import choose_mixed_precision, resolve_jit
    >>> choose_mixed_precision(None), choose_mixed_precision("mixed_float16")
    (None, 'mixed_float16')
    >>> resolve_jit("false"), resolve_jit("auto", device={"platform": "gpu"}, backend="jax")
    (False, 'auto')
"""
from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

import keras

from kerasclf.errors import ConfigError

__all__ = [
    "POLICIES", "CPU_BF16_SLOW", "device_info", "cpu_has_bf16", "cpu_has_amx", "choose_mixed_precision",
    "resolve_jit", "resolve_steps_per_execution", "apply_speed_settings", "host_key", "host_profile",
    "profile_path", "save_host_profile",
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
                           model: Any = None, backend: str | None = None,
                           profile: dict[str, Any] | None = None) -> str | None:
    """The mixed-precision policy to use: ``"mixed_bfloat16"``, ``"mixed_float16"`` or ``None``.

    Args:
        requested: ``"auto"`` (choose for the device), a policy name from :data:`POLICIES`, or
            ``None`` / ``"float32"`` / ``"none"`` for full precision.
        device: a :func:`device_info` dict (default: the current device); tests pass one.
        model: the zoo model or backbone name (``"efficientnet_b0_head"``, ``"MobileNet"``) or a
            built ``keras.Model``; on a CPU, models built on depthwise convolutions stay float32.
        backend: the Keras backend (default: the active one). CPU bf16 is a TensorFlow (oneDNN)
            gain only: XLA's CPU bf16 (JAX) measured slower than float32.
        profile: this host's measurements (:func:`host_profile`; default: none, tests pass one);
            on a CPU a measured verdict for the model's kind (conv / depthwise) decides.

    Returns:
        The policy name, or ``None`` for float32. ``"auto"`` gives ``mixed_bfloat16`` on GPUs of
        compute capability 8 or more and on TPUs, ``mixed_float16`` on older GPUs,
        ``mixed_bfloat16`` on CPUs with AMX (:func:`cpu_has_amx`) for models with ordinary
        convolutions (where it measured faster) and ``None`` on other CPUs (AVX-512 BF16
        without AMX measured slower), for depthwise-convolution models (:data:`CPU_BF16_SLOW`;
        slower in bf16 on the CPU) and on the JAX backend's CPU; a host ``profile`` that
        measured bf16 for this kind of model decides instead. ``KERASCLF_CPU_BF16=0`` / ``1``
        overrides the CPU choice.

    Raises:
        ConfigError: on an unknown policy name.

    Example:
        >>> choose_mixed_precision("auto", device={"platform": "gpu", "compute_capability": (9, 0)})
        'mixed_bfloat16'
        >>> choose_mixed_precision("auto", device={"platform": "gpu", "compute_capability": (7, 0)})
        'mixed_float16'
        >>> choose_mixed_precision("auto", device={"platform": "cpu", "cpu_bf16": True, "cpu_amx": False})
        >>> choose_mixed_precision("auto", device={"platform": "cpu", "cpu_amx": False}, model="simple_cnn",
        ...                        backend="tensorflow", profile={"mixed_bfloat16": {"conv": 1.3}})
        'mixed_bfloat16'
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
    if backend is None:
        backend = keras.backend.backend()
    if backend != "tensorflow":
        return None
    measured = _measured(profile, "mixed_bfloat16", "depthwise" if _depthwise(model) else "conv")
    if measured is not None:  # this host's own measurement wins over the table
        return "mixed_bfloat16" if measured else None
    if _depthwise(model):
        return None
    return "mixed_bfloat16" if dev.get("cpu_amx", cpu_has_amx()) else None


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_amx() -> bool:
    """Whether the CPU has Intel AMX tiles for bf16 (``amx_bf16`` in /proc/cpuinfo): the only
    CPUs where bf16 training and inference measured faster than float32.

    Example:
        >>> isinstance(cpu_has_amx(), bool)
        True
    """
    return "amx_bf16" in _cpu_flags()


#: how much faster than plain Keras a setting must measure on this host to be turned on, and how
#: much slower to be turned off (a host profile's ratios; between the two the table decides)
PROFILE_FASTER, PROFILE_SLOWER = 1.05, 0.97


def host_key() -> str:
    """A short id of this host's speed-relevant facts: CPU model and SIMD flags, cores, TF version.

    Example:
        >>> len(host_key())
        12
    """
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    flags = sorted(f for f in _cpu_flags() if f.startswith(("amx", "avx512", "avx2", "fma")))
    try:
        tf_version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:  # TensorFlow is optional on JAX
        tf_version = ""
    text = "|".join([platform.machine(), model, " ".join(flags), str(os.cpu_count()), tf_version])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def profile_path() -> Path:
    """Where this host's profile lives: ``$KERASCLF_SPEED_PROFILE`` or ``~/.cache/kerasclf/speed/<host_key>.json``."""
    env = os.environ.get("KERASCLF_SPEED_PROFILE")
    return Path(env) if env else Path.home() / ".cache" / "kerasclf" / "speed" / f"{host_key()}.json"


def host_profile() -> dict[str, Any] | None:
    """This host's measured speed-ups of each setting over plain Keras, or ``None`` if never measured.

    ``{"host": key, "mixed_bfloat16": {"conv": ratio, "depthwise": ratio},
    "steps_per_execution": {"8": ratio}, ...}``; a profile of another host (its ``host`` key
    differs) is ignored. A corrupt file (not JSON, or not that shape) is ignored too, with one
    warning line on stderr per file naming it and the fix.
    """
    path = profile_path()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        problem = _profile_problem(data)
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        _warn_corrupt_profile(path, problem)
        return None
    return data if data.get("host") == host_key() else None


_WARNED_PROFILES: set[str] = set()


def _profile_problem(data: Any) -> str | None:
    """What is wrong with a parsed profile (``None`` when it has the shape :func:`save_host_profile` writes)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    for setting, kinds in data.items():
        if setting == "host":
            continue
        if not isinstance(kinds, dict) or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) for r in kinds.values()):
            return f"'{setting}' is not a map of kind -> speed ratio"
    return None


def _warn_corrupt_profile(path: Path, problem: str) -> None:
    """One stderr line per file and process: the profile is ignored, and how to fix it."""
    if str(path) in _WARNED_PROFILES:
        return
    _WARNED_PROFILES.add(str(path))
    print(f"warning: speed profile {path} is unreadable ({problem}); ignoring it, so 'auto' uses the built-in "
          f"table; delete the file or rerun `python benchmarks/train.py --save-profile`", file=sys.stderr)


def save_host_profile(measured: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write ``measured`` (setting -> {kind: ratio}) as this host's profile, merged with what is there.

    Example:
        >>> save_host_profile({"mixed_bfloat16": {"conv": 0.8}}, "/tmp/p.json")   # doctest: +SKIP
    """
    path = Path(path) if path else profile_path()
    old = host_profile() if path == profile_path() else None
    data = {**(old or {}), "host": host_key()}
    for setting, kinds in measured.items():
        data[setting] = {**data.get(setting, {}), **kinds}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def _measured(profile: dict[str, Any] | None, setting: str, kind: str) -> bool | None:
    """True / False when ``profile`` measured ``setting`` faster / slower for ``kind``; else None."""
    ratio = ((profile or {}).get(setting) or {}).get(kind)
    if ratio is None:
        return None
    if ratio >= PROFILE_FASTER:
        return True
    return False if ratio <= PROFILE_SLOWER else None


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 instructions (Intel AMX or AVX-512 BF16; read from /proc/cpuinfo).

    Having them is not enough for ``auto``: with AVX-512 BF16 alone bf16 measured slower than
    float32 (see :func:`cpu_has_amx`).

    Example:
        >>> isinstance(cpu_has_bf16(), bool)
        True
    """
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


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


def resolve_steps_per_execution(requested: Any = "auto", *, device: dict[str, Any] | None = None,
                                profile: dict[str, Any] | None = None) -> int:
    """Normalise ``steps_per_execution``: ``"auto"`` is 8 (measured faster or equal everywhere),
    or 1 where this host's ``profile`` measured 8 slower than plain Keras.

    Args:
        requested: ``"auto"`` or a positive integer (or its string).
        device: unused today; kept so the choice can become per-device without an API change.
        profile: this host's measurements (:func:`host_profile`).

    Example:
        >>> resolve_steps_per_execution(4), resolve_steps_per_execution("auto")
        (4, 8)
    """
    if isinstance(requested, str) and requested.lower() == "auto":
        return 1 if _measured(profile, "steps_per_execution", "8") is False else 8
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
    profile = host_profile() if dev.get("platform") == "cpu" else None  # what measured faster on this host
    policy = choose_mixed_precision(getattr(train_cfg, "mixed_precision", None), device=dev, model=model,
                                    profile=profile)
    keras.mixed_precision.set_global_policy(policy or "float32")
    return {
        "mixed_precision": policy,
        "jit_compile": resolve_jit(getattr(train_cfg, "jit_compile", "auto"), device=dev),
        "steps_per_execution": resolve_steps_per_execution(getattr(train_cfg, "steps_per_execution", 1), device=dev,
                                                           profile=profile),
        "host_profile": str(profile_path()) if profile else None,
        "device": dev.get("name", "cpu"),
        "backend": keras.backend.backend(),
    }
