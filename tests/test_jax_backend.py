"""The zoo and the training loop run on the JAX backend, with TensorFlow made unimportable.

Runs in a subprocess: the Keras backend is fixed when Keras is first imported. Skips where JAX is
not installed (``pip install -e .[jax]``).
"""
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kerasclf.testing import quiet_env

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.extras,  # the [jax] extra; tests/test_extras_optional.py reruns this without it
              pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                 reason="jax is not installed (pip install -e .[jax])")]

SCRIPT = textwrap.dedent("""
    import json, sys
    class NoTensorFlow:                       # as on a JAX-only GPU machine: importing TF fails
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tf_keras"):
                raise ImportError(f"No module named {name!r} (hidden by the test)")

    sys.meta_path.insert(0, NoTensorFlow())
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from kerasclf.train.speed import apply_speed_settings
    from kerasclf.train.distribute import strategy_scope
    from kerasclf.zoo import simple_cnn
    from types import SimpleNamespace

    keras.utils.set_random_seed(0)
    chosen = apply_speed_settings(SimpleNamespace(mixed_precision="auto", jit_compile="auto",
                                                  steps_per_execution=1))
    rng = np.random.RandomState(0)
    # three separable classes (dark / mid / bright noise images), 24x24 RGB in 0..255
    y = rng.randint(0, 3, 192).astype("int32")
    x = rng.uniform(0, 60, (192, 24, 24, 3)).astype("float32") + 90 * y[:, None, None, None]
    with strategy_scope("auto") as (strategy, replicas):
        model = simple_cnn(3, input_shape=(24, 24, 3))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=chosen["jit_compile"])
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0).history["loss"]
    before, after = history[0], history[-1]
    assert "tensorflow" not in sys.modules
    print(json.dumps({"backend": keras.backend.backend(), "before": before, "after": after,
                      "replicas": replicas, "chosen": chosen}))
""")


def test_simple_cnn_trains_on_jax_without_tensorflow(tmp_path):
    script = tmp_path / "jax_train.py"
    script.write_text(SCRIPT)
    # not run_python: its quiet TensorFlow import is what this child must do without
    env = quiet_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=2")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    assert res["backend"] == "jax" and res["replicas"] == 1
    assert res["chosen"]["backend"] == "jax"
    assert res["after"] < res["before"] * 0.7, res  # training loss, first epoch vs fourth
