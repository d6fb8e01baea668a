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
from spos_deploy.stats import kendall_tau, kendall_tau_bootstrap, kendall_tau_pvalue, kendall_tau_rows
from spos_deploy.tables.core import validation_stats
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, fingerprint
from spos_deploy.tables.latency.table import LatencyTable, check_fingerprint, fit_correction, speed_note

from .conftest import ROOT, space_args

pytestmark = pytest.mark.timing  # measures: run alone (pyproject.toml's markers)

SMALL = SearchSpace(input_size=32, num_classes=10, stage_repeats=(1, 1, 1, 1), channel_scales=(1.0, 2.0))
SMALL_ARGS = space_args(input_size=32, num_classes=10, stage_repeats=(1, 1, 1, 1), channel_scales=(1.0, 2.0))


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("lat") / "t.json"
    setup = LatencySetup(precision="fp32", calibration_networks=3, repeats=5, threads=1, fit_networks=12, sessions=2)
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
    allowed = LatencyTable.load(path, expect_fingerprint=other, allow_mismatch=True)
    assert np.allclose(allowed.entries, table.entries, atol=1e-6) and allowed.fingerprint == table.fingerprint
    diff = check_fingerprint(table.fingerprint, other, str(path), allow=True)  # what a caller may warn with
    assert sorted(d.split(":")[0] for d in diff) == ["cpu", "threads"], diff
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


def test_kendall_tau_of_many_rows_equals_scipy_s_tau_b_of_each_row():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, (40, 9)).astype(float), rng.integers(0, 5, (40, 9)).astype(float)  # many ties
    rows = kendall_tau_rows(x, y)
    for k in range(len(x)):
        want = kendalltau(x[k], y[k]).statistic  # tau-b
        assert rows[k] == pytest.approx(want, abs=1e-12) and kendall_tau(x[k], y[k]) == want
    x, y = rng.normal(size=(5, 30)), rng.normal(size=(5, 30))  # no ties
    assert kendall_tau_rows(x, y) == pytest.approx([kendalltau(a, b).statistic for a, b in zip(x, y)], abs=1e-12)
    assert np.isnan(kendall_tau_rows(np.ones((1, 4)), [[1, 2, 3, 4]])[0])  # a constant ranker has no tau
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3])) and np.isnan(kendall_tau([1], [1]))
    assert np.isnan(kendall_tau_rows([[1.0]], [[2.0]])[0])


def test_bootstrap_interval_of_tau_holds_the_estimate_and_narrows_with_more_items():
    rng = np.random.default_rng(0)

    def width(n: int) -> float:
        y = rng.normal(size=n)
        x = y + rng.normal(size=n)  # tau about 0.5
        taus = kendall_tau_bootstrap({"x": x}, y, samples=300)["x"]
        lo, hi = np.percentile(taus, [2.5, 97.5])
        assert lo < kendall_tau(x, y) < hi
        return hi - lo

    assert width(160) < 0.5 * width(20)
    # paired: one ranker against itself differs by exactly 0 on every resample
    y = rng.normal(size=30)
    boot = kendall_tau_bootstrap({"a": y + rng.normal(size=30), "b": y}, y, samples=200, seed=1)
    assert boot["b"] == pytest.approx(np.ones(200)) and (boot["a"] < 1).all()


def test_permutation_p_value_of_tau_separates_association_from_none():
    rng = np.random.default_rng(1)
    y = rng.normal(size=40)
    assert kendall_tau_pvalue(y + 0.5 * rng.normal(size=40), y) < 0.01
    assert kendall_tau_pvalue(-y, y) > 0.99  # one-sided: a reversed ranking is no evidence of a positive one
    ps = [kendall_tau_pvalue(rng.normal(size=40), y, samples=500, seed=s) for s in range(20)]
    assert 0.25 < float(np.mean(ps)) < 0.75  # independent rankers: p spread over (0, 1)
    assert np.isnan(kendall_tau_pvalue([1, 1, 1], [1, 2, 3]))


def test_permutation_p_value_of_tau_approaches_the_exact_one():
    """Without ties scipy has the exact null distribution of tau; 20,000 random pairings estimate the one-sided
    p-value to about 0.004 (1 sd at p = 0.3)."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(2)
    y = rng.normal(size=12)
    for x in (y + 2.0 * rng.normal(size=12), y + 0.7 * rng.normal(size=12)):
        exact = kendalltau(x, y, alternative="greater", method="exact").pvalue
        assert kendall_tau_pvalue(x, y, samples=20000) == pytest.approx(exact, abs=0.015)


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
        "--fit-networks",
        "12",
        "--sessions",
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
            "--repeats",
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


# ---- drift: anchors, re-anchoring, error sources, validation rounds ----------------------------------------
def test_reanchor_factor_is_the_median_ratio():
    from spos_deploy.tables.latency.table import reanchor_factor, speed_note

    build = [2.0, 3.0, 4.0, 5.0, 6.0]
    assert reanchor_factor(build, [1.1 * b for b in build]) == pytest.approx(1.10, rel=1e-12)
    # one anchor disturbed (3x slower while timed) does not move the median of five
    disturbed = [1.1 * b for b in build[:4]] + [3 * build[4]]
    assert reanchor_factor(build, disturbed) == pytest.approx(1.10, rel=1e-12)
    assert reanchor_factor(build, [0.95 * b for b in build]) == pytest.approx(0.95)
    assert speed_note(1.041) == "anchors run 4.1 % slower than the table predicts: predictions scaled by 1.041"
    assert "faster" in speed_note(0.9) and "unchanged" in speed_note(1.0)
    with pytest.raises(ValueError):
        reanchor_factor([1.0, 2.0], [1.0])


def test_anchors_that_disagree_are_not_a_speed_change():
    from spos_deploy.tables.latency.table import ANCHOR_AGREEMENT, anchor_spread

    build = [2.0, 3.0, 4.0, 5.0, 6.0]
    assert anchor_spread(build, [1.1 * b for b in build]) == pytest.approx(0.0, abs=1e-12)
    # one disturbed anchor is absorbed like the median absorbs it
    assert anchor_spread(build, [1.1 * b for b in build[:4]] + [3 * build[4]]) == pytest.approx(0.0, abs=1e-12)
    # ratios 1.0 1.2 1.5 1.9 2.0: the timing is unsteady, not the machine slower by a common factor
    spread = anchor_spread(build, [r * b for r, b in zip([1.0, 1.2, 1.5, 1.9, 2.0], build)])
    assert spread == pytest.approx((1.9 - 1.2) / 1.5) and spread > ANCHOR_AGREEMENT


def test_reanchored_table_scales_its_predictions():
    rng = np.random.default_rng(1)
    entries = rng.uniform(0.1, 2.0, (4, 4, 2))
    table = LatencyTable(SMALL, {}, 0.3, 0.2, entries, np.zeros_like(entries), slope=1.2, intercept=0.1)
    blocks, channels = rng.integers(0, 4, (50, 4)), rng.integers(0, 2, (50, 4))
    built = table.predict(blocks, channels)
    table.speed_factor = 1.10
    assert np.allclose(table.predict(blocks, channels), 1.10 * built, rtol=1e-12)
    assert np.allclose(table.predict_as_built(blocks, channels), built, rtol=1e-12)
    assert table.predict(blocks[0], channels[0]) == pytest.approx(1.10 * built[0])


def test_anchors_round_trip_and_are_checked(tmp_path):
    entries = np.ones((4, 4, 2))
    anchors = [{"blocks": [0, 1, 2, 3], "channels": [0, 1, 0, 1], "ms": 1.5}]
    table = LatencyTable(SMALL, {}, 0.3, 0.2, entries, np.zeros_like(entries), anchors=anchors)
    table.speed_factor = 2.0  # a use-time property: never saved
    table.save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.anchors == anchors and loaded.speed_factor == 1.0
    d = json.loads((tmp_path / "t.json").read_text())
    for bad, match in (
        ([{"blocks": [0, 1, 2, 9], "channels": [0, 1, 0, 1], "ms": 1.5}], "anchors\\[0\\]: 'blocks'"),
        ([{"blocks": [0, 1, 2, 3], "channels": [0, 1, 0, 1], "ms": -1}], "anchors\\[0\\]: 'ms'"),
        ({"a": 1}, "'anchors' must be a list"),
    ):
        with pytest.raises(BadInputError, match=match):
            LatencyTable.from_json(dict(d, anchors=bad), "t.json")
    del d["anchors"]  # a table built before anchors: none, as built
    assert LatencyTable.from_json(d).anchors == []


def test_error_sources_separate_speed_correction_and_entries():
    from spos_deploy.tables.latency.validate import error_sources

    raw = np.array([2.0, 3.0, 4.0, 5.0, 6.0])
    built = 1.5 * raw + 0.5
    # the machine is 10 % slower, nothing else is wrong: all error is machine speed
    e = error_sources(raw, 1.5, 0.5, 1.1 * built, factor=1.1)
    assert e["speed_factor_best"] == pytest.approx(1.1)
    assert e["mape_as_built"] == pytest.approx(100 * (1 - 1 / 1.1))
    assert e["mape_reanchored"] == pytest.approx(0, abs=1e-9)
    assert e["from_machine_speed"] == pytest.approx(e["mape_as_built"])
    assert e["from_correction"] == pytest.approx(0, abs=1e-9) and e["from_entries"] == pytest.approx(0, abs=1e-9)
    # a wrong intercept is not a speed change: a line refitted on the networks removes it
    e = error_sources(raw, 1.5, 0.5, 1.5 * raw + 2.0)
    assert e["from_correction"] > 1 and e["from_entries"] == pytest.approx(0, abs=1e-9)
    assert e["mape_reanchored"] is None
    # per-network scatter stays with the entries; the spread over passes measures the ground truth's noise
    noisy = built * np.array([1.05, 0.95, 1.04, 0.97, 1.02])
    scatter = np.array([[0.99, 1.01, 1.0, 0.98, 1.0], [1.01, 0.99, 1.0, 1.02, 1.0]])
    passes = noisy * scatter
    e = error_sources(raw, 1.5, 0.5, noisy, per_pass=passes)
    assert e["from_entries"] > 1
    expected_noise = np.median(passes.std(axis=0, ddof=1) / np.median(passes, axis=0)) / np.sqrt(2) * 100
    assert e["measurement_noise_pct"] == pytest.approx(expected_noise) and expected_noise > 0.5
    # a pass that ran faster or slower as a whole is the machine's drift, not noise of the ground truth
    e = error_sources(raw, 1.5, 0.5, noisy, per_pass=np.stack([noisy * 0.9, noisy * 1.2]))
    assert e["measurement_noise_pct"] == pytest.approx(0, abs=1e-9) and e["pass_drift_pct"] == pytest.approx(30 / 1.05)
    # the anchors timed inside the passes give their own re-anchored MAPE, beside the one timed before
    e = error_sources(raw, 1.5, 0.5, 1.1 * built, factor=1.3, in_pass=1.1)
    assert e["speed_factor_in_pass"] == 1.1 and e["mape_reanchored_in_pass"] == pytest.approx(0, abs=1e-9)
    assert e["mape_reanchored"] > 15


def test_steady_medians_divide_out_each_pass_s_speed():
    from spos_deploy.runtime.deployed import drift_free, steady_medians

    nets = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    speeds = np.array([1.0, 1.3, 1.0, 1.3])  # the machine alternates between two speeds
    per_pass = nets * speeds[:, None]
    per_pass[0, 0] *= 1.05  # one network disturbed once, in a fast pass
    raw = np.median(per_pass, axis=0)
    steady = steady_medians(per_pass)
    # the raw median of network 0 mixes its disturbed fast pass with a slow one and comes out 2.2 % high;
    # with each pass's speed divided out its disturbance is one outlier of four and leaves no trace
    assert raw[0] / raw[1] * 2 == pytest.approx(1.0217, abs=1e-3)
    assert steady / steady[1] * 2 == pytest.approx(nets, rel=1e-12)
    assert np.array_equal(drift_free(per_pass[:, :2]), per_pass[:, :2])  # two networks: speed not separable
    assert np.array_equal(steady_medians(per_pass[:1]), per_pass[0])  # one pass: nothing to divide out


def test_pass_drift_and_the_measurement_s_own_tau():
    from spos_deploy.runtime.deployed import pass_drift
    from spos_deploy.tables.latency.validate import drift_warning, error_sources, halves_tau

    nets = np.array([1.0, 2.0, 3.0, 4.0])
    steady = np.stack([nets, nets * 1.01, nets * 0.99, nets])
    assert pass_drift(steady) == pytest.approx(0.02)
    # the second pass ran on a machine 30 % slower: every network in it at once
    slow = np.stack([nets, nets * 1.3, nets, nets])
    assert pass_drift(slow) == pytest.approx(0.3)
    assert halves_tau(slow) == pytest.approx(1.0)  # a global drift does not reorder the networks
    swapped = np.stack([nets, nets[::-1], nets, nets[::-1]])  # even and odd passes disagree completely
    assert halves_tau(swapped) == pytest.approx(-1.0)
    assert halves_tau(nets[None, :]) is None and halves_tau(np.ones((2, 1))) is None
    with pytest.raises(ValueError):
        pass_drift(nets[None, :])
    e = error_sources(nets, 1.0, 0.0, np.median(slow, axis=0), per_pass=slow)
    assert e["pass_drift_pct"] == pytest.approx(30.0) and e["tau_ceiling"] == pytest.approx(1.0)
    two = drift_warning(e, threads=2)
    assert "moved 30 % between interleaved passes at 2 threads" in two and "--threads 1" in two
    assert "--threads" not in drift_warning(e, threads=1)
    assert drift_warning({"pass_drift_pct": 5.0}, 2) is None and drift_warning({"pass_drift_pct": None}, 2) is None


def test_summarize_rounds_mean_and_worst():
    from spos_deploy.tables.latency.validate import summarize_rounds

    def stats(mape, w10, tau):
        return {"mape": mape, "within_10": w10, "kendall_tau": tau}

    rounds = [
        {"as_built": stats(3.0, 1.0, 0.9), "reanchored": stats(2.0, 1.0, 0.9), "reanchor": {"factor": 1.02}},
        {"as_built": stats(7.0, 0.8, 0.8), "reanchored": stats(3.0, 0.9, 0.85), "reanchor": {"factor": 1.06}},
    ]
    s = summarize_rounds(rounds)
    assert s["as_built"]["mape"] == {"mean": 5.0, "worst": 7.0}
    assert s["as_built"]["within_10"] == {"mean": pytest.approx(0.9), "worst": 0.8}
    assert s["reanchored"]["kendall_tau"] == {"mean": pytest.approx(0.875), "worst": 0.85}
    assert s["speed_factors"] == [1.02, 1.06] and s["rounds"] == 2
    assert summarize_rounds([{"as_built": stats(3.0, 1.0, 0.9), "reanchored": None}])["reanchored"] is None


def test_non_positive_slope_falls_back_to_a_scale():
    slope, intercept = fit_correction(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.5]))
    assert slope == pytest.approx(np.median([3.0, 1.0, 0.5])) and intercept == 0.0


def test_a_steep_fit_over_a_narrow_range_falls_back_to_a_scale():
    raw = np.array([0.3386, 0.3406, 0.3491])  # the calibration sums of a CI build, fitted as seen there
    measured = 3.4513 * raw - 1.0627
    slope, intercept = fit_correction(raw, measured)
    assert intercept == 0.0 and slope == pytest.approx(np.median(measured / raw))
    assert slope * 0.30465578 + intercept > 0  # the anchor the line predicted at -0.011 ms


def test_built_table_has_anchors_and_reanchors(small_table):
    from spos_deploy.tables.latency.validate import reanchor

    path, table = small_table
    assert len(table.anchors) == 5 and all(a["ms"] > 0 for a in table.anchors)
    sums = [table.raw_sum(a["blocks"], a["channels"]) for a in table.anchors]
    assert min(sums) < max(sums)  # small to large networks
    loaded = LatencyTable.load(path)
    info = reanchor(loaded)
    applied = info["factor"] if info["anchors_agree"] else 1.0  # tiny networks on a shared machine may disagree
    assert info["factor"] > 0 and loaded.speed_factor == applied
    assert len(info["anchors_now_ms"]) == 5
    # the reference is the table's own prediction of each anchor, not its one measurement at build
    anchor_b = [a["blocks"] for a in loaded.anchors]
    anchor_c = [a["channels"] for a in loaded.anchors]
    assert info["anchors_predicted_ms"] == pytest.approx(list(loaded.predict_as_built(anchor_b, anchor_c)))
    assert info["factor"] == pytest.approx(np.median(np.array(info["anchors_now_ms"]) / info["anchors_predicted_ms"]))
    b, c = np.zeros(4, int), np.ones(4, int)
    assert loaded.predict(b, c) == pytest.approx(applied * loaded.predict_as_built(b, c), rel=1e-12)
    assert loaded.predict_as_built(b, c) == pytest.approx(table.predict(b, c), rel=1e-4)  # saved to 6 decimals


@pytest.mark.slow
def test_validate_rounds_reports_each_round_and_a_summary(small_table, tmp_path):
    path, _ = small_table
    report = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "spos_deploy.cli.lut", "validate", str(path), "--rounds", "2", "--samples", "3"]
    proc = subprocess.run(
        [*cmd, "--passes", "2", "--no-progress", "--plot", str(tmp_path / "p.png"), "--report", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "pooled over all rounds" in proc.stdout
        and "worst" in proc.stdout
        and ("than the table predicts" in proc.stdout or "anchors disagree" in proc.stdout)
    )
    r = json.loads(report.read_text())
    assert r["samples"] == 6 and len(r["points"]) == 6 and {p["round"] for p in r["points"]} == {0, 1}
    assert len(r["rounds"]) == 2 and r["rounds"][0]["seed"] != r["rounds"][1]["seed"]
    first = {(tuple(p["blocks"]), tuple(p["channels"])) for p in r["points"] if p["round"] == 0}
    second = {(tuple(p["blocks"]), tuple(p["channels"])) for p in r["points"] if p["round"] == 1}
    assert first.isdisjoint(second)  # fresh architectures each round
    saved = LatencyTable.load(path)
    predicted = saved.predict_as_built([a["blocks"] for a in saved.anchors], [a["channels"] for a in saved.anchors])
    for rd in r["rounds"]:
        assert rd["reanchor"]["factor"] > 0 and rd["as_built"]["samples"] == 3 and rd["reanchored"]["samples"] == 3
        used = rd["reanchored"] if rd["reanchor"]["anchors_agree"] else rd["as_built"]
        assert rd["mape"] == pytest.approx(used["mape"])
        assert set(rd["error_sources"]) >= {"from_machine_speed", "from_correction", "from_entries", "tau_ceiling"}
        assert rd["error_sources"]["pass_drift_pct"] >= 0
        # the anchors were timed again inside the round's own passes: a factor, and statistics scaled by it
        inside = rd["anchors_in_pass"]
        assert len(inside["anchors_now_ms"]) == 5 and inside["factor"] > 0
        assert inside["factor"] == pytest.approx(np.median(np.array(inside["anchors_now_ms"]) / predicted))
        assert rd["reanchored_in_pass"]["samples"] == 3
        assert rd["error_sources"]["speed_factor_in_pass"] == pytest.approx(inside["factor"])
    mapes = [rd["as_built"]["mape"] for rd in r["rounds"]]
    assert r["summary"]["as_built"]["mape"] == {
        "mean": pytest.approx(np.mean(mapes)),
        "worst": pytest.approx(max(mapes)),
    }
    assert r["summary"]["reanchored"]["within_10"]["worst"] <= r["summary"]["reanchored"]["within_10"]["mean"]
    in_pass = [rd["reanchored_in_pass"]["mape"] for rd in r["rounds"]]
    assert r["summary"]["reanchored_in_pass"]["mape"]["worst"] == pytest.approx(max(in_pass))
    assert "anchors timed inside the passes" in proc.stdout and "in-pass" in proc.stdout
    assert {"samples", "mape", "max_error", "within_5", "within_10", "kendall_tau", "table", "fingerprint"} <= set(r)
    assert "drift between passes" in proc.stdout and isinstance(r["warnings"], list)
    assert all(f"warning: {w}" in proc.stderr for w in r["warnings"])
    off = subprocess.run(
        [*cmd, "--no-reanchor", "--passes", "1", "--json", "--no-progress", "--plot", str(tmp_path / "q.png")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert off.returncode == 0, off.stderr
    o = json.loads(off.stdout)
    assert o["reanchor"] is False and all(rd["reanchor"] is None and rd["reanchored"] is None for rd in o["rounds"])
    assert o["summary"]["reanchored"] is None
    assert o["summary"]["as_built"]["mape"]["mean"] == pytest.approx(
        np.mean([rd["as_built"]["mape"] for rd in o["rounds"]])
    )


def test_table_of_another_runtime_is_refused(small_table):
    proc = subprocess.run(
        [sys.executable, "-m", "spos_deploy.cli.lut", "validate", str(small_table[0]), "--runtime", "mxnet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert len(proc.stderr.strip().splitlines()) == 1 and "runtime: table 'onnxruntime', here 'mxnet'" in line
    assert "spos-lut build --kind latency --runtime mxnet" in line


def test_search_reanchors_its_latency_table_unless_told_not_to(small_table, caplog):
    from spos_deploy.search.runner import SearchJob, _latency_table

    path, _ = small_table
    table = LatencyTable.load(path)
    with caplog.at_level("INFO", logger="spos_deploy.search.runner"):
        used = _latency_table(SearchJob(supernet="-", out="-", lut=str(path)), SMALL)
    if "anchors disagree" in caplog.text:  # a shared machine: the table is used as built, and the log says why
        assert used.speed_factor == 1.0 and "predictions left as built" in caplog.text
    else:
        # the note says how far the speed moved; within 0.05 % it says "as fast as", yet still applies the factor
        assert used.speed_factor != 1.0 and speed_note(used.speed_factor) in caplog.text
    b, c = np.zeros(4, int), np.ones(4, int)
    assert used.predict(b, c) == pytest.approx(used.speed_factor * table.predict(b, c))
    off = _latency_table(SearchJob(supernet="-", out="-", lut=str(path), reanchor=False), SMALL)
    assert off.speed_factor == 1.0 and off.predict(b, c) == pytest.approx(table.predict(b, c))
