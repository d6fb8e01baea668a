"""Was the machine busy while a latency figure was measured? A before/after probe and a verdict.

A latency measured beside another busy process can be several times the real one (onnxruntime fp32 went
from 7.5 to 22.9 ms with one other process on one of two cores, measured 2026-12-01 on a 2-core AMD EPYC)
and nothing in the number itself shows it. So every measurement takes two snapshots around its timed loop
and records:

* how long this process's threads waited in the run queue for a CPU, over the wall time
  (``/proc/self/task/*/schedstat``, nanoseconds): the direct measure of contention, precise even for a
  timed loop of a few milliseconds;
* other processes' CPU time on the cores this process may use, over the wall time, in cores
  (``/proc/stat`` per-CPU busy time minus this process's own CPU time), plus the time the hypervisor
  took from those cores (steal); counted in clock ticks, so left out (``None``) for a loop too short for
  them to resolve;
* the 1-minute load average before and after (informational: it is machine-wide, lags by a minute and
  counts this process too);
* steadiness: the spread between the medians of consecutive chunks of the timed runs, which catches a
  machine whose speed changed during the measurement even where ``/proc`` is unavailable.

The arithmetic and the thresholds are pure functions of the snapshots and the times (tested on synthetic
ones); :func:`read_snapshot` is the only code that reads ``/proc``. Thresholds are in ``docs/runtimes.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

OTHERS_MAX_CORES = 0.25
"""Other processes may use this much of the cores this process needs before the machine counts as busy:
a quarter of a core taken from a 2-thread run is a slowdown of the order of the 10 % a latency table must hold."""
WAIT_MAX = 0.05
"""Largest run-queue wait of this process's threads, in cores (seconds waited per second of wall), of a quiet
machine: waking a thread costs microseconds, so even thousands of wake-ups a second stay near 0.005."""
SELF_ONLY_CORES = 0.1
"""Others below this (where measured) mean a run-queue wait is this process's own doing: more threads than
usable cores. That is the configuration being measured, not a busy machine, so it does not count."""
MAX_RESOLUTION_CORES = 1.0
"""Beyond this tick-rounding error the others' CPU figure says nothing and is left out."""
SPREAD_MAX = 0.15
"""Largest (max - min) / median of the chunk medians of a steady measurement: beyond it the machine's speed
moved by more than a latency table's ±10 % budget during the run."""
CHUNKS = 5
MIN_RUNS_PER_CHUNK = 5
TICK_ERROR = 2  # /proc/stat counts in clock ticks: up to one tick of rounding per CPU at each end


@dataclass(frozen=True)
class Snapshot:
    """What the probe reads at one moment (``None`` where this system has no ``/proc``)."""

    wall_s: float  # time.perf_counter()
    self_cpu_s: float  # this process's CPU time, all threads (time.process_time()), and its children's if asked
    wait_s: float | None  # run-queue wait of this process's threads (schedstat)
    busy_s: float | None  # busy CPU time of the usable cores since boot (user+nice+system+irq+softirq)
    steal_s: float | None  # time the hypervisor ran something else on the usable cores
    load1: float | None  # 1-minute load average
    cores: int  # usable cores (this process's CPU affinity)
    tick_s: float = 0.01  # one clock tick of /proc/stat


@dataclass
class LoadRecord:
    """How loaded the machine was during one timed loop, and the verdict."""

    wall_s: float
    usable_cores: int
    self_cores: float
    wait_cores: float | None  # seconds this process's threads waited for a CPU per second of wall
    others_cores: float | None
    steal_cores: float | None
    resolution_cores: float | None  # how far others_cores may be off from tick rounding alone
    load_before: float | None
    load_after: float | None
    chunk_spread: float | None
    chunks: int
    busy: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: floats rounded to 4 places, non-finite ones as ``None``."""
        return {k: _json_num(v) for k, v in asdict(self).items()}

    def warning(self) -> str | None:
        """One line for a busy measurement, ``None`` for a quiet one."""
        return warning_text(self) if self.busy else None


def _json_num(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


# ---- pure parsing -----------------------------------------------------------------------------------------------


def parse_proc_stat(text: str, cpus: Sequence[int]) -> tuple[int, int] | None:
    """Busy and steal clock ticks summed over ``cpus`` from the text of ``/proc/stat`` (``None`` if a CPU
    line is missing). Busy is user + nice + system + irq + softirq (guest time is already inside user)."""
    want = {f"cpu{c}" for c in cpus}
    busy = steal = 0
    seen = set()
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in want:
            continue
        v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
        user, nice, system, _idle, _iowait, irq, softirq, st = v[:8]
        busy += user + nice + system + irq + softirq
        steal += st
        seen.add(parts[0])
    return (busy, steal) if seen == want else None


def parse_loadavg(text: str) -> float | None:
    """The 1-minute load average from the text of ``/proc/loadavg``."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


# ---- pure arithmetic and thresholds -----------------------------------------------------------------------------


def chunk_spread(times_s: Sequence[float], chunks: int = CHUNKS) -> tuple[float | None, int]:
    """(max - min) / overall median of the medians of consecutive chunks of the timed runs, and the number
    of chunks; ``(None, 0)`` when there are too few runs for two chunks of ``MIN_RUNS_PER_CHUNK``.

    Consecutive chunks compare the start of a run with its end: a process that starts or stops, or a CPU
    that changes clock, moves one chunk's median and not the others'.
    """
    t = np.asarray(times_s, dtype=np.float64)
    n = min(chunks, t.size // MIN_RUNS_PER_CHUNK)
    if n < 2:
        return None, 0
    medians = [float(np.median(c)) for c in np.array_split(t, n)]
    mid = float(np.median(t))
    if mid <= 0:
        return None, 0
    return (max(medians) - min(medians)) / mid, n


def others_limit(cores: int, self_cores: float) -> float:
    """How many cores other processes may use before they slow this one: :data:`OTHERS_MAX_CORES` plus
    the usable cores this process leaves idle beyond one (a spare core absorbs the system's own work)."""
    return OTHERS_MAX_CORES + max(0.0, cores - self_cores - 1.0)


def verdict(
    wait_cores: float | None,
    others_cores: float | None,
    steal_cores: float | None,
    self_cores: float,
    cores: int,
    spread: float | None,
    resolution: float | None = 0.0,
) -> tuple[bool, list[str]]:
    """``(busy, reasons)``: busy when this process waited for a CPU more than :data:`WAIT_MAX` (unless others
    are known to have been idle: see :data:`SELF_ONLY_CORES`), when others
    (with steal) use more than :func:`others_limit` beyond the tick rounding, or unsteady when the chunk
    spread exceeds :data:`SPREAD_MAX`."""
    reasons: list[str] = []
    others_known_idle = others_cores is not None and others_cores + (steal_cores or 0.0) <= SELF_ONLY_CORES
    if wait_cores is not None and wait_cores > WAIT_MAX and not others_known_idle:
        reasons.append("waited")
    if others_cores is not None:
        taken = others_cores + (steal_cores or 0.0)
        if taken - (resolution or 0.0) > others_limit(cores, self_cores):
            reasons.append("others")
    if spread is not None and spread > SPREAD_MAX:
        reasons.append("unsteady")
    return bool(reasons), reasons


def load_record(before: Snapshot, after: Snapshot, times_s: Sequence[float] | None = None) -> LoadRecord:
    """The record of one timed loop from its two snapshots and its per-call times (pure)."""
    wall = max(after.wall_s - before.wall_s, 1e-9)
    self_cores = max(0.0, after.self_cpu_s - before.self_cpu_s) / wall
    others = steal = resolution = wait = None
    if before.wait_s is not None and after.wait_s is not None:
        wait = max(0.0, after.wait_s - before.wait_s) / wall
    if before.busy_s is not None and after.busy_s is not None:
        resolution = TICK_ERROR * before.cores * before.tick_s / wall
        if resolution <= MAX_RESOLUTION_CORES:
            others = max(0.0, (after.busy_s - before.busy_s) / wall - self_cores)
    if before.steal_s is not None and after.steal_s is not None:
        steal = max(0.0, after.steal_s - before.steal_s) / wall
    spread, n = chunk_spread(times_s) if times_s is not None else (None, 0)
    busy_flag, reasons = verdict(wait, others, steal, self_cores, before.cores, spread, resolution)
    return LoadRecord(
        wall_s=wall,
        usable_cores=before.cores,
        self_cores=self_cores,
        wait_cores=wait,
        others_cores=others,
        steal_cores=steal,
        resolution_cores=resolution,
        load_before=before.load1,
        load_after=after.load1,
        chunk_spread=spread,
        chunks=n,
        busy=busy_flag,
        reasons=reasons,
    )


def warning_text(r: LoadRecord) -> str:
    """e.g. ``machine busy while measuring: other processes used 0.97 of 2 cores; load 1.20 -> 2.00;
    latency figures are likely too slow``."""
    parts = []
    if r.wait_cores is not None:
        parts.append(f"this process waited {1e3 * r.wait_cores:.0f} ms per second for a CPU")
    if r.others_cores is not None:
        parts.append(f"other processes used {r.others_cores:.2f} of {r.usable_cores} cores")
    if r.steal_cores is not None and r.steal_cores >= 0.05:
        parts.append(f"the hypervisor took {r.steal_cores:.2f} cores")
    if r.load_before is not None and r.load_after is not None:
        parts.append(f"load {r.load_before:.2f} -> {r.load_after:.2f}")
    if r.chunk_spread is not None:
        steady = "unsteady: " if "unsteady" in r.reasons else ""
        parts.append(f"{steady}chunk medians spread {100 * r.chunk_spread:.0f} %")
    what = "unsteady" if r.reasons == ["unsteady"] else "busy"
    return f"machine {what} while measuring: {'; '.join(parts)}; latency figures are likely too slow"


def summary_line(r: LoadRecord | dict[str, Any]) -> str:
    """The load in one line for text output, busy or not."""
    d = r.as_dict() if isinstance(r, LoadRecord) else r
    parts = []
    if d.get("wait_cores") is not None:
        parts.append(f"waited {1e3 * d['wait_cores']:.0f} ms/s for a CPU")
    if d.get("others_cores") is not None:
        parts.append(f"other processes {d['others_cores']:.2f} of {d['usable_cores']} cores")
    if d.get("load_before") is not None and d.get("load_after") is not None:
        parts.append(f"load {d['load_before']:.2f} -> {d['load_after']:.2f}")
    if d.get("chunk_spread") is not None:
        parts.append(f"chunk spread {100 * d['chunk_spread']:.0f} %")
    return f"{'BUSY' if d['busy'] else 'quiet'} ({', '.join(parts) or 'no load figures on this system'})"


# ---- the reader -------------------------------------------------------------------------------------------------


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_wait_s() -> float | None:
    """Run-queue wait (seconds) summed over this process's threads, from their ``schedstat`` files."""
    total, seen = 0, False
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tasks:
        text = _read(f"/proc/self/task/{tid}/schedstat")  # a thread may end between listing and reading
        if text is not None and len(text.split()) >= 2:
            total += int(text.split()[1])
            seen = True
    return total / 1e9 if seen else None


def read_snapshot(children: bool = False) -> Snapshot:
    """The machine now (the only function here that reads ``/proc``). With ``children``, the CPU time of this
    process's finished (waited-for) children counts as its own: a benchmark that runs each configuration in
    a fresh process is not "other work" on its machine."""
    cpus = usable_cpus()
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        hz = 100
    stat = _read("/proc/stat")
    ticks = parse_proc_stat(stat, cpus) if stat is not None else None
    loadavg = _read("/proc/loadavg")
    return Snapshot(
        wall_s=time.perf_counter(),
        self_cpu_s=time.process_time() + (_children_cpu_s() if children else 0.0),
        wait_s=read_wait_s(),
        busy_s=None if ticks is None else ticks[0] / hz,
        steal_s=None if ticks is None else ticks[1] / hz,
        load1=None if loadavg is None else parse_loadavg(loadavg),
        cores=len(cpus),
        tick_s=1.0 / hz,
    )


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


class Probe:
    """The two snapshots of one measurement; :meth:`record` turns them (and the times) into a record."""

    def __init__(self, children: bool = False) -> None:
        self.children = children
        self.before = read_snapshot(children)
        self.after: Snapshot | None = None

    def stop(self) -> None:
        if self.after is None:
            self.after = read_snapshot(self.children)

    def record(self, times_s: Sequence[float] | None = None) -> LoadRecord:
        self.stop()
        assert self.after is not None
        return load_record(self.before, self.after, times_s)


@contextlib.contextmanager
def probe(children: bool = False) -> Iterator[Probe]:
    """``with probe() as p: <timed loop>`` then ``p.record(times)``: any timing loop can carry a load record
    (``children``: see :func:`read_snapshot`)."""
    p = Probe(children)
    try:
        yield p
    finally:
        p.stop()
