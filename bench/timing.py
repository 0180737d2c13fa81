"""The timing protocol: warm-up, then interleaved rounds, then per-round ratios.

Machines drift (other load, frequency, caches), so contenders are never timed
in separate blocks. After a warm-up, each round times every contender once for
a fixed number of calls, in an order rotated from round to round; a ratio is
formed within each round and the median of the per-round ratios is reported
(with min and max).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

Run = Callable[[int], Any]
Sync = Callable[[Any], None]


def _no_sync(_: Any) -> None:
    return None


def interleaved(
    runs: Mapping[str, Run],
    *,
    warmup: int,
    rounds: int,
    calls: int,
    sync: Sync = _no_sync,
) -> dict[str, Any]:
    """Time each contender ``rounds`` times, ``calls`` calls each time.

    Args:
        runs: Contender name -> ``run(n)`` doing ``n`` calls and returning the
            last result.
        warmup: Untimed calls of each contender first; the first of them (which
            includes tracing and compiling, for jit backends) is reported as
            ``first_call_s``.
        rounds: Timed rounds.
        calls: Calls per contender per round.
        sync: Waits for a result (``jax.block_until_ready``; nothing for torch
            on CPU).

    Returns:
        ``{"seconds": {name: [per-call seconds of each round]},
        "first_call_s": {name: seconds}}``.
    """
    names = list(runs)
    first: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        sync(runs[name](1))
        first[name] = time.perf_counter() - start
        if warmup > 1:
            sync(runs[name](warmup - 1))
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        gc.collect()
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            sync(runs[name](calls))
            seconds[name].append((time.perf_counter() - start) / calls)
    return {"seconds": seconds, "first_call_s": first}


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict[str, Any]:
    """Median, min and max of the per-round ratios ``numerator / denominator``."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "rounds": ratios,
    }


def summarize(
    timings: dict[str, Any], subject: str = "bnnc", baselines: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Median milliseconds per contender and ``subject``'s ratios to each baseline.

    A baseline that was not measured (not installed, say) is left out of
    ``ratios``; the report shows it as n/a.
    """
    seconds = timings["seconds"]
    cell: dict[str, Any] = {
        "ms": {name: 1000 * statistics.median(s) for name, s in seconds.items()},
        "first_call_s": timings["first_call_s"],
        "ratios": {},
    }
    for base in baselines:
        if base in seconds and subject in seconds:
            cell["ratios"][base] = ratio_stats(seconds[subject], seconds[base])
    # The floor's own overhead over the deterministic model, for the reader.
    if "floor" in seconds and "deterministic" in seconds:
        cell["floor_over_deterministic"] = ratio_stats(
            seconds["floor"], seconds["deterministic"]
        )["median"]
    return cell


def finite_positive(value: Any) -> bool:
    """Whether ``value`` is a positive finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
