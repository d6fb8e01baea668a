"""The latency of a deployed network: one definition, measured one way by tables, validation and search.

A small network (0.1-0.4 ms) does not have one latency on a shared CPU: within one runtime session its
calls are steady, but fresh sessions of the same file settle in different modes (measured 2026-12-06 on a
2-core AMD EPYC: one int8 network, 15 fresh onnxruntime sessions, per-session medians 0.121-0.358 ms).
What a user deploys is a fresh session, so the unit of measurement is the session:

* each of ``sessions`` fresh sessions (or compiled models) is warmed up and then timed for ``calls`` calls;
  its median call time is one **session median**;
* the network's **deployed latency** is the median of its session medians: what latency tables predict and
  what predicted-versus-measured errors are computed against;
* a **budget** is held when the ``BUDGET_QUANTILE`` quantile of the session medians is within it: most
  sessions a user starts meet it, not only the typical one.

Several networks are measured interleaved (session ``s`` of every network, in a shuffled order, before
session ``s + 1`` of any: one *pass*), so that a machine's drift over the minutes of a measurement moves
them alike; each pass's shared speed is then divided out (:func:`drift_free`) before the medians are taken
(:func:`steady_medians`, :meth:`DeployedLatency.from_passes`).
Pure apart from the callables it is given: a runtime is reached only through ``make_runner``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.runtime.interleave import shuffled_orders
from spos_deploy.runtime.timing import time_fn

SESSIONS = 5
"""Fresh sessions per network: the median of five is steady where one session's mode is not."""
WARMUP = 20
CALLS = 20
MIN_SECONDS = 0.05  # and at least 50 ms: a 0.15 ms network is timed over about 330 calls (at most 20 x CALLS)
BUDGET_QUANTILE = 0.8
"""A budget is met when this share of fresh sessions run within it (documented in docs/latency.md)."""

RunnerFactory = Callable[[], Callable[[], Any]]
"""Makes a fresh session (compiled model) and returns one synchronous inference call on it."""
THREAD_SESSIONS = 7
"""Fresh sessions per network and thread count when the threads are decided."""
THREAD_TIE = 0.05
"""Thread counts whose budget latencies lie within 5 % of the best are a tie, and the fewest threads win: as
fast, steadier between sessions, and the other cores stay with the rest of the application."""


@dataclass(frozen=True)
class DeployedLatency:
    """Session medians (ms) of one network and what they mean (module docstring)."""

    session_ms: tuple[float, ...]

    @property
    def ms(self) -> float:
        """The deployed latency: median over fresh sessions of each session's median."""
        return float(np.median(self.session_ms))

    def quantile(self, q: float = BUDGET_QUANTILE) -> float:
        return float(np.quantile(self.session_ms, q))

    @property
    def budget_ms(self) -> float:
        """What a latency budget is checked against."""
        return self.quantile(BUDGET_QUANTILE)

    @property
    def spread(self) -> float:
        """(max - min) / median of the session medians: how far fresh sessions of this network disagree."""
        return float(np.ptp(self.session_ms) / self.ms) if self.ms > 0 else 0.0

    @classmethod
    def from_passes(cls, per_pass: Any) -> list[DeployedLatency]:
        """One per network of a ``[passes, networks]`` matrix of session medians, each pass's shared speed
        divided out (:func:`drift_free`)."""
        steady = drift_free(per_pass)
        return [cls(tuple(float(v) for v in steady[:, i])) for i in range(steady.shape[1])]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ms": round(self.ms, 6),
            "budget_ms": round(self.budget_ms, 6),
            "budget_quantile": BUDGET_QUANTILE,
            "session_ms": [round(v, 6) for v in self.session_ms],
        }


def time_session(run: Callable[[], Any], warmup: int = WARMUP, calls: int = CALLS) -> float:
    """Median ms of one session's calls after ``warmup`` untimed ones."""
    return float(np.median(time_fn(run, warmup=warmup, repeats=calls, min_seconds=MIN_SECONDS)) * 1e3)


def session_matrix(
    makers: Sequence[RunnerFactory],
    sessions: int = SESSIONS,
    warmup: int = WARMUP,
    calls: int = CALLS,
    seed: int = 0,
    progress: bool = False,
    desc: str = "deployed latency",
    leave: bool = True,
) -> np.ndarray:
    """``[sessions, networks]`` session medians (ms) of the networks whose sessions ``makers[i]`` makes,
    measured interleaved (module docstring; the rounds' orders of :func:`spos_deploy.runtime.interleave.
    shuffled_orders`, a fresh session per turn).

    Every session is made, timed and dropped before the next one is made, so no two live at once and each
    starts as a user's would. One untimed pass over all networks goes first: the first sessions of a process
    ran up to 2x slower than every later one (measured 2026-12-06, onnxruntime, 2-core AMD EPYC).
    """
    if sessions < 1 or calls < 1 or warmup < 0:
        raise ValueError("sessions and calls must be >= 1, warmup >= 0")
    per_session = np.zeros((sessions, len(makers)))
    orders = shuffled_orders(len(makers), 1 + sessions, seed)
    for i in next(orders):  # one untimed pass: a process's first sessions run slow
        time_session(makers[i](), warmup, 1)
    with tqdm(total=sessions * len(makers), desc=desc, unit="session", disable=not progress, leave=leave) as bar:
        for s, order in enumerate(orders):
            for i in order:
                run = makers[i]()
                per_session[s, i] = time_session(run, warmup, calls)
                del run
                bar.update(1)
    return per_session


def measure_deployed(makers: Sequence[RunnerFactory], sessions: int = SESSIONS, **kw: Any) -> list[DeployedLatency]:
    """The deployed latency of each network whose sessions ``makers[i]`` makes (:func:`session_matrix`)."""
    return DeployedLatency.from_passes(session_matrix(makers, sessions, **kw))


# ---- threads are part of the deployed form ------------------------------------------------------------------


def choose_threads(budget_ms: dict[int, Sequence[float]]) -> tuple[int, str]:
    """The thread count to ship: the lowest geometric mean of the networks' budget latencies, and among those
    within :data:`THREAD_TIE` of it the fewest threads (pure)."""
    score = {t: float(np.exp(np.mean(np.log(v)))) for t, v in budget_ms.items()}
    best = min(score.values())
    chosen = min(t for t, v in score.items() if v <= best * (1 + THREAD_TIE))
    parts = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.4f} ms" for t, v in sorted(score.items()))
    return chosen, f"budget latency (geometric mean over the networks): {parts}"


def decide_threads(
    makers_at: Callable[[int], Sequence[RunnerFactory]], counts: Sequence[int], sessions: int = THREAD_SESSIONS
) -> dict[str, Any]:
    """Measure the networks whose sessions ``makers_at(threads)`` makes at each thread count of ``counts``,
    all in one interleaved measurement, and choose (:func:`choose_threads`): small networks often run as
    fast on one thread, and steadier, as on every core."""
    per_count = [list(makers_at(t)) for t in counts]
    measured = measure_deployed([m for ms in per_count for m in ms], sessions=sessions)
    by_count, i = {}, 0
    for t, ms in zip(counts, per_count):
        by_count[t], i = measured[i : i + len(ms)], i + len(ms)
    chosen, why = choose_threads({t: [m.budget_ms for m in v] for t, v in by_count.items()})
    return {
        "sessions": sessions,
        "measured": {str(t): [m.as_dict() for m in v] for t, v in by_count.items()},
        "chosen": chosen,
        "why": why,
    }


# ---- the machine's drift between passes ------------------------------------------------------------------


def pass_speeds(per_pass: Any) -> np.ndarray:
    """Each interleaved pass's typical speed: the median over networks of its time over the network's
    median. Every network in a pass shares the pass's machine state, so this is the global part of the noise."""
    pp = np.asarray(per_pass, float)
    if pp.ndim != 2 or len(pp) < 2:
        raise ValueError("interleaved timings must be [passes >= 2, networks]")
    return np.median(pp / np.median(pp, axis=0), axis=1)


def drift_free(per_pass: Any) -> np.ndarray:
    """``[passes, networks]`` with each pass divided by its speed (:func:`pass_speeds`): the timings as if
    the machine had kept its typical speed through every pass. Below 3 networks a pass's speed cannot be
    told from the networks' own scatter, and the timings are returned as they are."""
    pp = np.asarray(per_pass, float)
    if pp.ndim != 2 or len(pp) < 2 or pp.shape[1] < 3:
        return pp
    return pp / pass_speeds(pp)[:, None]


def steady_medians(per_pass: Any) -> np.ndarray:
    """Each network's time at the machine's typical speed: the median over passes of :func:`drift_free`.

    Many short passes beat a few long ones: one short burst of a network scatters by several percent on a
    shared VM, partly with its neighbours in time, so medians over many passes of all networks, with each
    pass's shared part divided out, rank the networks most steadily (measured in docs/latency.md)."""
    return np.median(drift_free(per_pass), axis=0)


def pass_drift(per_pass: Any) -> float:
    """How far the machine's speed moved between interleaved passes: the spread (max - min) of
    :func:`pass_speeds`; a steady machine keeps it to a few percent."""
    speeds = pass_speeds(per_pass)
    return float(speeds.max() - speeds.min())
