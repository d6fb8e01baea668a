"""Busy-machine detection: the pure arithmetic and thresholds on synthetic snapshots, and a real busy loop.

The quiet case is not asserted on the real machine (it is shared); the busy one is, with one busy-loop
process per usable core beside the measurement.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import numpy as np
import pytest

from spos_deploy.runtime import load, timing
from spos_deploy.runtime.load import Snapshot, chunk_spread, load_record, others_limit, verdict

pytestmark = pytest.mark.timing  # measures: run alone (pyproject.toml's markers)

STAT = """cpu  900 0 100 5000 10 0 0 0 0 0
cpu0 100 0 50 2000 5 0 0 0 0 0
cpu1 300 10 40 2000 5 2 3 7 0 0
cpu2 500 0 10 1000 0 0 0 0 0 0
intr 12345
"""


def snap(wall: float, self_cpu: float, busy: float | None, wait: float | None = 0.0, **kw) -> Snapshot:
    base = dict(steal_s=0.0, load1=1.2, cores=2, tick_s=0.01)
    base.update(kw)
    return Snapshot(wall_s=wall, self_cpu_s=self_cpu, wait_s=wait, busy_s=busy, **base)


# ---- parsing ----------------------------------------------------------------------------------------------------


def test_parse_proc_stat_sums_the_usable_cpus_only():
    assert load.parse_proc_stat(STAT, [0]) == (150, 0)
    assert load.parse_proc_stat(STAT, [0, 1]) == (150 + 355, 7)  # user+nice+system+irq+softirq; steal apart
    assert load.parse_proc_stat(STAT, [3]) is None  # a usable CPU without a line: no figure rather than a wrong one
    assert load.parse_loadavg("1.20 0.80 0.50 2/300 1234\n") == 1.2
    assert load.parse_loadavg("") is None


def test_read_snapshot_on_this_machine():
    s = load.read_snapshot()
    assert s.cores == len(load.usable_cpus()) >= 1
    assert s.self_cpu_s > 0 and s.tick_s > 0
    if sys.platform.startswith("linux"):
        assert s.busy_s is not None and s.busy_s > 0 and s.load1 is not None and s.wait_s is not None


def test_a_probe_counts_its_own_children_when_asked():
    """A benchmark running each configuration in a fresh process: with ``children``, that process's CPU time
    is the benchmark's own, not other work on the machine."""
    burn = [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"]
    with load.probe(children=True) as counted, load.probe() as plain:
        subprocess.run(burn, check=True)
    own = counted.after.self_cpu_s - counted.before.self_cpu_s
    assert own >= 0.4 and plain.after.self_cpu_s - plain.before.self_cpu_s < own - 0.3


# ---- steadiness -------------------------------------------------------------------------------------------------


def test_chunk_spread():
    assert chunk_spread([0.001] * 50) == (0.0, 5)
    step = [0.001] * 40 + [0.002] * 10  # the last fifth twice as slow: chunk medians 1,1,1,1,2 ms
    spread, n = chunk_spread(step)
    assert n == 5 and spread == pytest.approx(1.0)  # (2 - 1) / overall median 1
    assert chunk_spread([0.001] * 9) == (None, 0)  # fewer than two chunks of five
    assert chunk_spread([0.001] * 12)[1] == 2


# ---- thresholds -------------------------------------------------------------------------------------------------


def test_others_limit_leaves_room_for_idle_cores():
    assert others_limit(2, 2.0) == load.OTHERS_MAX_CORES
    assert others_limit(2, 1.0) == load.OTHERS_MAX_CORES  # one core idle: the system's own spare
    assert others_limit(16, 2.0) == pytest.approx(load.OTHERS_MAX_CORES + 13)


@pytest.mark.parametrize(
    "wait, others, spread, busy, reasons",
    [
        (0.0, 0.0, 0.02, False, []),
        (0.0, 0.24, 0.02, False, []),
        (0.0, 0.26, 0.02, True, ["others"]),
        (0.049, None, None, False, []),
        (0.051, None, None, True, ["waited"]),
        (0.0, None, 0.16, True, ["unsteady"]),
        (0.3, 1.0, 0.5, True, ["waited", "others", "unsteady"]),
        (0.3, 0.05, None, False, []),  # others idle: the wait is this process's own threads (oversubscribed)
        (0.3, 0.15, None, True, ["waited"]),
    ],
)
def test_verdict_thresholds(wait, others, spread, busy, reasons):
    assert verdict(wait, others, 0.0, self_cores=2.0, cores=2, spread=spread, resolution=0.0) == (busy, reasons)


def test_verdict_allows_for_tick_rounding():
    assert verdict(None, 0.6, 0.0, 2.0, 2, None, resolution=0.4) == (False, [])
    assert verdict(None, 0.7, 0.0, 2.0, 2, None, resolution=0.4) == (True, ["others"])
    assert verdict(None, 0.2, 0.1, 2.0, 2, None, resolution=0.0) == (True, ["others"])  # steal counts too


def test_load_record_from_synthetic_snapshots():
    before = snap(10.0, 5.0, busy=100.0, wait=1.0, load1=1.2)
    after = snap(11.0, 6.0, busy=101.97, wait=1.3, load1=2.0)  # 1 s wall: self 1 core, all busy 1.97
    r = load_record(before, after, [0.001] * 50)
    assert r.self_cores == pytest.approx(1.0) and r.others_cores == pytest.approx(0.97)
    assert r.wait_cores == pytest.approx(0.3) and r.resolution_cores == pytest.approx(0.04)
    assert r.busy and r.reasons == ["waited", "others"] and r.chunk_spread == 0.0
    text = r.warning()
    assert text.startswith("machine busy while measuring: ") and "\n" not in text
    for part in ("waited 300 ms per second", "other processes used 0.97 of 2 cores", "load 1.20 -> 2.00"):
        assert part in text
    assert text.endswith("latency figures are likely too slow")
    d = r.as_dict()
    assert json.loads(json.dumps(d)) == d and d["busy"] is True


def test_load_record_quiet_and_short():
    quiet = load_record(snap(0.0, 0.0, 50.0), snap(1.0, 1.0, 51.05), [0.001] * 50)
    assert not quiet.busy and quiet.warning() is None and quiet.others_cores == pytest.approx(0.05)
    short = load_record(snap(0.0, 0.0, 50.0), snap(0.01, 0.01, 50.0))  # 10 ms: ticks cannot resolve it
    assert short.others_cores is None and short.resolution_cores > load.MAX_RESOLUTION_CORES
    no_proc = load_record(snap(0.0, 0.0, None, wait=None, load1=None), snap(1.0, 1.0, None, wait=None, load1=None))
    assert no_proc.others_cores is None and no_proc.wait_cores is None and not no_proc.busy
    assert "no load figures" in load.summary_line(no_proc)


def test_unsteady_only_is_worded_as_such():
    times = [0.001] * 40 + [0.0013] * 10
    r = load_record(snap(0.0, 1.0, 10.0), snap(1.0, 2.0, 11.0), times)
    assert r.reasons == ["unsteady"] and r.warning().startswith("machine unsteady while measuring")


def test_stats_attach_logs_once_and_stays_json_safe(caplog):
    busy = load_record(snap(0.0, 0.0, 0.0), snap(1.0, 1.0, 3.0))
    stats = timing.summarize([0.001, 0.002], batch=1, warmup=0)
    with caplog.at_level(logging.WARNING, logger="spos_deploy.runtime.timing"):
        stats.attach(busy, label="batch 8")
    assert stats.busy and stats.warnings == [f"batch 8: {busy.warning()}"]
    assert [r.getMessage() for r in caplog.records] == stats.warnings
    d = stats.as_dict()
    assert json.loads(json.dumps(d)) == d and d["load"]["busy"] is True


# ---- a real busy loop -------------------------------------------------------------------------------------------


def _work() -> None:
    a = np.ones((120, 120))
    for _ in range(3):
        a = a @ a / 120.0


def test_busy_loop_beside_a_measurement_fires_the_warning(caplog):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(len(load.usable_cpus()))]
    try:
        time.sleep(0.3)  # let them reach the run queue
        with caplog.at_level(logging.WARNING, logger="spos_deploy.runtime.timing"):
            stats = timing.measure(_work, batch=1, warmup=2, repeats=60, min_seconds=0.6)
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()
    assert stats.busy is True, stats.load
    assert set(stats.load["reasons"]) & {"waited", "others"}, stats.load
    assert len(stats.warnings) == 1 and stats.warnings[0].startswith("machine busy while measuring")
    assert any("machine busy" in r.getMessage() for r in caplog.records)
