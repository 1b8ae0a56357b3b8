"""Import TensorFlow without its C++ start-up lines (unless asked for them).

TensorFlow 2.21 logs through absl while its shared libraries load, before any Python code can
configure logging, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide these lines::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796160525.422014    5031 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796160525.422474    5031 cudart_stub.cc:31] Could not find cuda drivers ...

:func:`import_tensorflow` imports TensorFlow (and Keras) with file descriptor 2 sent to a
temporary file, then writes back every line that is not an absl/TSL *info* or *warning* line or
the absl pre-init notice, so errors and Python warnings raised during the import still show.
It also lists the physical devices there, so CUDA's initialisation logs inside the filter; its
"failed call to cuInit" error is hidden only when TensorFlow has just said the machine has no
CUDA driver (a CPU machine), and shown on a machine where a GPU was expected.
Later TensorFlow logs follow ``TF_CPP_MIN_LOG_LEVEL``, set to ``2`` (errors only) unless the user
set it. ``TF_ENABLE_ONEDNN_OPTS`` is never touched: it changes numerics, not logging.

The lines are shown when ``KERASCLF_VERBOSE=1`` is set, or when the ``kerasclf`` command is
given ``--verbose`` before its subcommand (``kerasclf --verbose zoo``).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["NOISE", "import_tensorflow", "is_noise", "wants_tf_logs"]

#: start-up lines hidden by default: absl's pre-init notice and absl/TSL INFO and WARNING lines.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"         # absl: I0000 00:00:1796160525.4  5031 port.cc:153]
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] \S+:\d+\])"  # TSL: 2025-09-17 14:44:05.1: I x.cc:32]
)

#: with no CUDA driver on the machine (TensorFlow said so above), cuInit's failure is expected, not news.
_NO_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT = re.compile(r"^E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] failed call to cuInit")

_PROGRAMS = ("kerasclf", "kerasclf.exe", "-m")  # "-m": `python -m kerasclf.cli` while it is located


def is_noise(line: str, no_driver: bool = False) -> bool:
    """True for a TensorFlow start-up line that is hidden by default.

    Args:
        line: one line of TensorFlow's start-up output.
        no_driver: TensorFlow reported no CUDA driver, so cuInit's failure is hidden too.

    Example:
        >>> is_noise("I0000 00:00:1796160525.422014    5031 port.cc:153] oneDNN custom operations are on.")
        True
        >>> is_noise("E0000 00:00:1796160525.4    5031 cuda_dnn.cc:8579] Unable to register cuDNN factory")
        False
    """
    return bool(NOISE.match(line) or (no_driver and _CUINIT.match(line)))


def wants_tf_logs(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether TensorFlow's start-up lines should be shown.

    Args:
        argv: the command line (default ``sys.argv``); ``--verbose`` before the subcommand of the
            ``kerasclf`` program counts.
        environ: the environment (default ``os.environ``); ``KERASCLF_VERBOSE`` set to anything but
            ``""``/``"0"`` counts.

    Example:
        >>> wants_tf_logs(["kerasclf", "--verbose", "zoo"], {})
        True
        >>> wants_tf_logs(["kerasclf", "train", "demo", "--verbose", "2"], {})
        False
    """
    environ = os.environ if environ is None else environ
    if environ.get("KERASCLF_VERBOSE", "") not in ("", "0"):
        return True
    argv = sys.argv if argv is None else argv
    if not argv or Path(argv[0]).name not in _PROGRAMS:
        return False
    for token in argv[1:]:
        if token == "--verbose":
            return True
        if not token.startswith("-"):  # the subcommand: later options are its own
            return False
    return False


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Send fd 2 to a temporary file; on exit, write back the lines that are not :data:`NOISE`."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (e.g. pythonw): nothing can be printed anyway
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            no_driver = _NO_DRIVER in text
            kept = [ln for ln in text.splitlines(keepends=True) if not is_noise(ln, no_driver)]
            if kept and sys.stderr is not None:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow(verbose: bool | None = None) -> None:
    """Import TensorFlow and Keras, hiding their start-up lines unless ``verbose``.

    Args:
        verbose: show the lines; ``None`` asks :func:`wants_tf_logs`.
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # e.g. jax: TensorFlow is optional
        import keras  # noqa: F401
        return
    if "tensorflow" in sys.modules:  # already imported by the user: its lines are already out
        import keras  # noqa: F401
        return
    if verbose is None:
        verbose = wants_tf_logs()
    if verbose:
        import keras  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _filtered_stderr():
        import tensorflow as tf
        import keras  # noqa: F401

        tf.config.list_physical_devices()  # cuInit runs (and logs) now, inside the filter
