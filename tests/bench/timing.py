"""Timing shared by the benchmarks."""

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def median_seconds(runs: int, action: Callable[[], T]) -> tuple[float, T]:
    """Median wall time of `runs` calls of `action`, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result
