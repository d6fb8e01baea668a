"""Interleaved timing: several runners timed in rounds, each round in a fresh shuffled order, and the verdict on
whether the machine was busy meanwhile. The one way every comparison of latencies is timed: latency tables (anchor
networks, validation passes, the fitted predictor's networks, through :mod:`spos_deploy.runtime.deployed`),
``spos-export --target auto`` and the benchmarks.

Why interleave: a shared machine's speed drifts by several percent over minutes (another job starts, the clock
changes). Timing one runner after the other turns that drift into differences between them; a round that times
every runner once, in a new random order each round, spreads it over all of them alike.

Pure apart from the callables it is given and :mod:`spos_deploy.runtime.load`'s probe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from spos_deploy.runtime import load
from spos_deploy.runtime.timing import time_fn

K = TypeVar("K")
Runner = Callable[[], Any]

WARMUP = 5
"""Untimed calls of every runner before the first round (:func:`interleaved_times`)."""


def shuffled_orders(n: int, rounds: int, seed: int | np.random.Generator = 0) -> Iterator[np.ndarray]:
    """The order of each round: a fresh permutation of ``range(n)`` per round, from ``seed`` (or a generator
    already in use, so that an untimed pass drawn from it first keeps the same sequence)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    for _ in range(rounds):
        yield rng.permutation(n)


def warm_up(runners: Mapping[Any, Runner], calls: int) -> None:
    """``calls`` untimed calls of every runner, in the mapping's order."""
    for fn in runners.values():
        for _ in range(calls):
            fn()


def interleaved_rounds(
    runners: Mapping[K, Runner | Sequence[Runner]],
    rounds: int,
    repeats: int,
    *,
    turn_warmup: int = 0,
    min_seconds: float = 0.0,
    seed: int | np.random.Generator = 0,
    clock: Callable[[], float] | None = None,
) -> dict[K, list[list[float]]]:
    """Per name, per round, the wall time (ms) of each timed call: round ``r`` gives every runner one turn, in a
    fresh shuffled order (:func:`shuffled_orders`); a turn is ``turn_warmup`` untimed calls, then at least
    ``repeats`` timed ones, more until ``min_seconds`` have passed (:func:`~spos_deploy.runtime.timing.time_fn`).
    A name mapped to several runners (sessions made ahead) uses runner ``r % len`` in round ``r``."""
    if rounds < 1 or repeats < 1:
        raise ValueError("rounds and repeats must be >= 1")
    names = list(runners)
    out: dict[K, list[list[float]]] = {n: [] for n in names}
    for r, order in enumerate(shuffled_orders(len(names), rounds, seed)):
        for i in order:
            held = runners[names[i]]
            run = held[r % len(held)] if isinstance(held, Sequence) else held
            times = time_fn(run, warmup=turn_warmup, repeats=repeats, min_seconds=min_seconds, clock=clock)
            out[names[i]].append([t * 1e3 for t in times])
    return out


def round_medians(times: Mapping[Any, Sequence[Sequence[float]]]) -> np.ndarray:
    """``[rounds, names]`` median ms of each turn of :func:`interleaved_rounds`."""
    return np.array([[float(np.median(turn)) for turn in per_round] for per_round in times.values()]).T


def interleaved_times(
    runners: Mapping[K, Runner],
    rounds: int,
    repeats: int,
    warmup: int = WARMUP,
    seed: int | np.random.Generator = 0,
    clock: Callable[[], float] | None = None,
) -> dict[K, list[float]]:
    """Per-call wall times (ms) of every runner: ``warmup`` untimed calls each, then ``rounds`` rounds in which
    each runner, in a shuffled order, makes ``repeats`` timed calls (:func:`interleaved_rounds`), all rounds'
    calls in one list per name."""
    if rounds < 1 or repeats < 1:
        raise ValueError("rounds and repeats must be >= 1")
    warm_up(runners, warmup)
    timed = interleaved_rounds(runners, rounds, repeats, seed=seed, clock=clock)
    return {k: [t for turn in per_round for t in turn] for k, per_round in timed.items()}


# ---- was the machine busy meanwhile ------------------------------------------------------------------------------


def round_spread(times_ms: Sequence[float], rounds: int) -> float | None:
    """(max - min) / median of one runner's per-round medians: how much its speed moved between rounds."""
    if rounds < 2 or len(times_ms) < rounds:
        return None
    medians = [float(np.median(c)) for c in np.array_split(np.asarray(times_ms, dtype=np.float64), rounds)]
    mid = float(np.median(times_ms))
    return (max(medians) - min(medians)) / mid if mid > 0 else None


@contextlib.contextmanager
def load_probe() -> Iterator[dict[str, Any]]:
    """The busy-machine probe of :mod:`spos_deploy.runtime.load` around a whole interleaved measurement; the
    yielded dict receives its record (``busy``, ``warning``, the figures) when the block ends."""
    out: dict[str, Any] = {}
    with load.probe() as p:
        yield out
    rec = p.record(None)  # per-runner steadiness is the round spread (load_verdict)
    out.update(rec.as_dict(), warning=rec.warning())


def load_verdict(record: dict[str, Any], spreads: Mapping[str, float | None]) -> dict[str, Any]:
    """The probe's record plus the interleaved-round steadiness: busy when the probe says so or when any
    runner's round medians spread beyond the probe's chunk threshold (:data:`~spos_deploy.runtime.load.SPREAD_MAX`)."""
    known = {k: v for k, v in spreads.items() if v is not None}
    worst = max(known, key=known.get) if known else None
    out = {**record, "round_spread_max": None if worst is None else round(known[worst], 4), "round_spread_of": worst}
    if worst is not None and known[worst] > load.SPREAD_MAX:
        out["busy"] = True
        line = (
            f"unsteady while measuring: {worst} moved {100 * known[worst]:.0f} % between interleaved rounds "
            f"(> {100 * load.SPREAD_MAX:g} %); the ranking may not hold"
        )
        out["warning"] = f"{out['warning']}; {line}" if out.get("warning") else line
    return out


def measure_interleaved(
    runners: Mapping[str, Runner], rounds: int, repeats: int, warmup: int = WARMUP, seed: int = 0
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """:func:`interleaved_times` inside the load probe (warm-up included), and the load verdict of the probe
    and of every runner's round spread (:func:`load_verdict`)."""
    with load_probe() as record:
        times = interleaved_times(runners, rounds, repeats, warmup, seed=seed)
    return times, load_verdict(record, {k: round_spread(v, rounds) for k, v in times.items()})
