"""Measured time per op and per block, from onnxruntime's profiler or OpenVINO's per-layer performance
counters, mapped back to the model's blocks.

The network is deployed as it would ship (BN merged, ONNX, then onnxruntime with all graph optimisations
or OpenVINO at an explicit precision); node names survive export (``b03_pw1_fwd``), so each profiled node
is attributed to its block. Fused nodes keep the name of their first member. OpenVINO names a layer after
the ONNX node with a suffix (``b03_pw1_fwd/WithoutBiases``) and a layout Reorder after the layers it joins
(``b03_pw1_fwd/WithoutBiases_acdb_abcd_b03_pw1_act_hard_sigmoid0``): a Reorder is charged to the node it
comes from, or the one it feeds when that one is unknown. What maps to no block (``VariadicSplit_6078``)
is the ``other`` row, so the blocks plus ``other`` add up to the counters' total.

This module profiles a file (:func:`measure_file`); the network of a spec is exported for it, a layer up, by
:func:`spos_deploy.deploy.timing_forms.measure_spec`.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.errors import BadInputError
from spos_deploy.runtime.bench import bench_onnx
from spos_deploy.runtime.ort import ort_runner, ort_session
from spos_deploy.runtime.registry import profiling_engines
from spos_deploy.runtime.timing import check_counts
from spos_deploy.space import owner

ORT_SUFFIXES = ("_nchwc",)
_OV_REORDER = re.compile(r"_([a-fA-F][a-fA-F0-9]*)_([a-fA-F][a-fA-F0-9]*)_")  # _abcd_acdb_: oneDNN layout tags


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


def ov_base(name: str) -> str:
    """The ONNX node an OpenVINO layer name comes from: ``b03_pw1_fwd/WithoutBiases`` -> ``b03_pw1_fwd``."""
    return name.split("/", 1)[0]


def ov_node(name: str, layer_type: str, known: set[str]) -> str:
    """The node an OpenVINO layer's time belongs to (pure): its base name, or for a Reorder the known node
    it comes from (else the one it feeds, else its own name)."""
    if layer_type != "Reorder":
        return ov_base(name)
    splits = [(name[: m.start()], name[m.end() :]) for m in _OV_REORDER.finditer(name)]
    for src, _ in splits:
        if ov_base(src) in known:
            return ov_base(src)
    for _, dst in splits:
        if ov_base(dst) in known:
            return ov_base(dst)
    return ov_base(splits[0][0]) if splits else ov_base(name)


def parse_ov_counters(runs: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Median over runs of every node's milliseconds per run, from :func:`~spos_deploy.runtime.openvino.
    layer_times` of each run (pure); the median for the reason :func:`parse_ort_profile` gives."""
    known = {ov_base(r["node"]) for run in runs for r in run if r["type"] != "Reorder"}
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(runs))
    for i, run in enumerate(runs):
        for r in run:
            per_run[ov_node(r["node"], r["type"], known)][i] += r["ms"]
    return {k: float(np.median(v)) for k, v in per_run.items()}


def _ov_ops(path: Path, precision: str, threads: int | None, runs: int) -> tuple[dict[str, float], Any, dict]:
    """Per-node medians of ``runs`` profiled inferences (the untimed first one dropped), the end-to-end
    latency of the same settings without counters, and what was compiled (with ``counters_total_ms``, the
    median over runs of all counters of a run: what the per-node medians should add up to)."""
    from spos_deploy.runtime.bench import bench_openvino
    from spos_deploy.runtime.openvino import layer_times, ov_compile, ov_runner

    e2e, info = bench_openvino(path, batch=1, threads=threads, precision=precision, warmup=5, repeats=runs)
    run = ov_runner(ov_compile(path, precision, threads, perf_count=True, label=str(path)), label=str(path))
    counters = []
    for _ in range(runs):  # ov_runner made the first one, which is dropped
        run()
        counters.append(layer_times(run.request))
    info = {**info, "counters_total_ms": float(np.median([sum(r["ms"] for r in run) for run in counters]))}
    return parse_ov_counters(counters), e2e, info


def _check_openvino(device: str, precision: str) -> None:
    from spos_deploy.runtime.openvino import check_precision, require_openvino

    require_openvino("--measure --runtime openvino")
    if device != "cpu":
        raise BadInputError(f"--device {device}: the OpenVINO runtime here runs on the CPU only")
    if precision == "int8":
        raise BadInputError("--precision int8: profiling runs the random-weight fp32 export; use fp32 or bf16")
    check_precision(precision)


def _ort_ops(path: Path, device: str, precision: str, threads: int | None, runs: int) -> tuple[dict, Any, dict]:
    """Per-node medians of a profiling session, the end-to-end latency, nothing more to report."""
    e2e = bench_onnx(path, batch=1, threads=threads, device=device, warmup=5, repeats=runs)
    return parse_ort_profile(_profiled_events(path, device, threads, runs=runs)), e2e, {}


def _openvino_ops(path: Path, device: str, precision: str, threads: int | None, runs: int) -> tuple[dict, Any, dict]:
    ops, e2e, info = _ov_ops(path, precision, threads, runs)
    return ops, e2e, {"openvino": info}


PROFILERS = {"onnxruntime": (None, _ort_ops), "openvino": (_check_openvino, _openvino_ops)}
"""Per engine of :func:`spos_deploy.runtime.registry.profiling_engines`: its up-front check and its profile."""


def check_profile(device: str = "cpu", runs: int = 30, runtime: str = "onnxruntime", precision: str = "fp32") -> None:
    """Refuse, before anything is built, a profile this machine or engine cannot give."""
    check_counts(repeats=runs)
    if runtime not in profiling_engines():
        raise BadInputError(f"--runtime {runtime}: use {' or '.join(profiling_engines())}")
    check = PROFILERS[runtime][0]
    if check is not None:
        check(device, precision)


def measure_file(
    path: str | os.PathLike[str],
    device: str = "cpu",
    runs: int = 30,
    threads: int | None = None,
    runtime: str = "onnxruntime",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Per-node and per-block times of the ONNX file ``path`` with onnxruntime's profiler or OpenVINO's
    counters (``precision``: fp32 or bf16; CPU only), and its end-to-end latency. The deployed network of a
    spec is exported by :func:`spos_deploy.deploy.timing_forms.measure_spec`, which calls this."""
    check_profile(device, runs, runtime, precision)
    ops, e2e, extra = PROFILERS[runtime][1](Path(path), device, precision, threads, runs)
    blocks: dict[str, float] = defaultdict(float)
    for node, ms in ops.items():
        blocks[owner(node)] += ms
    return {
        "runtime": runtime,
        "device": device,
        "runs": runs,
        "end_to_end_p50_ms": e2e.p50_ms,
        "nodes_total_ms": float(sum(ops.values())),
        "blocks_ms": dict(blocks),
        "ops_ms": ops,
        "load": e2e.load,
        "warnings": e2e.warnings,
        **extra,
    }
