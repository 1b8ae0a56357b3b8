"""One way the benchmark scripts time competing runners: each warmed up once, then timed in
alternating rounds so background load on the shared cores hits all of them alike; the best round
of each is kept.
"""
from __future__ import annotations

import time
from typing import Any, Callable


def best_rates(runners: dict[str, Callable[[], Any]], items: int, rounds: int) -> dict[str, float]:
    """Items/s of each runner (a call that processes ``items`` items): one warm-up call each, then
    ``rounds`` rounds calling every runner in turn; each runner's fastest call is kept.

    Example:
        >>> rates = best_rates({"sum": lambda: sum(range(1000))}, items=1000, rounds=3)
        >>> rates["sum"] > 0
        True
    """
    for fn in runners.values():
        fn()
    best = dict.fromkeys(runners, 0.0)
    for _ in range(rounds):
        for name, fn in runners.items():
            t = time.perf_counter()
            fn()
            best[name] = max(best[name], items / (time.perf_counter() - t))
    return best
