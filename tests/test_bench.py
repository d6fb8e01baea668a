"""Latency measurement: exact statistics, the timing loop's counting, and real onnxruntime / MXNet runs.

Nothing here asserts a speed: timings vary by machine. The tests check what the numbers are made of (how many
calls, which shape, which percentiles) and that every runtime path runs a real exported model.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import onnxruntime
import pytest

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import load_spec
from spos_deploy.nets.network import build_subnet
from spos_deploy.runtime import bench, ort, timing
from spos_deploy.runtime.ort import resolve_input_shape
from spos_deploy.runtime.timing import LatencyStats, summarize, time_fn

from .conftest import ROOT

SIZE = 32
STATS_KEYS = {f.name for f in fields(LatencyStats)}


def run_bench(*args: str) -> subprocess.CompletedProcess:
    """spos-bench as a user runs it: a fresh interpreter, both streams captured."""
    env = dict(os.environ)
    env.pop("SPOS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "spos_deploy.cli.bench", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spos-bench: error: "), proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The built-in OneShot at 32 x 32 (random weights): Gluon net, MXNet export, ONNX with dynamic/fixed batch."""
    d = tmp_path_factory.mktemp("bench")
    net = build_subnet(load_spec("oneshot", input_size=SIZE))
    net.hybridize()
    x = mx.nd.random.normal(shape=(2, 3, SIZE, SIZE), dtype="float32")
    y = net(x).asnumpy()
    prefix = str(d / "oneshot32")
    net.export(prefix)
    sym, params = f"{prefix}-symbol.json", f"{prefix}-0000.params"
    dynamic, fixed = str(d / "dynamic.onnx"), str(d / "fixed.onnx")
    # MXNet's exporter also lists every weight as a graph input; ort_session drops them from the inputs.
    mx.onnx.export_model(
        sym,
        params,
        [(1, 3, SIZE, SIZE)],
        np.float32,
        dynamic,
        dynamic=True,
        dynamic_input_shapes=[(None, 3, SIZE, SIZE)],
    )
    mx.onnx.export_model(sym, params, [(1, 3, SIZE, SIZE)], np.float32, fixed)
    return {"dir": d, "x": x.asnumpy(), "y": y, "symbol": sym, "params": params, "dynamic": dynamic, "fixed": fixed}


# ----------------------------------------------------------------------------------------------------------------
# pure statistics


def test_summarize_hand_computed():
    ms = [5, 1, 4, 2, 3, 10, 6, 8, 7, 9]  # 1..10 shuffled
    s = summarize([m / 1000 for m in ms], batch=2, warmup=3)
    assert (s.batch, s.runs, s.warmup) == (2, 10, 3)
    # linear interpolation over sorted 1..10: rank p/100 * (n - 1)
    assert s.p50_ms == pytest.approx(5.5)  # rank 4.5
    assert s.p90_ms == pytest.approx(9.1)  # rank 8.1: 9 + 0.1 * (10 - 9)
    assert s.p99_ms == pytest.approx(9.91)  # rank 8.91
    assert s.mean_ms == pytest.approx(5.5)
    assert s.std_ms == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert s.min_ms == pytest.approx(1.0)
    assert s.throughput == pytest.approx(2 / 0.0055)
    d = s.as_dict()
    assert set(d) == STATS_KEYS and json.loads(json.dumps(d)) == d


def test_summarize_edges():
    one = summarize([0.004], batch=1, warmup=0)
    assert one.std_ms == 0 and one.p50_ms == one.p99_ms == one.min_ms == pytest.approx(4.0)
    assert summarize([0.0, 0.0], batch=1, warmup=0).as_dict()["throughput"] is None  # inf is not JSON
    for bad in ([], [0.001, -0.001], [float("nan")]):
        with pytest.raises(ValueError):
            summarize(bad, batch=1, warmup=0)


def test_resolve_input_shape():
    assert resolve_input_shape(["N", 3, 32, 32], 4) == (4, 3, 32, 32)
    assert resolve_input_shape([None, 3, "H", "W"], 2, (2, None, 64, 64)) == (2, 3, 64, 64)
    assert resolve_input_shape([1, 3, 32, 32], 1, (None, 3, 32, None)) == (1, 3, 32, 32)
    with pytest.raises(BadInputError, match="fixed batch of 1"):
        resolve_input_shape([1, 3, 32, 32], 4)
    with pytest.raises(BadInputError, match="dimension 2 is dynamic"):
        resolve_input_shape(["N", 3, "H", "W"], 1)
    with pytest.raises(BadInputError, match="fixed at 32"):
        resolve_input_shape(["N", 3, 32, 32], 1, (1, None, 64, 64))
    with pytest.raises(BadInputError, match="rank"):
        resolve_input_shape(["N", 3, 32, 32], 1, (1, 64, 64))
    with pytest.raises(BadInputError, match="disagrees with batch"):
        resolve_input_shape(["N", 3, 32, 32], 1, (2, None, None, None))


# ----------------------------------------------------------------------------------------------------------------
# timing loop


def test_time_fn_honours_warmup_and_repeats(monkeypatch):
    # a fake clock: the 3 warm-up calls take 50 s each, timed call k takes k + 1 ms; the loop itself takes 0
    clock = [0.0]
    calls = []

    def fn() -> None:
        calls.append(1)
        clock[0] += 50.0 if len(calls) <= 3 else 1e-3 * (len(calls) - 3)

    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    times = time_fn(fn, warmup=3, repeats=7)
    assert len(calls) == 10  # warm-up calls are made but not timed; each timed time is its own call's
    assert times == pytest.approx([1e-3 * k for k in range(1, 8)], rel=1e-9)
    monkeypatch.undo()
    # on the real clock: every time covers its whole call (a 1 ms sleep never takes less)
    times = time_fn(lambda: time.sleep(1e-3), warmup=1, repeats=3)
    assert len(times) == 3 and min(times) >= 1e-3
    with pytest.raises(BadInputError):
        time_fn(lambda: None, repeats=0)
    with pytest.raises(BadInputError):
        time_fn(lambda: None, warmup=-1)


def test_time_fn_min_seconds_extends_and_caps():
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.002)

    start = time.perf_counter()
    times = time_fn(slow, warmup=0, repeats=2, min_seconds=0.03)
    elapsed = time.perf_counter() - start
    assert len(calls) == len(times)
    assert len(times) > 2  # two 2 ms calls cannot fill 30 ms
    assert len(times) == 2 * timing.MAX_REPEAT_FACTOR or elapsed >= 0.03
    # an unreachable min_seconds stops at the cap of 20 x repeats
    calls.clear()
    times = time_fn(lambda: calls.append(1), warmup=1, repeats=3, min_seconds=1e6)
    assert len(times) == 3 * timing.MAX_REPEAT_FACTOR and len(calls) == len(times) + 1


# ----------------------------------------------------------------------------------------------------------------
# onnxruntime


def _check_stats(s: LatencyStats, batch: int, runs: int, warmup: int) -> None:
    assert (s.batch, s.runs, s.warmup) == (batch, runs, warmup)
    assert 0 < s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms
    assert s.throughput == pytest.approx(batch / (s.p50_ms / 1000))


def test_ort_session_matches_mxnet(exported):
    """The session (weights moved out of the graph inputs) computes what the Gluon net computes."""
    sess = ort.ort_session(exported["dynamic"], threads=1)
    assert [i.name for i in sess.get_inputs()] == ["data"]  # the weights are no longer inputs
    (y,) = sess.run(None, {"data": exported["x"]})
    np.testing.assert_allclose(y, exported["y"], rtol=1e-4, atol=1e-5)


def test_bench_onnx_dynamic_batch(exported):
    for batch in (1, 4):
        s = bench.bench_onnx(exported["dynamic"], batch=batch, threads=1, warmup=2, repeats=5)
        _check_stats(s, batch, 5, 2)
    with pytest.raises(BadInputError, match="fixed at 32"):
        bench.bench_onnx(exported["dynamic"], input_shape=(1, None, 64, 64), warmup=0, repeats=1)


def test_bench_onnx_fixed_batch(exported):
    _check_stats(bench.bench_onnx(exported["fixed"], batch=1, warmup=1, repeats=3), 1, 3, 1)
    with pytest.raises(BadInputError, match="fixed batch of 1"):
        bench.bench_onnx(exported["fixed"], batch=4, warmup=0, repeats=1)


def test_ort_session_profile(exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # onnxruntime writes its profile into the working folder
    sess = ort.ort_session(exported["fixed"], threads=1, profile=True)
    sess.run(None, {"data": exported["x"][:1]})
    trace = json.loads(Path(sess.end_profiling()).read_text())
    assert any(e.get("cat") == "Node" for e in trace)


ORT_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
MX_GPUS = mx.context.num_gpus()


def test_ort_providers():
    assert ort.ort_providers("cpu") == ["CPUExecutionProvider"]
    if not ORT_CUDA:
        with pytest.raises(BadInputError, match="no CUDA provider"):
            ort.ort_providers("gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not ORT_CUDA, reason="needs onnxruntime-gpu (a CUDA provider)")
def test_bench_onnx_on_the_gpu(exported):
    assert ort.ort_providers("gpu") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    sess = ort.ort_session(exported["dynamic"], device="gpu", threads=1)
    assert sess.get_providers()[0] == "CUDAExecutionProvider"  # not a silent fall-back to the CPU
    (y,) = sess.run(None, {"data": exported["x"]})
    np.testing.assert_allclose(y, exported["y"], rtol=1e-3, atol=1e-4)
    _check_stats(bench.bench_onnx(exported["dynamic"], batch=2, device="gpu", warmup=2, repeats=5), 2, 5, 2)


def test_corrupt_onnx(tmp_path, exported):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(Path(exported["fixed"]).read_bytes()[:4000])
    with pytest.raises(BadInputError, match="corrupt.onnx"):
        ort.ort_session(bad)
    assert_one_line_error(run_bench(str(bad), "--json"), "corrupt.onnx")
    assert_one_line_error(run_bench(str(tmp_path / "missing.onnx")), "missing.onnx", "no such file")


# ----------------------------------------------------------------------------------------------------------------
# MXNet


def test_bench_mxnet_hybridizes_and_counts():
    net = build_subnet(load_spec("oneshot", input_size=SIZE))
    assert not net._active
    s = bench.bench_mxnet(net, (2, 3, SIZE, SIZE), warmup=1, repeats=4)
    assert net._active  # benchmarked as deployed: one static graph
    _check_stats(s, 2, 4, 1)
    with pytest.raises(BadInputError, match="inference on input shape"):
        bench.bench_mxnet(net, (1, 5, SIZE, SIZE), warmup=0, repeats=1)  # 5 channels: the stem wants 3


def test_bench_symbol_with_and_without_params(exported):
    block = bench.load_symbol_block(exported["symbol"], exported["params"])
    np.testing.assert_allclose(block(mx.nd.array(exported["x"])).asnumpy(), exported["y"], rtol=1e-4, atol=1e-5)
    _check_stats(bench.bench_symbol(exported["symbol"], exported["params"], (1, 3, SIZE, SIZE), repeats=3), 1, 3, 10)
    _check_stats(bench.bench_symbol(exported["symbol"], None, (2, 3, SIZE, SIZE), warmup=1, repeats=3), 2, 3, 1)
    with pytest.raises(BadInputError, match="no such file"):
        bench.bench_symbol(exported["symbol"], str(exported["dir"] / "missing.params"), (1, 3, SIZE, SIZE))


@pytest.mark.skipif(not mx.runtime.Features().is_enabled("MKLDNN"), reason="int8 on CPU needs MXNet's oneDNN")
def test_bench_symbol_int8(exported):
    from mxnet.contrib import quantization

    sym, args, auxs = mx.model.load_checkpoint(exported["symbol"][: -len("-symbol.json")], 0)
    sym = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    qsym, qargs, qauxs = quantization.quantize_model_mkldnn(
        sym, args, auxs, ctx=mx.cpu(), calib_mode="none", quantized_dtype="auto", quantize_mode="smart"
    )
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")
    prefix = str(exported["dir"] / "oneshot32-int8")
    mx.model.save_checkpoint(prefix, 0, qsym, qargs, qauxs)
    assert "quantize" in Path(f"{prefix}-symbol.json").read_text()
    s = bench.bench_symbol(f"{prefix}-symbol.json", f"{prefix}-0000.params", (1, 3, SIZE, SIZE), warmup=1, repeats=3)
    _check_stats(s, 1, 3, 1)


def test_mxnet_context():
    assert bench.mxnet_context("cpu") == mx.cpu()
    if MX_GPUS == 0:
        with pytest.raises(BadInputError, match="no GPU"):
            bench.mxnet_context("gpu")


@pytest.mark.gpu
@pytest.mark.skipif(MX_GPUS == 0, reason="needs an MXNet build with GPU support and a visible GPU")
def test_bench_mxnet_on_the_gpu():
    assert bench.mxnet_context("gpu") == mx.gpu(0)
    net = build_subnet(load_spec("oneshot", input_size=SIZE), ctx=mx.gpu(0))
    s = bench.bench_mxnet(net, (2, 3, SIZE, SIZE), warmup=1, repeats=4)
    _check_stats(s, 2, 4, 1)
    assert all(p.list_ctx() == [mx.gpu(0)] for p in net.collect_params().values())  # timed where it lives


# ----------------------------------------------------------------------------------------------------------------
# spos-bench


def test_cli_json_onnx(exported):
    args = ["--batch", "2", "--threads", "1", "--repeats", "3", "--warmup", "1", "--throughput", "3", "--json"]
    proc = run_bench(exported["dynamic"], *args, "--sessions", "3")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    rows = d.pop("throughput")
    deployed = d.pop("deployed")  # the deployed-latency definition: fresh sessions' medians, a budget quantile
    assert len(deployed["session_ms"]) == 3 and all(v > 0 for v in deployed["session_ms"])
    assert deployed["ms"] == pytest.approx(float(np.median(deployed["session_ms"])), rel=1e-4)
    assert min(deployed["session_ms"]) <= deployed["budget_ms"] <= max(deployed["session_ms"])
    assert [(r["batch"], r["requests"], r["latency"]["batch"]) for r in rows] == [(3, 1, 3)]
    assert rows[0]["images_per_s"] == pytest.approx(3e3 / rows[0]["p50_ms"])
    assert set(d) == {
        "target",
        "runtime",
        "precision",
        "precision_source",
        "device",
        "providers",
        "threads",
        "batch",
        "latency",
        "warnings",
        "machine",
    }
    assert (d["target"], d["runtime"], d["device"]) == (exported["dynamic"], "onnxruntime", "cpu")
    assert (d["precision"], d["precision_source"]) == ("fp32", "file")
    assert d["warnings"] == d["latency"]["warnings"] + rows[0]["latency"]["warnings"]
    assert d["latency"]["load"]["usable_cores"] >= 1
    assert d["providers"] == ["CPUExecutionProvider"] and d["threads"] == 1 and d["batch"] == 2
    assert set(d["latency"]) == STATS_KEYS
    _check_stats(LatencyStats(**d["latency"]), batch=2, runs=3, warmup=1)
    assert d["machine"]["onnxruntime"] == onnxruntime.__version__ and d["machine"]["logical_cores"] >= 1


def test_cli_builtin_json_and_text():
    args = ["oneshot", "--input-size", str(SIZE), "--repeats", "3", "--warmup", "1"]
    proc = run_bench(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert "deployed" not in d  # fresh sessions are measured for deployed files (onnxruntime, OpenVINO) only
    assert (d["runtime"], d["device"], d["batch"], d["threads"]) == ("mxnet", "cpu", 1, None)
    assert "providers" not in d and d["note"] == "random weights: latency only"
    assert set(d["latency"]) == STATS_KEYS
    _check_stats(LatencyStats(**d["latency"]), batch=1, runs=3, warmup=1)
    assert d["machine"]["mxnet"] == mx.__version__
    proc = run_bench(*args)
    assert proc.returncode == 0, proc.stderr
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
    assert len(table) == 3 and "p50 ms" in table[0] and "images/s" in table[0]  # header, rule, one row
    assert "random weights: latency only" in proc.stdout and "machine: " in proc.stdout


def test_cli_symbol_with_params(exported):
    proc = run_bench(exported["symbol"], "--params", exported["params"], "--input-size", str(SIZE), "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    assert "mxnet" in proc.stdout and "random weights" not in proc.stdout


@pytest.mark.skipif(MX_GPUS > 0 or ORT_CUDA, reason="a GPU runtime is present")
def test_cli_gpu_unavailable(exported):
    assert_one_line_error(run_bench("oneshot", "--device", "gpu", "--input-size", str(SIZE)), "--device gpu", "MXNet")
    assert_one_line_error(run_bench(exported["dynamic"], "--device", "gpu", "--json"), "--device gpu", "onnxruntime")


def test_cli_bad_arguments(exported):
    assert_one_line_error(run_bench("oneshot", "--batch", "0", "--json"), "--batch", "must be >= 1")
    assert_one_line_error(run_bench("oneshot", "--params", exported["params"]), "--params")
