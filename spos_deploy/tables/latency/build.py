"""Measure latency lookup tables on this machine: every (position, block, channel) in its deployed form.

How (onnxruntime and OpenVINO): one uniform network per (block, channel) choice is built with BN merged,
exported to ONNX in the form that runtime ships (int8 QDQ for onnxruntime ``--precision int8``; the
HardSwish-op form for OpenVINO, NNCF-quantized for its int8), and each position's block is cut out of
it between its input and output tensors, so every entry runs the exact nodes that ship, with its real
input shape. The stem and the head are cut the same way. A few random whole networks are measured at
the end to fit the additive predictor's correction; then ``fit_networks`` whole networks, from the
narrowest to the widest, are measured in their deployed form (:mod:`spos_deploy.runtime.deployed`) and
the fitted predictor is solved on them (:mod:`spos_deploy.tables.latency.fit`), the part-timed entries as
its prior. Last, a few fixed anchor networks are timed so that a later use can tell how much faster or
slower the machine has become (:func:`time_anchors`). Progress goes to a
``.partial.jsonl`` file after every entry: a crash or Ctrl-C loses at most the entry being timed, and
``resume=True`` continues.

What this module does not own: each runtime's record (how it runs a file, its precisions and fingerprint
fields) is in :mod:`spos_deploy.runtime.registry`, the deployed forms in
:mod:`spos_deploy.deploy.timing_forms`, interleaved timing in :mod:`spos_deploy.runtime.interleave`, and the
fingerprint and its check in :mod:`spos_deploy.tables.latency.table`.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.deploy.timing_forms import check_form, export_deployed
from spos_deploy.errors import BadInputError
from spos_deploy.machine import cpu_info
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.deployed import BUDGET_QUANTILE, SESSIONS, DeployedLatency, measure_deployed, session_matrix
from spos_deploy.runtime.interleave import interleaved_rounds, round_medians
from spos_deploy.runtime.registry import DEFAULT_RUNTIME, Runtime, gpu_name, runtime_named, runtime_names
from spos_deploy.runtime.timing import time_fn
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.build_common import uniform_spec
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.table import (
    LatencyTable,
    check_fingerprint,
    default_fit_networks,
    fingerprint_here,
    fit_correction,
)

log = logging.getLogger(__name__)

RUNTIMES = runtime_names()  # the latency runtimes of spos_deploy.runtime.registry
PRECISIONS = ("fp32", "int8", "bf16")
ANCHORS = 5  # a median of 5 ratios: one disturbed anchor does not move it
ANCHOR_PASSES = 12  # short bursts scatter by several percent on a shared VM: a median of 12 per anchor
FIT_GROUP = 10  # networks exported and measured interleaved together (and checkpointed) at a time


@dataclass
class LatencySetup:
    runtime: str = DEFAULT_RUNTIME
    precision: str = "fp32"
    batch: int = 1
    threads: int | None = None  # None: every core this process may use
    shuffle: str = "reshape"
    warmup: int = 10
    repeats: int = 40
    min_seconds: float = 0.05
    network_repeats: int = 100  # whole networks (calibration, validation): fewer of them, each timed longer
    network_min_seconds: float = 0.5
    max_dispersion: float = 0.10  # relative IQR above which an entry is measured again
    retries: int = 2
    calibration_networks: int = 12
    seed: int = 0
    anchors: int = ANCHORS
    fit_networks: int | None = None  # whole networks the fitted predictor is solved on (0: additive only;
    # None: the space's default, :func:`spos_deploy.tables.latency.table.default_fit_networks`)
    sessions: int = SESSIONS  # fresh sessions per whole network (the deployed-latency definition)

    @property
    def runtime_record(self) -> Runtime:
        """The runtime's record (:mod:`spos_deploy.runtime.registry`): how it runs a file, its precisions, ..."""
        return runtime_named(self.runtime)

    @property
    def onnx_runtime(self) -> bool:
        """Measured on cut ONNX parts (onnxruntime or OpenVINO), not on MXNet blocks."""
        return self.runtime_record.onnx_parts

    def resolved_threads(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))

    def resolved_fit_networks(self, space: SearchSpace) -> int:
        """``fit_networks``, or the space's default count when it is None."""
        return default_fit_networks(space) if self.fit_networks is None else self.fit_networks

    def runner(self, path: str | Path, shape: tuple[int, ...]) -> Callable[[], Any]:
        """One synchronous inference of the ONNX file ``path`` on a fixed input of ``shape``, in the table's
        runtime, precision and threads (a fresh session or compiled model each time)."""
        return self.runtime_record.runner(path, shape, self.precision, self.resolved_threads())

    def check(self) -> None:
        rt = self.runtime_record  # refuses an unknown runtime, naming them
        if self.precision not in PRECISIONS:
            raise BadInputError(f"--precision {self.precision}: use one of {', '.join(PRECISIONS)}")
        rt.refuse_precision(self.precision)
        if self.batch < 1 or self.resolved_threads() < 1 or self.repeats < 3 or self.anchors < 0:
            raise BadInputError("--batch and --threads must be >= 1, --repeats >= 3 and anchors >= 0")
        if (self.fit_networks is not None and self.fit_networks < 0) or self.sessions < 1:
            raise BadInputError("--fit-networks must be >= 0 and --sessions >= 1")
        rt.require(self.precision)
        check_form(self.runtime, self.precision)


def fingerprint(setup: LatencySetup, space: SearchSpace) -> dict[str, Any]:
    """What a table was measured on (:func:`spos_deploy.tables.latency.table.fingerprint_here` of its settings);
    :data:`spos_deploy.tables.latency.table.MATCH_KEYS` must match to use it."""
    return fingerprint_here(space, setup.runtime, setup.precision, setup.batch, setup.resolved_threads(), setup.shuffle)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---- progress file ----------------------------------------------------------------------------------
class Progress:
    """Append-only record of measured entries (JSON lines, flushed and synced after each)."""

    def __init__(self, path: Path, header: dict[str, Any], resume: bool):
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            if not resume:
                raise BadInputError(f"{path}: an interrupted build left this; rerun with --resume, or delete it")
            lines = path.read_text().splitlines()
            try:
                old = json.loads(lines[0])
            except (IndexError, json.JSONDecodeError):
                raise BadInputError(f"{path}: unreadable progress file; delete it to start over") from None
            if not isinstance(old, dict) or "fingerprint" not in old:
                raise BadInputError(f"{path}: unreadable progress file; delete it to start over")
            check_fingerprint(old["fingerprint"], header["fingerprint"], str(path), hint="delete it to start over")
            if old.get("config") != header["config"] or old.get("setup") != header["setup"]:
                raise BadInputError(f"{path}: the interrupted build used other settings; delete it to start over")
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the crash: measured again
                self.done[rec["key"]] = rec
            log.info("resuming: %d measurements already done", len(self.done))
            self._f = path.open("a")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = path.open("w")
            self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        self._f.write(json.dumps(obj) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def add(self, rec: dict[str, Any]) -> None:
        self.done[rec["key"]] = rec
        self._write(rec)

    def close(self) -> None:
        self._f.close()


# ---- measuring ----------------------------------------------------------------------------------------
def _stable_time(fn: Callable[[], Any], setup: LatencySetup) -> tuple[float, float]:
    """(median ms, relative IQR), measured again up to ``retries`` times while too dispersed."""
    best: tuple[float, float] | None = None
    for _ in range(1 + setup.retries):
        times = np.array(time_fn(fn, warmup=setup.warmup, repeats=setup.repeats, min_seconds=setup.min_seconds))
        ms = times * 1e3
        q1, med, q3 = np.percentile(ms, [25, 50, 75])
        disp = float((q3 - q1) / med) if med > 0 else 0.0
        if best is None or disp < best[1]:
            best = (float(med), disp)
        if disp <= setup.max_dispersion:
            break
    assert best is not None
    return best


def onnx_runner(path: str | Path, shape: tuple[int, ...], setup: LatencySetup) -> Callable[[], Any]:
    """:meth:`LatencySetup.runner` (the name the benchmarks import)."""
    return setup.runner(path, shape)


def part_boundaries(model) -> dict[str, tuple[str, str]]:
    """Input and output tensor of every part (stem, bNN, head) of an exported chain network."""
    from spos_deploy.space import owner

    last_out: dict[str, str] = {}
    for node in model.graph.node:
        part = owner(node.name)
        # weight dequantizers can sit anywhere in a QDQ graph: only compute nodes mark where a part ends
        if part != "other" and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            last_out[part] = node.output[0]
    order = ["stem"] + sorted(p for p in last_out if p.startswith("b")) + ["head"]
    bounds: dict[str, tuple[str, str]] = {}
    prev = model.graph.input[0].name
    for part in order:
        out = model.graph.output[0].name if part == "head" else last_out[part]
        bounds[part] = (prev, out)
        prev = out
    return bounds


class PartTimer:
    """Times parts of one exported network with onnxruntime or OpenVINO (cut with onnx's Extractor)."""

    def __init__(self, path: Path, setup: LatencySetup):
        import onnx

        self.model = onnx.load(str(path))
        self.extractor = onnx.utils.Extractor(self.model)
        self.bounds = part_boundaries(self.model)
        self.setup = setup

    def runner(self, part: str, input_shape: tuple[int, ...]) -> Callable[[], Any]:
        src, dst = self.bounds[part]
        sub = self.extractor.extract_model([src], [dst])
        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            f.write(sub.SerializeToString())
            f.flush()
            return self.setup.runner(f.name, input_shape)

    def time_part(self, part: str, input_shape: tuple[int, ...]) -> tuple[float, float]:
        return _stable_time(self.runner(part, input_shape), self.setup)


OrtPartTimer = PartTimer  # the name before OpenVINO parts


def _part_input_shapes(space: SearchSpace, batch: int) -> dict[str, tuple[int, ...]]:
    s = space.input_size
    shapes = {"stem": (batch, 3, s, s)}
    for p in space.positions():
        shapes[part_key(p.index)] = (batch, p.in_channels, p.in_size, p.in_size)
    last = space.positions()[-1]
    shapes["head"] = (batch, last.out_channels, last.out_size, last.out_size)
    return shapes


def _whole(setup: LatencySetup) -> LatencySetup:
    """Settings for timing a whole network: many more runs (a 2-core VM swings by several % over 20 runs)."""
    return replace(
        setup,
        repeats=max(setup.repeats, setup.network_repeats),
        min_seconds=max(setup.min_seconds, setup.network_min_seconds),
    )


def _time_whole(path: Path, setup: LatencySetup, shape: tuple[int, ...]) -> tuple[float, float]:
    return _stable_time(setup.runner(path, shape), _whole(setup))


def network_shape(space: SearchSpace, setup: LatencySetup) -> tuple[int, ...]:
    return (setup.batch, 3, space.input_size, space.input_size)


def measure_network(spec: ModelSpec, setup: LatencySetup) -> float:
    """Median end-to-end latency (ms) of ``spec`` in its deployed form, with random weights."""
    shape = network_shape(spec.space, setup)
    if setup.onnx_runtime:
        with tempfile.TemporaryDirectory() as tmp:
            path = export_deployed(spec, Path(tmp), setup.precision, setup.seed, setup.runtime)
            return _time_whole(path, setup, shape)[0]
    return _time_mxnet(_mxnet_deployed(spec, setup), shape, _whole(setup))[0]


def interleaved_passes(
    runs: list[list[Callable[[], Any]]], passes: int, repeats: int, min_seconds: float = 0.0, seed: int = 0
) -> np.ndarray:
    """``[passes, networks]`` median ms: each pass times every network once, in a shuffled order, with the
    next of its runners (sessions) in turn (:func:`spos_deploy.runtime.interleave.interleaved_rounds`). A
    machine's drift then hits all networks alike."""
    timed = interleaved_rounds(
        dict(enumerate(runs)), passes, repeats, turn_warmup=3, min_seconds=min_seconds, seed=seed
    )
    return round_medians(timed)


def anchor_specs(space: SearchSpace, setup: LatencySetup) -> list[ModelSpec]:
    """The fixed anchor networks of a table: small to large (:func:`calibration_window`), drawn from the seed
    alone, so every table of one space and seed has the same anchors."""
    rng = np.random.default_rng([setup.seed, 7])
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    specs = []
    for k in range(setup.anchors):
        lo, hi = calibration_window(k, setup.anchors, S)
        blocks = tuple(map(int, rng.integers(0, B, L)))
        channels = tuple(map(int, space.fix_channels(rng.integers(lo, hi + 1, L))))
        specs.append(ModelSpec(space, blocks, channels, f"anchor{k}", shuffle=setup.shuffle))
    return specs


def time_anchors(specs: list[ModelSpec], setup: LatencySetup, passes: int = ANCHOR_PASSES) -> list[float]:
    """End-to-end ms of the anchor networks, measured the one way used both when a table is built (kept as
    a record) and when it is re-anchored (compared with the table's predictions of them): ``passes``
    interleaved fresh sessions per anchor (:func:`spos_deploy.runtime.deployed.session_matrix`), the
    median of their session medians; a few seconds of timing on a 2-core CPU."""
    if not specs:
        return []
    shape = network_shape(specs[0].space, setup)
    with tempfile.TemporaryDirectory() as tmp:
        if setup.onnx_runtime:
            paths = [export_deployed(s, Path(tmp), setup.precision, setup.seed, setup.runtime) for s in specs]
            per_pass = session_matrix([lambda p=p: setup.runner(p, shape) for p in paths], passes, calls=10)
        else:
            runs = [[_mxnet_call(_mxnet_deployed(s, setup), shape, setup)] for s in specs]
            per_pass = interleaved_passes(runs, passes, repeats=10, min_seconds=0.05)
    return [float(v) for v in np.median(per_pass, axis=0)]


def _mxnet_ctx(setup: LatencySetup):
    from spos_deploy.runtime.bench import mxnet_context

    return mxnet_context(setup.runtime_record.device)


def _mxnet_deployed(spec: ModelSpec, setup: LatencySetup):
    from spos_deploy.deploy.transforms import merge_bn
    from spos_deploy.nets.network import build_subnet

    ctx = _mxnet_ctx(setup)
    net = merge_bn(build_subnet(spec, seed=setup.seed, ctx=ctx), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _mxnet_call(block, shape: tuple[int, ...], setup: LatencySetup) -> Callable[[], Any]:
    import mxnet as mx

    x = mx.nd.random.normal(shape=shape, ctx=_mxnet_ctx(setup))
    block(x).wait_to_read()
    return lambda: block(x).wait_to_read()


def _time_mxnet(block, shape: tuple[int, ...], setup: LatencySetup) -> tuple[float, float]:
    return _stable_time(_mxnet_call(block, shape, setup), setup)


def _part_measurer(
    spec: ModelSpec, setup: LatencySetup, tmp: Path, shapes: dict[str, tuple[int, ...]]
) -> Callable[[str], tuple[float, float]]:
    """A function timing one part (stem, bNN, head) of ``spec``'s deployed network."""
    if setup.onnx_runtime:
        timer = PartTimer(export_deployed(spec, tmp, setup.precision, setup.seed, setup.runtime), setup)
        return lambda part: timer.time_part(part, shapes[part])
    net = _mxnet_deployed(spec, setup)
    parts = {"stem": net.stem, "head": net.head, **{part_key(i): blk for i, blk in enumerate(net.features)}}
    return lambda part: _time_mxnet(parts[part], shapes[part], setup)


def calibration_window(k: int, n: int, num_scales: int, width: int = 4) -> tuple[int, int]:
    """Channel-choice window of calibration network ``k`` of ``n``: the windows slide from the narrowest
    scales to the widest, so the networks span small to large and the fitted line is well conditioned
    (random networks alone bunch in the middle, where a 12-point fit's slope is mostly noise)."""
    width = min(width, num_scales)
    lo = round(k * (num_scales - width) / max(1, n - 1))
    return lo, lo + width - 1


def _drift_probe(
    space: SearchSpace, setup: LatencySetup, tmp: Path, shapes: dict[str, tuple[int, ...]]
) -> Callable[[], float | None]:
    """A fixed workload timed before every group of entries, to undo the machine's drift over the build.

    A shared VM's speed wanders by several percent over minutes; entries measured in a slow spell would
    otherwise all be too large together. The probe is one mid-network block; each record stores the
    probe's time next to it and entries are scaled by median(probe) / probe-at-the-time.
    """
    if not setup.onnx_runtime:
        return lambda: None
    spec, _ = uniform_spec(space, 0, space.widest_choice, setup.shuffle, name=f"uniform-0-{space.widest_choice}")
    part = part_key(space.num_positions // 2)
    (tmp / "probe").mkdir(exist_ok=True)
    timer = PartTimer(export_deployed(spec, tmp / "probe", setup.precision, setup.seed, setup.runtime), setup)
    run = timer.runner(part, shapes[part])
    return lambda: float(np.median(time_fn(run, warmup=5, repeats=60)) * 1e3)


def _entry_key(part: str, b: int | None = None, c: int | None = None) -> str:
    return part if b is None else f"{part}:{b}:{c}"


def _measure_entries(
    space: SearchSpace,
    setup: LatencySetup,
    prog: Progress,
    tmp: Path,
    probe: Callable[[], float | None],
    bar: tqdm,
) -> None:
    """Every (position, block, channel) entry plus stem and head not yet in ``prog``, one uniform network each."""
    shapes = _part_input_shapes(space, setup.batch)
    for b in range(space.num_blocks):
        for c in range(space.num_scales):
            spec, valid = uniform_spec(space, b, c, setup.shuffle, name=f"uniform-{b}-{c}")
            keys = [_entry_key(part_key(p.index), b, c) for p in valid]
            if b == 0 and c == 0:
                keys += ["stem", "head"]
            todo = [k for k in keys if k not in prog.done]
            if not todo:
                continue
            measure = _part_measurer(spec, setup, tmp, shapes)
            ref = probe()
            for key in todo:
                ms, disp = measure(key.split(":")[0])
                prog.add({"key": key, "ms": ms, "dispersion": disp, "ref": ref})
                bar.update(1)


def _measure_calibration(
    space: SearchSpace, setup: LatencySetup, prog: Progress, probe: Callable[[], float | None], bar: tqdm
) -> None:
    """The whole networks the correction is fitted on (:func:`calibration_window`), those not yet in ``prog``."""
    rng = np.random.default_rng(setup.seed + 1)
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    for k in range(setup.calibration_networks):
        key = f"net:{k}"
        blocks = rng.integers(0, B, L)
        lo, hi = calibration_window(k, setup.calibration_networks, S)
        channels = space.fix_channels(rng.integers(lo, hi + 1, L))
        if key in prog.done:
            continue  # the draws above still happen: a resumed build measures the same networks
        spec = ModelSpec(space, tuple(map(int, blocks)), tuple(channels), f"calib{k}", shuffle=setup.shuffle)
        rec = {"key": key, "ref": probe(), "ms": measure_network(spec, setup)}
        prog.add({**rec, "blocks": spec.block_choices, "channels": spec.channel_choices})
        bar.update(1)


def fit_architectures(space: SearchSpace, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``[n, L]`` architectures the fitted predictor is solved on: first every (block, width) as a uniform
    network (each choice seen at every position; where the part-timed sums were most wrong), then random
    architectures, drawn like those a search meets, so that every choice is also seen beside others."""

    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    blocks = [[b] * L for c in range(S) for b in range(B)]
    channels = [space.fix_channels([c] * L) for c in range(S) for _ in range(B)]
    rb, rc = random_architectures(space, max(0, n - len(blocks)), seed + 11)
    return np.array(blocks + rb.tolist(), int)[:n], np.array(channels + rc.tolist(), int)[:n]


def measure_deployed_specs(
    specs: list[ModelSpec],
    setup: LatencySetup,
    folder: Path,
    seed: int = 0,
    repeats: int = 1,
    progress: bool = False,
) -> list[Any] | list[list[Any]]:
    """:func:`spos_deploy.runtime.deployed.measure_deployed` of ``specs`` exported in the table's deployed form
    and settings (onnxruntime or OpenVINO): each session a fresh one, made from the exported file. With
    ``repeats`` > 1, that many independent measurements of the same exports (seeds ``seed``, ``seed + 1``, ...),
    a list of lists. ``progress``: bars for the exports and each measurement (a benchmark's 50 networks in 15
    sessions each, twice, take a quarter of an hour)."""
    shape = network_shape(specs[0].space, setup)
    exports = tqdm(specs, desc="networks: export", unit="net", disable=not progress, leave=False)
    paths = [export_deployed(s, folder, setup.precision, setup.seed, setup.runtime) for s in exports]
    makers = [lambda p=p: setup.runner(p, shape) for p in paths]
    runs = [
        measure_deployed(
            makers,
            sessions=setup.sessions,
            seed=seed + r,
            progress=progress,
            desc=f"networks: measurement {r + 1} of {repeats}",
            leave=False,
        )
        for r in range(repeats)
    ]
    return runs[0] if repeats == 1 else runs


def _measure_fit_networks(
    space: SearchSpace, setup: LatencySetup, prog: Progress, tmp: Path, probe: Callable[[], float | None], bar: tqdm
) -> None:
    """The whole networks of the fitted predictor, in ``setup.sessions`` interleaved passes over all of them
    (one fresh session per network a pass, :func:`spos_deploy.runtime.deployed.session_matrix`), so that the
    machine's drift over the minutes this takes moves every network alike; each pass is checkpointed."""
    count = setup.resolved_fit_networks(space)
    if not setup.onnx_runtime or count == 0:
        return
    todo = [s for s in range(setup.sessions) if f"fitpass:{s}" not in prog.done]
    if not todo:
        return
    blocks, channels = fit_architectures(space, count, setup.seed)
    if "fitnets" not in prog.done:
        prog.add({"key": "fitnets", "blocks": blocks.tolist(), "channels": channels.tolist()})
    shape = network_shape(space, setup)
    folder = tmp / "fit"
    folder.mkdir(exist_ok=True)
    # the exports and each pass take minutes (480 quantized networks): their own bars, under the build's
    nets = tqdm(
        list(enumerate(zip(blocks, channels))),
        desc="  fit networks: export",
        unit="net",
        leave=False,
        disable=bar.disable,
    )
    paths = [
        export_deployed(
            ModelSpec(space, tuple(map(int, b)), tuple(map(int, c)), f"fit{k}", shuffle=setup.shuffle),
            folder,
            setup.precision,
            setup.seed,
            setup.runtime,
        )
        for k, (b, c) in nets
    ]
    makers = [lambda p=p: setup.runner(p, shape) for p in paths]
    for s in todo:
        desc = f"  fit networks: pass {s + 1} of {setup.sessions}"
        row = session_matrix(makers, 1, seed=setup.seed + 100 + s, progress=not bar.disable, desc=desc, leave=False)[0]
        prog.add({"key": f"fitpass:{s}", "ref": probe(), "ms": [float(v) for v in row]})
        bar.update(1)


def _measure_anchors(
    space: SearchSpace, setup: LatencySetup, prog: Progress, probe: Callable[[], float | None], bar: tqdm
) -> None:
    """The anchor networks' end-to-end times now (:func:`time_anchors`), with the probe before and after."""
    if setup.anchors == 0 or "anchors" in prog.done:
        return
    before = probe()
    ms = time_anchors(anchor_specs(space, setup), setup)
    after = probe()
    ref = (before + after) / 2 if before and after else None
    prog.add({"key": "anchors", "ms": ms, "ref": ref})
    bar.update(1)


def progress_header(space: SearchSpace, setup: LatencySetup) -> dict[str, Any]:
    """The first line of a build's progress file: what a resumed build must match. The fit count is written
    resolved, so a build interrupted under one default resumes only with the same count."""
    settings = asdict(setup) | {"fit_networks": setup.resolved_fit_networks(space)}
    return {"fingerprint": fingerprint(setup, space), "config": space.to_config(), "setup": settings}


def build_latency_table(
    space: SearchSpace, setup: LatencySetup, out: Path, resume: bool = False, progress: bool = True
) -> LatencyTable:
    """Measure every entry (checkpointed to ``out.partial.jsonl``) and write the table to ``out`` atomically."""
    setup.check()
    header = progress_header(space, setup)
    fp = header["fingerprint"]
    partial = out.with_name(out.name + ".partial.jsonl")
    prog = Progress(partial, header, resume)
    entries = sum(space.channel_valid(p, c) for p in space.positions() for c in range(space.num_scales))
    fits = setup.sessions if setup.onnx_runtime and setup.resolved_fit_networks(space) else 0
    bar = tqdm(
        total=entries * space.num_blocks + 2 + setup.calibration_networks + fits + (setup.anchors > 0),
        initial=len(prog.done),
        desc=f"latency table ({setup.runtime_record.label}, {setup.precision})",
        unit="entry",
        disable=not progress,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            probe = _drift_probe(space, setup, Path(tmp), _part_input_shapes(space, setup.batch))
            _measure_entries(space, setup, prog, Path(tmp), probe, bar)
            _measure_calibration(space, setup, prog, probe, bar)
            _measure_fit_networks(space, setup, prog, Path(tmp), probe, bar)
            _measure_anchors(space, setup, prog, probe, bar)
    finally:
        bar.close()
        prog.close()
    table = assemble(space, fp, prog.done, anchor_specs(space, setup))
    table.save(out)
    partial.unlink()
    return table


def assemble(
    space: SearchSpace, fp: dict[str, Any], done: dict[str, dict[str, Any]], anchors: list[ModelSpec] | None = None
) -> LatencyTable:
    """The table from measured records: entries, the correction fitted on the whole networks, the anchors."""
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    entries = np.full((L, B, S), np.nan)
    disp = np.full((L, B, S), np.nan)
    raw = np.full((L, B, S), np.nan)
    probe = np.full((L, B, S), np.nan)
    refs = [rec["ref"] for key, rec in done.items() if rec.get("ref") and key != "anchors"]
    base = float(np.median(refs)) if refs else None

    def scale(rec: dict[str, Any]) -> float:
        """Drift compensation: the probe's typical time over its time when this record was measured."""
        return base / rec["ref"] if base and rec.get("ref") else 1.0

    for key, rec in done.items():
        parts = key.split(":")
        if parts[0].startswith("b") and len(parts) == 3:
            i, b, c = int(parts[0][1:]), int(parts[1]), int(parts[2])
            entries[i, b, c], disp[i, b, c] = rec["ms"] * scale(rec), rec["dispersion"]
            raw[i, b, c], probe[i, b, c] = rec["ms"], rec.get("ref") or np.nan
    fp = dict(fp, date=now())
    table = LatencyTable(
        space,
        fp,
        done["stem"]["ms"] * scale(done["stem"]),
        done["head"]["ms"] * scale(done["head"]),
        entries,
        disp,
        raw_entries=raw,
        probe_ms=probe,
    )
    nets = [rec for key, rec in done.items() if key.startswith("net:")]
    if nets:
        sums = np.array([table.raw_sum(r["blocks"], r["channels"]) for r in nets])
        measured = np.array([r["ms"] * scale(r) for r in nets])
        table.slope, table.intercept = fit_correction(sums, measured)
        table.calibration = [
            {
                "blocks": list(r["blocks"]),
                "channels": list(r["channels"]),
                "measured_ms": r["ms"],
                "raw_sum_ms": float(s),
            }
            for r, s in zip(nets, sums)
        ]
    passes = sorted((k for k in done if k.startswith("fitpass:")), key=lambda k: int(k.split(":")[1]))
    if passes:
        per_pass = np.array([np.asarray(done[k]["ms"]) * scale(done[k]) for k in passes])
        nets = done["fitnets"]
        table.set_fitted(_fitted(table, np.array(nets["blocks"]), np.array(nets["channels"]), per_pass))
    if anchors and "anchors" in done:
        table.anchors = _anchor_records(anchors, done["anchors"], scale(done["anchors"]))
    return table


def _fitted(table: LatencyTable, blocks: np.ndarray, channels: np.ndarray, per_pass: np.ndarray) -> dict[str, Any]:
    """The fitted predictor's record: entries solved on the whole networks' deployed latencies (``per_pass``:
    ``[passes, networks]`` session medians), the part-timed table as prior."""
    lat = DeployedLatency.from_passes(per_pass)
    fit = _solve_on(table, blocks, channels, np.array([m.ms for m in lat]))
    return {
        "model": "predicted = fixed_ms + sum of entries; entries fitted on whole networks (relative least "
        "squares, ridge towards the part-timed entries scaled to the networks' level)",
        "entries": fit.entries,
        "fixed_ms": fit.fixed_ms,
        "ridge": fit.ridge,
        "cv_mape": fit.cv_mape,
        "budget_quantile": BUDGET_QUANTILE,
        "budget_ratio": float(max(1.0, np.median([m.budget_ms / m.ms for m in lat]))),
        "networks": [
            {"blocks": list(map(int, b)), "channels": list(map(int, c)), **m.as_dict()}
            for b, c, m in zip(blocks, channels, lat)
        ],
    }


def _solve_on(table: LatencyTable, blocks: Any, channels: Any, measured_ms: Any) -> Any:
    """:func:`~spos_deploy.tables.latency.fit.fit_entries` with the table's part-timed entries, scaled by its
    correction, as the prior."""
    from spos_deploy.tables.latency.fit import fit_entries

    prior_fixed = table.slope * (table.stem_ms + table.head_ms) + table.intercept
    return fit_entries(table.space, table.slope * table.entries, prior_fixed, blocks, channels, measured_ms)


def refit(table: LatencyTable, count: int, quantile: float | None = None) -> LatencyTable:
    """``table`` with its fitted predictor solved again on the first ``count`` of its whole networks, as they
    were measured: what a build with ``--fit-networks count`` would have fitted, without measuring again
    (how many networks a space needs: :data:`~spos_deploy.tables.latency.table.FIT_NETWORKS_BY_SPACE`).
    ``quantile``: solved on that quantile of each network's session medians instead of their median (how
    another statistic of the same sessions would predict)."""
    nets = (table.fitted or {}).get("networks", [])
    if not 0 < count <= len(nets):
        raise ValueError(f"the table holds {len(nets)} fitted networks, not {count}")
    nets = nets[:count]
    ms = [n["ms"] if quantile is None else float(np.quantile(n["session_ms"], quantile)) for n in nets]
    fit = _solve_on(table, [n["blocks"] for n in nets], [n["channels"] for n in nets], ms)
    out = replace(table)
    out.set_fitted(
        table.fitted
        | {
            "entries": fit.entries,
            "fixed_ms": fit.fixed_ms,
            "ridge": fit.ridge,
            "cv_mape": fit.cv_mape,
            "networks": nets,
        }
    )
    return out


def _anchor_records(anchors: list[ModelSpec], rec: dict[str, Any], scale: float) -> list[dict[str, Any]]:
    """The table's ``anchors``: each network and its time at the table's reference speed (drift-scaled)."""
    return [
        {"blocks": list(a.block_choices), "channels": list(a.channel_choices), "ms": m * scale, "measured_ms": m}
        for a, m in zip(anchors, rec["ms"])
    ]


def host_tag(device: str = "cpu") -> str:
    """This machine's CPU (or GPU) model as a file-name part: tables and decisions are per machine."""
    host = cpu_info()["cpu"].replace("(R)", "").replace("(TM)", "").replace("CPU", "")
    host = "-".join(host.split()).lower()[:40] if device == "cpu" else (gpu_name() or "gpu")
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in host)


def default_latency_name(space: SearchSpace, setup: LatencySetup) -> str:
    host = host_tag(setup.runtime_record.device)
    return (
        f"latency_{space.describe()}_{setup.runtime}_{setup.precision}_b{setup.batch}"
        f"_t{setup.resolved_threads()}_{host}.json"
    )
