"""Latency tables: real measurements on a reduced space, crash and resume, fingerprint refusal,
predictor arithmetic, validation statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.core import kendall_tau, validation_stats
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, fingerprint
from spos_deploy.tables.latency.table import LatencyTable, fit_correction

from .conftest import ROOT, space_args

SMALL = SearchSpace(input_size=32, num_classes=10, stage_repeats=(1, 1, 1, 1), channel_scales=(1.0, 2.0))
SMALL_ARGS = space_args(input_size=32, num_classes=10, stage_repeats=(1, 1, 1, 1), channel_scales=(1.0, 2.0))


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "t.json"
    setup = LatencySetup(precision="fp32", calibration_networks=3, repeats=5, threads=1)
    table = build_latency_table(SMALL, setup, path, progress=False)
    return path, table


def test_small_table_is_measured(small_table):
    path, table = small_table
    assert path.exists() and not path.with_name(path.name + ".partial.jsonl").exists()
    assert table.entries.shape == (4, 4, 2)
    assert np.all(table.entries > 0) and table.stem_ms > 0 and table.head_ms > 0
    # wider blocks cost more at the same position (a 2x wider mid width is not free)
    widest = table.entries[:, :, 1].sum()
    narrow = table.entries[:, :, 0].sum()
    assert widest > narrow
    fp = table.fingerprint
    assert fp["runtime"] == "onnxruntime" and fp["precision"] == "fp32" and fp["threads"] == 1 and fp["date"]
    assert len(table.calibration) == 3 and table.slope > 0
    loaded = LatencyTable.load(
        path, expect_space=SMALL, expect_fingerprint=fingerprint(LatencySetup(precision="fp32", threads=1), SMALL)
    )
    assert np.allclose(loaded.entries, table.entries, atol=1e-6)


def test_fingerprint_refusal(small_table, tmp_path):
    path, table = small_table
    here = fingerprint(LatencySetup(precision="fp32", threads=1), SMALL)
    other = dict(here, cpu="Some Other CPU", threads=8)
    with pytest.raises(BadInputError, match="other hardware.*cpu"):
        LatencyTable.load(path, expect_fingerprint=other)
    assert LatencyTable.load(path, expect_fingerprint=other, allow_mismatch=True) is not None
    with pytest.raises(BadInputError, match="another configuration"):
        LatencyTable.load(path, expect_space=SearchSpace())
    d = json.loads(path.read_text())
    d["fingerprint"]["cpu"] = "Some Other CPU"
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(d))
    proc = subprocess.run(
        [sys.executable, "-m", "spos_deploy.cli.lut", "validate", str(moved), "--samples", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "other hardware" in proc.stderr and "Traceback" not in proc.stderr


def test_predictor_arithmetic_against_hand_sums():
    rng = np.random.default_rng(0)
    entries = rng.uniform(0.1, 2.0, (4, 4, 2))
    table = LatencyTable(SMALL, {}, 0.3, 0.2, entries, np.zeros_like(entries), slope=1.1, intercept=-0.05)
    blocks = rng.integers(0, 4, (100, 4))
    channels = rng.integers(0, 2, (100, 4))
    pred = table.predict(blocks, channels)
    for i in range(100):
        raw = 0.3 + 0.2 + sum(entries[p, blocks[i, p], channels[i, p]] for p in range(4))
        assert pred[i] == pytest.approx(1.1 * raw - 0.05, rel=1e-12)
    assert table.predict(blocks[0], channels[0]) == pytest.approx(pred[0])


def test_validation_statistics_on_known_inputs():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # one discordant pair out of 6: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties: tau-b, as scipy computes it for x=[1,1,2,3], y=[1,2,2,3]
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    s = validation_stats(predicted=[10.0, 22.0, 27.0, 41.0], measured=[10.0, 20.0, 30.0, 40.0])
    assert s["mape"] == pytest.approx((0 + 10 + 10 + 2.5) / 4)
    assert s["max_error"] == pytest.approx(10.0)
    assert s["within_5"] == 0.5 and s["within_10"] == 1.0 and s["kendall_tau"] == 1.0
    slope, intercept = fit_correction(np.array([1.0, 2.0, 4.0]), np.array([2.5, 4.5, 8.5]))
    assert (slope, intercept) == (pytest.approx(2.0), pytest.approx(0.5))


def _partial_lines(partial) -> list[dict]:
    if not partial.exists():
        return []
    lines = partial.read_text().splitlines()[1:]
    return [json.loads(x) for x in lines if x.endswith("}")]


def test_crash_and_resume_keeps_finished_entries(tmp_path):
    out = tmp_path / "t.json"
    partial = tmp_path / "t.json.partial.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "spos_deploy.cli.lut",
        "build",
        "--kind",
        "latency",
        "-o",
        str(out),
        "--threads",
        "1",
        "--repeats",
        "5",
        "--calibration-networks",
        "2",
        "--no-progress",
        *SMALL_ARGS,
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_partial_lines(partial)) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["key"]: r for r in _partial_lines(partial)}
    assert len(before) >= 6 and not out.exists()
    # without --resume the interrupted build is not silently thrown away
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(before)} measurements already done" in resumed.stderr
    table = LatencyTable.load(out)
    for key, rec in before.items():
        part = key.split(":")
        if len(part) == 3:
            i, b, c = int(part[0][1:]), int(part[1]), int(part[2])
            assert table.raw_entries[i, b, c] == pytest.approx(rec["ms"], abs=1e-6)  # not measured again
            assert table.probe_ms[i, b, c] == pytest.approx(rec["ref"], abs=1e-6)
    assert not partial.exists()


def test_profile_measure_maps_time_to_blocks():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spos_deploy.cli.profile",
            "oneshot",
            "--input-size",
            "64",
            "--measure",
            "cpu",
            "--measure-runs",
            "5",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["measured"]
    assert set(m["blocks_ms"]) >= {"stem", "head"} | {part_key(i) for i in range(20)}
    assert all(v >= 0 for v in m["blocks_ms"].values())
    assert any(k.startswith("b05_pw1") for k in m["ops_ms"])
    assert 0 < m["nodes_total_ms"] <= 3 * m["end_to_end_p50_ms"]


def test_calibration_windows_span_the_scales():
    from spos_deploy.tables.latency.build import calibration_window

    windows = [calibration_window(k, 12, 10) for k in range(12)]
    assert windows[0] == (0, 3) and windows[-1] == (6, 9)
    assert all(hi - lo == 3 for lo, hi in windows)
    assert [lo for lo, _ in windows] == sorted(lo for lo, _ in windows)
    assert calibration_window(0, 1, 2) == (0, 1)


def test_ort_profile_parsing_takes_the_median_run_and_drops_the_first():
    from spos_deploy.runtime.op_profile import after_first_run, parse_ort_profile

    def run(ts, a_ms, b_ms):
        return [
            {"cat": "Session", "name": "model_run", "ts": ts, "dur": 100},
            {"cat": "Node", "name": "b00_pw1_fwd_kernel_time", "ts": ts + 1, "dur": a_ms * 1e3},
            {"cat": "Node", "name": "b00_pw1_fwd_nchwc_kernel_time", "ts": ts + 2, "dur": 0.5e3},
            {"cat": "Node", "name": "head_conv_fc_fwd_kernel_time", "ts": ts + 3, "dur": b_ms * 1e3},
        ]

    # a slow first run (allocation) and one run disturbed by another process (the fourth)
    events = run(0, 20.0, 20.0) + run(1000, 1.0, 2.0) + run(2000, 1.2, 2.0) + run(3000, 9.0, 30.0) + run(4000, 1.1, 2.2)
    ops = parse_ort_profile(after_first_run(events))
    assert ops == {"b00_pw1_fwd": pytest.approx(1.65), "head_conv_fc_fwd": pytest.approx(2.1)}
