"""Speed settings: mixed-precision choice per device, jit / steps-per-execution parsing, the policy."""
from types import SimpleNamespace

import keras
import pytest
import tensorflow as tf

from kerasclf.errors import ConfigError
from kerasclf.train import speed
from kerasclf.train.speed import (
    apply_speed_settings,
    choose_mixed_precision,
    device_info,
    resolve_jit,
    resolve_steps_per_execution,
)
from kerasclf.zoo import simple_cnn

GPU_AMPERE = {"platform": "gpu", "compute_capability": (8, 0), "name": "A100"}
GPU_HOPPER = {"platform": "gpu", "compute_capability": (9, 0), "name": "H100"}
GPU_VOLTA = {"platform": "gpu", "compute_capability": (7, 0), "name": "V100"}
CPU = {"platform": "cpu", "compute_capability": None, "name": "cpu", "cpu_bf16": False, "cpu_amx": False}
CPU_AMX = {"platform": "cpu", "compute_capability": None, "name": "cpu", "cpu_bf16": True, "cpu_amx": True}
#: AVX-512 BF16 without AMX: bf16 measured slower there (inference 0.90x, training 0.63x-1.00x)
CPU_BF16_NO_AMX = {"platform": "cpu", "compute_capability": None, "name": "cpu", "cpu_bf16": True, "cpu_amx": False}


@pytest.mark.parametrize("device, expected", [
    (GPU_AMPERE, "mixed_bfloat16"), (GPU_HOPPER, "mixed_bfloat16"), (GPU_VOLTA, "mixed_float16"),
    ({"platform": "gpu", "compute_capability": None}, "mixed_float16"),
    ({"platform": "tpu"}, "mixed_bfloat16"), (CPU, None), (CPU_AMX, "mixed_bfloat16"), (CPU_BF16_NO_AMX, None),
])
def test_auto_mixed_precision_per_device(device, expected, monkeypatch):
    monkeypatch.delenv("KERASCLF_CPU_BF16", raising=False)
    assert choose_mixed_precision("auto", device=device) == expected


def test_cpu_depthwise_models_stay_float32(monkeypatch):
    monkeypatch.delenv("KERASCLF_CPU_BF16", raising=False)
    assert choose_mixed_precision("auto", device=CPU_AMX, model="simple_cnn", backend="tensorflow") == "mixed_bfloat16"
    assert choose_mixed_precision("auto", device=CPU_AMX, model="simple_cnn", backend="jax") is None
    assert choose_mixed_precision("auto", device=CPU_AMX, model="efficientnet_b0_head") is None
    assert choose_mixed_precision("auto", device=CPU_AMX, model="MobileNet") is None
    assert choose_mixed_precision("auto", device=GPU_HOPPER, model="MobileNet") == "mixed_bfloat16"
    dw = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.DepthwiseConv2D(3)])
    assert choose_mixed_precision("auto", device=CPU_AMX, model=dw) is None


def test_cpu_bf16_override(monkeypatch):
    monkeypatch.setenv("KERASCLF_CPU_BF16", "1")
    assert choose_mixed_precision("auto", device=CPU) == "mixed_bfloat16"
    monkeypatch.setenv("KERASCLF_CPU_BF16", "0")
    assert choose_mixed_precision("auto", device=CPU_AMX) is None


@pytest.mark.parametrize("value", [None, "none", "float32", False, ""])
def test_mixed_precision_off(value):
    assert choose_mixed_precision(value, device=GPU_HOPPER) is None


def test_explicit_policy_wins_and_unknown_raises():
    assert choose_mixed_precision("mixed_float16", device=GPU_HOPPER) == "mixed_float16"
    with pytest.raises(ConfigError, match="mixed_precision"):
        choose_mixed_precision("bf16")


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("no", False),
    (None, False), (1, True), (0, False),
])
def test_resolve_jit(value, expected):
    assert resolve_jit(value) == expected


def test_resolve_jit_auto_per_device():
    assert resolve_jit("auto", device=CPU, backend="tensorflow") is False  # XLA measured slower on CPU
    assert resolve_jit("AUTO", device=GPU_HOPPER, backend="tensorflow") == "auto"
    assert resolve_jit("auto", device=CPU, backend="jax") == "auto"  # JAX always jits


def test_resolve_jit_rejects_garbage():
    with pytest.raises(ConfigError, match="jit_compile"):
        resolve_jit("fast")


def test_steps_per_execution():
    assert resolve_steps_per_execution(8) == 8
    assert resolve_steps_per_execution("4") == 4
    assert resolve_steps_per_execution("auto", device=CPU) == 8
    assert resolve_steps_per_execution("auto", device=GPU_HOPPER) == 8
    for bad in (0, -1, True, "x", 2.5):
        with pytest.raises(ConfigError, match="steps_per_execution"):
            resolve_steps_per_execution(bad)


def test_device_info_on_this_machine():
    """What TensorFlow itself lists decides the answer."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares with TensorFlow's own device list")
    info = device_info()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        assert info["platform"] == "gpu" and info["count"] == len(gpus)
        assert info["compute_capability"] == tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability")
    elif tf.config.list_physical_devices("TPU"):
        assert info["platform"] == "tpu"
    else:
        assert info == {"platform": "cpu", "name": "cpu", "compute_capability": None, "count": 1}


def test_device_info_reads_gpu_details_and_survives_a_broken_driver(monkeypatch):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("patches TensorFlow's device list")
    fake = [SimpleNamespace(name="/physical_device:GPU:0"), SimpleNamespace(name="/physical_device:GPU:1")]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda dev: {"device_name": "NVIDIA H200", "compute_capability": (9, 0)})
    try:
        device_info.cache_clear()  # the answer is cached per process
        assert device_info() == {"platform": "gpu", "name": "NVIDIA H200", "compute_capability": (9, 0),
                                 "count": 2}

        def broken(kind=None):
            raise RuntimeError("CUDA driver version is insufficient")

        monkeypatch.setattr(tf.config, "list_physical_devices", broken)
        device_info.cache_clear()
        assert device_info()["platform"] == "cpu"
    finally:
        monkeypatch.undo()
        device_info.cache_clear()  # later tests see this machine again


def test_apply_sets_policy_and_keeps_output_float32():
    cfg = SimpleNamespace(mixed_precision="mixed_bfloat16", jit_compile="auto", steps_per_execution=2)
    try:
        chosen = apply_speed_settings(cfg)
        assert chosen["mixed_precision"] == "mixed_bfloat16"
        assert chosen["jit_compile"] in (False, "auto") and chosen["steps_per_execution"] == 2
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        model = simple_cnn(3, input_shape=(32, 32, 3))
        assert model.get_layer("conv1").compute_dtype == "bfloat16"
        assert model.get_layer("conv1").variable_dtype == "float32"
        assert model.get_layer("predictions").compute_dtype == "float32"
        assert model.output.dtype == "float32"
        # off again: the policy is reset, not left over from the previous run
        chosen = apply_speed_settings(SimpleNamespace(mixed_precision=None, jit_compile=False,
                                                      steps_per_execution=1))
        assert chosen["mixed_precision"] is None
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_host_profile_decides_what_auto_turns_on(monkeypatch, tmp_path):
    """Only settings measured faster on this host: a profile overrides the table both ways."""

    monkeypatch.delenv("KERASCLF_CPU_BF16", raising=False)
    slower = {"mixed_bfloat16": {"conv": 0.63, "depthwise": 0.8}, "steps_per_execution": {"8": 0.9}}
    faster = {"mixed_bfloat16": {"conv": 1.3}, "steps_per_execution": {"8": 1.2}}
    noise = {"mixed_bfloat16": {"conv": 1.01}}
    kw = dict(model="simple_cnn", backend="tensorflow")
    assert choose_mixed_precision("auto", device=CPU_AMX, profile=slower, **kw) is None
    assert choose_mixed_precision("auto", device=CPU_BF16_NO_AMX, profile=faster, **kw) == "mixed_bfloat16"
    assert choose_mixed_precision("auto", device=CPU_AMX, profile=noise, **kw) == "mixed_bfloat16"  # table decides
    assert choose_mixed_precision("auto", device=CPU_BF16_NO_AMX, profile=noise, **kw) is None
    assert choose_mixed_precision("auto", device=CPU_AMX, model="MobileNet", backend="tensorflow",
                                  profile=faster) is None  # conv measured, depthwise not: table
    assert choose_mixed_precision("auto", device=GPU_HOPPER, profile=slower) == "mixed_bfloat16"  # CPU profile only
    assert resolve_steps_per_execution("auto", profile=slower) == 1
    assert resolve_steps_per_execution("auto", profile=faster) == 8
    assert resolve_steps_per_execution(4, profile=slower) == 4  # an explicit value is kept

    monkeypatch.setenv("KERASCLF_SPEED_PROFILE", str(tmp_path / "p.json"))
    assert speed.host_profile() is None
    speed.save_host_profile(slower)
    speed.save_host_profile({"mixed_bfloat16": {"conv": 0.7}})  # merged, newest wins
    got = speed.host_profile()
    assert got["mixed_bfloat16"] == {"conv": 0.7, "depthwise": 0.8} and got["steps_per_execution"] == {"8": 0.9}
    (tmp_path / "p.json").write_text('{"host": "another", "mixed_bfloat16": {"conv": 9}}')
    assert speed.host_profile() is None  # another host's measurements do not apply here


@pytest.mark.parametrize("text", ['{"host": "x", "mixed_bfloat16": {"conv"', "[1, 2]",
                                  '{"steps_per_execution": {"8": "fast"}}'])
def test_a_corrupt_host_profile_warns_once_naming_the_file_then_falls_back(monkeypatch, tmp_path, capsys, text):
    path = tmp_path / "p.json"
    path.write_text(text)
    monkeypatch.setenv("KERASCLF_SPEED_PROFILE", str(path))
    monkeypatch.setattr(speed, "_WARNED_PROFILES", set())
    assert speed.host_profile() is None and speed.host_profile() is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "delete the file or rerun" in err[0], err
    assert resolve_steps_per_execution("auto", profile=speed.host_profile()) == 8  # the table's choice
