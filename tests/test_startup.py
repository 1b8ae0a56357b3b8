"""A quiet start: no TensorFlow C++ start-up lines from `import kerasclf` or the CLI, unless --verbose."""
import os
import platform
import subprocess
import sys
import textwrap

from kerasclf._startup import _filtered_stderr, is_noise, wants_tf_logs
from kerasclf.testing import run_python

STARTUP_LINES = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
                 "cudart_stub", "Could not find cuda drivers", "I0000 ")


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERASCLF_VERBOSE", "TF_ENABLE_ONEDNN_OPTS")}
    return {**env, **extra}


def _run(*args, **env):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=_env(**env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# what the console script runs, plus a look at the environment it leaves
CLI = textwrap.dedent("""
    import os, sys
    from kerasclf.cli import main
    code = main(["zoo", "simple_cnn"])  # builds a model: TensorFlow fully starts
    print("ONEDNN", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
    sys.exit(code)
""")


def test_cli_stderr_has_no_tensorflow_startup_lines():
    proc = _run("-c", CLI)
    assert "1,777,636" in proc.stdout
    assert not [ln for ln in proc.stderr.splitlines() if any(s in ln for s in STARTUP_LINES)], proc.stderr
    assert proc.stderr.strip() == ""
    assert "ONEDNN None LEVEL 2" in proc.stdout  # oneDNN (numerics) untouched; only the log level set


def test_verbose_flag_shows_them():
    proc = _run("-m", "kerasclf.cli", "--verbose", "zoo", "simple_cnn", "--no-params")
    assert "simple_cnn" in proc.stdout
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        # TensorFlow 2.21 on x86-64 Linux always announces oneDNN (and absl's pre-init notice)
        assert "oneDNN custom operations are on" in proc.stderr


def test_filter_keeps_errors_and_python_output(capfd):
    with _filtered_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796160525.422014    5031 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1796160525.5    5031 cuda_dnn.cc:8579] Unable to register cuDNN factory\n")
        print("a python warning", file=sys.stderr)
    assert sorted(capfd.readouterr().err.splitlines()) == [
        "E0000 00:00:1796160525.5    5031 cuda_dnn.cc:8579] Unable to register cuDNN factory", "a python warning"]


def test_noise_and_verbose_rules():
    assert is_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert is_noise("I0000 00:00:1796160525.422474    5031 cudart_stub.cc:31] Could not find cuda drivers")
    assert is_noise("2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not")
    cuinit = "E0000 00:00:1796160538.497075    5185 cuda_platform.cc:52] failed call to cuInit: INTERNAL"
    assert is_noise(cuinit, no_driver=True) and not is_noise(cuinit)  # a GPU machine keeps the error
    assert not is_noise("Traceback (most recent call last):")
    assert wants_tf_logs(["/venv/bin/kerasclf", "--verbose", "zoo"], {})
    assert not wants_tf_logs(["/venv/bin/kerasclf", "demo", "--verbose", "2"], {})  # Keras progress, not logs
    assert not wants_tf_logs(["train.py", "--verbose"], {})  # someone else's program
    assert wants_tf_logs(["train.py"], {"KERASCLF_VERBOSE": "1"})
    assert not wants_tf_logs(["train.py"], {"KERASCLF_VERBOSE": "0"})


def test_a_test_subprocess_prints_no_startup_lines():
    """What tests spawn (kerasclf.testing.run_python / run_apart) imports TensorFlow as quietly as the CLI."""
    proc = run_python("import tensorflow as tf, keras\n"
                      "print(float(tf.reduce_sum(keras.ops.ones((2, 2)))))")
    assert proc.returncode == 0 and proc.stdout.strip() == "4.0", proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if any(s in ln for s in STARTUP_LINES)], proc.stderr
    assert proc.stderr.strip() == ""
