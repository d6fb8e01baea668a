"""Wall-clock timing of a synchronous call and its summary: the one timing loop of every latency number.

Pure (numpy and ``time`` only) so the statistics can be tested exactly and a command can import it before
any runtime starts. What a number means: wall time of one synchronous call (``time.perf_counter`` around
it), after ``warmup`` untimed calls. p50 is the headline figure and throughput is derived from it, because
the median is what a latency table should hold: means are pulled up by the occasional scheduler hiccup on
a shared machine. :func:`measure` also records how busy the machine was around its timed loop
(:mod:`spos_deploy.runtime.load`) and logs a warning when it was, so no figure hides a busy machine.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spos_deploy.errors import BadInputError
from spos_deploy.runtime import load

log = logging.getLogger(__name__)

# How many times `repeats` time_fn may run when min_seconds asks for more: bounds a run on a tiny model.
MAX_REPEAT_FACTOR = 20


@dataclass
class LatencyStats:
    """Summary of the timed runs of one configuration (times in milliseconds)."""

    batch: int
    runs: int
    warmup: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # images per second = batch / (p50 seconds)
    load: dict[str, Any] | None = None  # LoadRecord.as_dict() of the timed loop (None: not probed)
    warnings: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool | None:
        return None if self.load is None else bool(self.load["busy"])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (a non-finite throughput, from a p50 of zero, becomes ``None``)."""
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def attach(self, record: load.LoadRecord, label: str = "") -> LatencyStats:
        """Carry ``record``; a busy one adds its warning (logged once, here) to :attr:`warnings`."""
        self.load = record.as_dict()
        text = record.warning()
        if text is not None:
            text = f"{label}: {text}" if label else text
            self.warnings.append(text)
            log.warning("%s", text)
        return self


def summarize(times_s: Sequence[float], batch: int, warmup: int) -> LatencyStats:
    """Turn per-call wall times (seconds) into :class:`LatencyStats`.

    Percentiles use numpy's linear interpolation (its default; stated so results are reproducible across
    tools). ``std_ms`` is the population standard deviation (``ddof=0``) so a single run gives 0, not NaN.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("summarize needs at least one time")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be finite and non-negative")
    ms = t * 1e3
    p50, p90, p99 = (float(x) for x in np.percentile(ms, [50, 90, 99], method="linear"))
    return LatencyStats(
        batch=batch,
        runs=int(t.size),
        warmup=warmup,
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        min_ms=float(ms.min()),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        throughput=batch / (p50 / 1e3) if p50 > 0 else math.inf,
    )


def check_counts(batch: int | None = None, warmup: int | None = None, repeats: int | None = None) -> None:
    """Refuse a batch, warm-up or repeat count no measurement can use (library callers; the commands check
    their flags while parsing)."""
    if batch is not None and batch < 1:
        raise BadInputError(f"batch must be >= 1, got {batch}")
    if warmup is not None and warmup < 0:
        raise BadInputError(f"warmup must be >= 0, got {warmup}")
    if repeats is not None and repeats < 1:
        raise BadInputError(f"repeats must be >= 1, got {repeats}")


def time_fn(
    fn: Callable[[], Any],
    warmup: int = 10,
    repeats: int = 50,
    min_seconds: float = 0.0,
    clock: Callable[[], float] | None = None,
) -> list[float]:
    """Wall time (seconds) of each of at least ``repeats`` calls of ``fn``, after ``warmup`` untimed calls.

    ``fn`` must be synchronous: it returns only when the work is done (MXNet callers wait on the output).
    The timed loop keeps going past ``repeats`` until ``min_seconds`` of wall time have passed, so fast models
    get enough samples for a stable p99, but never beyond ``20 * repeats`` calls. ``clock`` (default
    ``time.perf_counter``) is there for tests.
    """
    check_counts(warmup=warmup, repeats=repeats)
    clock = clock or time.perf_counter
    for _ in range(warmup):
        fn()
    times: list[float] = []
    cap = MAX_REPEAT_FACTOR * repeats
    start = clock()
    while len(times) < repeats or (clock() - start < min_seconds and len(times) < cap):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


def measure(
    fn: Callable[[], Any],
    batch: int,
    warmup: int = 10,
    repeats: int = 50,
    min_seconds: float = 0.0,
    label: str = "",
) -> LatencyStats:
    """:func:`time_fn` then :func:`summarize`: the statistics of ``repeats`` timed calls after ``warmup``,
    with the load record of the timed loop (the warm-up stays outside the probe). ``label`` prefixes the
    busy warning (e.g. ``batch 8``)."""
    check_counts(batch=batch, warmup=warmup, repeats=repeats)
    for _ in range(warmup):
        fn()
    with load.probe() as p:
        times = time_fn(fn, warmup=0, repeats=repeats, min_seconds=min_seconds)
    return summarize(times, batch, warmup).attach(p.record(times), label)
