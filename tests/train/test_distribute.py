"""Distribution: strategy names, the scaling rule, chief-only writes, and real multi-replica runs.

The multi-replica runs happen in subprocesses: logical CPU devices and the collective ops of
``MultiWorkerMirroredStrategy`` must be configured before TensorFlow initialises, which this test
process has long done.
"""
import json
import os
import socket
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasclf.zoo  # noqa: F401  (registers the custom layers the saved model uses)
from kerasclf.errors import ConfigError
from kerasclf.train import distribute as D
from kerasclf.testing import python_command, run_python

REPO = Path(__file__).resolve().parents[2]

# digits (real 8x8 scans) upsampled to 24x24 RGB: the smallest input simple_cnn's valid convs accept
DATA = """
import numpy as np
from kerasclf.data.sources import digits
spec = digits()
x = np.repeat(np.repeat(spec.images, 3, axis=1), 3, axis=2).repeat(3, axis=3).astype("float32")
y = spec.labels.astype("int32")
rng = np.random.RandomState(0); order = rng.permutation(len(y)); x, y = x[order], y[order]
x_tr, y_tr, x_te, y_te = x[:1400], y[:1400], x[1400:], y[1400:]
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="",
               TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="2", PYTHONPATH=str(REPO))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no result line in output:\n{stdout[-2000:]}"
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- fast, in-process


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ConfigError, match="did you mean mirrored"):
        D.make_strategy("mirored")


def test_multi_worker_without_tf_config_says_how(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        D.make_strategy("multi_worker")


def test_bad_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        D.tf_config()


def test_scaling_rule():
    assert D.scaled_batch_and_lr(32, 1e-3, 1) == (32, 1e-3)
    batch, lr = D.scaled_batch_and_lr(32, 1e-3, 4)
    assert batch == 128 and lr == pytest.approx(4e-3)
    with pytest.raises(ConfigError):
        D.scaled_batch_and_lr(32, 1e-3, 0)


@pytest.mark.parametrize("cluster, task, chief", [
    (None, None, True),
    ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["a:1"], "worker": ["b:2"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["a:1"], "worker": ["b:2"]}, {"type": "chief", "index": 0}, True),
])
def test_is_chief_and_chief_path(monkeypatch, tmp_path, cluster, task, chief):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert D.is_chief() is chief
    target = tmp_path / "run" / "model.keras"
    written = D.chief_path(target)
    assert (written == target) is chief
    assert written.name == "model.keras"
    assert (D.backup_dir(tmp_path / "backup") == tmp_path / "backup") is chief
    D.cleanup_chief_path(target)
    if not chief:
        assert not written.parent.exists()


def test_one_device_scope_builds_and_compiles():
    with D.strategy_scope("one_device") as (strategy, replicas):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="adam", loss="mse")
    assert replicas == 1
    assert strategy.num_replicas_in_sync == 1


# ----------------------------------------------------------------------------- subprocess runs

MIRRORED = DATA + """
import json, time, keras, tensorflow as tf
from kerasclf.train.distribute import strategy_scope, scaled_batch_and_lr
from kerasclf.zoo import simple_cnn
out = {}
for name in ("one_device", "mirrored"):
    keras.utils.set_random_seed(0)
    with strategy_scope(name) as (strategy, replicas):
        # same global batch on both: 32 per replica on one device, 16 per replica on two; the
        # learning rate follows the linear scaling rule (5e-4 per 16 images -> 1e-3 per 32)
        batch, lr = scaled_batch_and_lr(32 // replicas, 1e-3 / 32 * (32 // replicas), replicas)
        model = simple_cnn(10, input_shape=(24, 24, 3))
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices((x_tr[:960], y_tr[:960])).shuffle(960, seed=0).batch(batch)
    t = time.time()
    model.fit(ds, epochs=2, verbose=0)
    acc = model.evaluate(x_te, y_te, batch_size=128, verbose=0)[1]
    out[name] = {"replicas": replicas, "batch": batch, "acc": float(acc), "s": round(time.time() - t, 1),
                 "devices": list(getattr(strategy.extended, "worker_devices", []))}
print(json.dumps(out))
"""


@pytest.mark.slow  # 2 epochs of digits twice in a subprocess (~35 s); train(strategy=...) is in the fast suite
def test_mirrored_two_logical_cpus_matches_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text("import tensorflow as tf\n"
                      "cpu = tf.config.list_physical_devices('CPU')[0]\n"
                      "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
                      + MIRRORED)
    proc = run_python(script, env=_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _last_json(proc.stdout)
    one, two = res["one_device"], res["mirrored"]
    assert one["replicas"] == 1 and two["replicas"] == 2 and one["batch"] == two["batch"] == 32
    assert len(two["devices"]) == 2
    # 2 epochs of real digits: both well above chance (0.1) and within the same band
    assert one["acc"] > 0.6 and two["acc"] > 0.6, res
    assert abs(one["acc"] - two["acc"]) < 0.2, res


WORKER = DATA + """
import json, os, sys, time
import tensorflow as tf
from kerasclf.train.distribute import make_strategy, num_replicas, scaled_batch_and_lr, shard_by_data
from kerasclf.train.distribute import backup_dir, chief_path, cleanup_chief_path, is_chief
strategy = make_strategy("multi_worker")          # first TensorFlow work of the process
import keras
from kerasclf.zoo import simple_cnn
keras.utils.set_random_seed(0)
replicas = num_replicas(strategy)
batch, lr = scaled_batch_and_lr(32, 1e-3, replicas)
with strategy.scope():
    model = simple_cnn(10, input_shape=(24, 24, 3))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
ds = shard_by_data(tf.data.Dataset.from_tensor_slices((x_tr[:512], y_tr[:512])).batch(batch).repeat())
backup = str(backup_dir(os.path.join(sys.argv[1], "backup")))
h = model.fit(ds, epochs=2, steps_per_epoch=4, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup)])
target = os.path.join(sys.argv[1], "model.keras")
path = chief_path(target)
model.save(path)                                  # every worker saves; only the chief's copy is kept
cleanup_chief_path(target)
print(json.dumps({"chief": is_chief(), "replicas": replicas, "loss": h.history["loss"], "path": str(path)}))
"""


@pytest.mark.slow  # two TensorFlow processes talking over localhost (~15 s)
def test_multi_worker_two_processes_on_localhost(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for i in range(2):
            cfg = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            procs.append(subprocess.Popen(python_command(script, str(tmp_path)),
                                          env=_env(TF_CONFIG=cfg, TF_NUM_INTRAOP_THREADS="1"),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief, worker = (_last_json(o) for o, _ in outs)
    assert chief["chief"] and not worker["chief"]
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["loss"] == pytest.approx(worker["loss"], rel=1e-4)  # synchronous: same loss on both
    saved = tmp_path / "model.keras"
    assert chief["path"] == str(saved) and saved.is_file()
    assert not Path(worker["path"]).exists()  # the worker's temporary copy was removed



    model = keras.saving.load_model(saved)
    probs = model.predict(np.zeros((2, 24, 24, 3), "float32"), verbose=0)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
