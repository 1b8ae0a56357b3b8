"""Progress bars: one place decides whether they are shown.

A bar (tqdm: count, rate, ETA) goes to stderr only when stderr is a terminal; ``kerasclf
--quiet ...`` (:func:`set_quiet`) or ``KERASCLF_QUIET=1`` silences every bar. Feature extraction,
``check``, ``predict`` on a folder, ``analyze``, ``cluster`` and ``export`` all use :func:`progress`,
so a log file or a pipe never fills with carriage returns. Training asks :func:`fit_verbose`: Keras's
bar (``train.verbose: 1``, on stdout) becomes one line per epoch where stdout is not a terminal.

Example:
    >>> from kerasclf._progress import progress
    >>> with progress(total=3, desc="images") as bar:   # drawn only on a terminal
    ...     for _ in range(3):
    ...         _ = bar.update(1)
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

__all__ = ["progress", "set_quiet", "shown", "fit_verbose"]

_state = {"quiet": False}


def set_quiet(quiet: bool = True) -> None:
    """Silence (or allow again) every progress bar of this process (the CLI's ``--quiet``).

    Example:
        >>> set_quiet(True); shown()
        False
        >>> set_quiet(False)
    """
    _state["quiet"] = bool(quiet)


def shown() -> bool:
    """Whether a bar would be drawn now: stderr is a terminal and nothing asked for quiet."""
    return _terminal(sys.stderr) and not _quiet()


def _quiet() -> bool:
    return _state["quiet"] or os.environ.get("KERASCLF_QUIET", "").lower() in ("1", "true", "yes")


def _terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def fit_verbose(verbose: int) -> int:
    """The ``verbose`` to give Keras's ``fit``: its progress bar (1) only when stdout is a terminal and
    nothing asked for quiet, else one line per epoch (2; Keras redraws its bar with carriage returns
    even in a log file); 0 and 2 stay as they are.

    Example:
        >>> import io, contextlib
        >>> with contextlib.redirect_stdout(io.StringIO()):   # a pipe or a log file
        ...     fit_verbose(1)
        2
    """
    if verbose != 1:
        return verbose
    return 1 if _terminal(sys.stdout) and not _quiet() else 2


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "img", show: bool = True) -> Any:
    """A tqdm bar with count, rate and ETA on stderr; a silent counter when :func:`shown` is false.

    Args:
        iterable: what to wrap (or ``None`` and call ``update(n)`` yourself).
        total: how many units there will be (for the ETA).
        desc: a short label, e.g. ``"features"``.
        unit: what is counted (``img``, ``step``, ``K``).
        show: ``False`` silences this bar whatever the terminal says (a caller's ``verbose=0``).

    Example:
        >>> [x for x in progress(range(4), desc="demo")]
        [0, 1, 2, 3]
    """
    return tqdm(iterable, total=total, desc=desc or None, unit=unit, file=sys.stderr,
                disable=not (show and shown()), leave=False, dynamic_ncols=True, smoothing=0.1)
