"""Measured time per op and per block, from onnxruntime's own profiler, mapped back to the model's blocks.

The network is deployed as it would ship (BN merged, ONNX, onnxruntime with all graph optimisations);
node names survive export (``b03_pw1_fwd``), so each profiled node is attributed to its block. Fused
nodes keep the name of their first member.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.bench import bench_onnx
from spos_deploy.runtime.ort import ort_runner, ort_session
from spos_deploy.runtime.timing import check_counts
from spos_deploy.space import owner

ORT_SUFFIXES = ("_nchwc",)


def op_key(ops_ms: dict[str, float], name: str) -> str | None:
    """The profiled node that holds a graph op's time; a conv fused with its activation is profiled under
    the activation's name (``b03_pw1_fwd`` -> ``b03_pw1_act_fwd``)."""
    if name in ops_ms:
        return name
    fused = name.replace("_fwd", "_act_fwd")
    return fused if name.endswith("_fwd") and fused in ops_ms else None


def parse_ort_profile(events: list[dict[str, Any]]) -> dict[str, float]:
    """Median over runs of every node's milliseconds per run, from an onnxruntime profile trace (pure).

    The median, not the mean: one run slowed by another process would otherwise inflate every node of
    that run. Runs are told apart by the trace's ``model_run`` events; names that layout transforms
    gave a suffix are added to the node they came from.
    """
    starts = sorted(ev["ts"] for ev in events if ev.get("name") == "model_run")
    per_run: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        for suffix in ORT_SUFFIXES:
            name = name.removesuffix(suffix)
        run = bisect.bisect_right(starts, ev.get("ts", 0))
        per_run[name][run] += ev.get("dur", 0) / 1e3
    return {k: float(np.median(list(v.values()))) for k, v in per_run.items()}


def after_first_run(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace without the first inference: a fresh session's first run allocates its memory and is
    several times slower than the ones a deployed model sees (pure)."""
    runs = sorted((ev["ts"], ev.get("dur", 0)) for ev in events if ev.get("name") == "model_run")
    if not runs:
        return events
    first_end = runs[0][0] + runs[0][1]
    return [ev for ev in events if ev.get("cat") != "Node" or ev.get("ts", 0) >= first_end]


def _profiled_events(path: Path, device: str, threads: int | None, runs: int) -> list[dict[str, Any]]:
    """The trace of ``runs`` inferences of a fresh profiling session after its first (the file is removed)."""
    run = ort_runner(ort_session(path, device=device, threads=threads, profile=True), label=str(path))
    for _ in range(runs):  # ort_runner made the first one, which is dropped
        run()
    trace_file = run.session.end_profiling()
    try:
        return after_first_run(json.loads(Path(trace_file).read_text()))
    finally:
        os.remove(trace_file)


def measure_spec(spec: ModelSpec, device: str = "cpu", runs: int = 30, threads: int | None = None) -> dict[str, Any]:
    """Per-node and per-block times of ``spec`` (random weights; time does not depend on them)."""
    check_counts(repeats=runs)
    from spos_deploy.deploy.onnx import export_onnx
    from spos_deploy.deploy.transforms import merge_bn
    from spos_deploy.nets.network import build_subnet

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(merge_bn(build_subnet(spec, seed=0)), Path(tmp) / "m.onnx")
        e2e = bench_onnx(path, batch=1, threads=threads, device=device, warmup=5, repeats=runs)
        events = _profiled_events(path, device, threads, runs=runs)
    ops = parse_ort_profile(events)
    blocks: dict[str, float] = defaultdict(float)
    for node, ms in ops.items():
        blocks[owner(node)] += ms
    return {
        "runtime": "onnxruntime",
        "device": device,
        "runs": runs,
        "end_to_end_p50_ms": e2e.p50_ms,
        "nodes_total_ms": float(sum(ops.values())),
        "blocks_ms": dict(blocks),
        "ops_ms": ops,
    }
