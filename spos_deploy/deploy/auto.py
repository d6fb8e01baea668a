"""``spos-export --target auto``: build every deployed form that applies here, verify and time them all on
this machine, and ship the fastest one that passed its checks through the normal export pipeline.

Why measure instead of ranking by rule: which form is fastest depends on the CPU (VNNI, native bf16, AMX),
the runtime release and the network (depthwise convs, hard-swish, SE), and the measured differences are
10-40 %: onnxruntime int8 beat OpenVINO's default on one 2-core Zen 4 while OpenVINO ran our onnxruntime
int8 file slower than its own fp32. So every candidate is timed, on the thread count it will run with.

Three layers, so that the decision can be tested exactly without a runtime:

* the candidates (:func:`candidates`) and the decision over measured records (:func:`verdict`,
  :func:`choose`, :func:`slower_than_fp32`, :func:`auto_section`): pure;
* the measurement (:func:`measure_all`, through :func:`spos_deploy.runtime.interleave.measure_interleaved`):
  round r times each candidate ``repeats`` calls, the candidates in a fresh random order each round, so a
  change in the machine's speed during the run (another job starting, frequency drift) lands on all
  candidates alike instead of on whichever ran last;
* the build (:func:`run_auto`): networks, ONNX files, int8 models, sessions, checks, then the shipping.

Library code: it takes typed options (:class:`AutoOptions`, :class:`~spos_deploy.deploy.pipeline.ExportOptions`)
and prints nothing; the command (``spos-export --target auto``) parses the arguments and prints.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spos_deploy.runtime.interleave import measure_interleaved
from spos_deploy.runtime.registry import auto_engines, engine_named

if TYPE_CHECKING:  # the pipeline imports MXNet
    from spos_deploy.deploy.pipeline import ExportOptions, ExportReport
    from spos_deploy.model_spec import ModelSpec

log = logging.getLogger(__name__)

RUNTIMES = auto_engines()  # onnxruntime, openvino: the engines of spos_deploy.runtime.registry that auto times
AUTO_PRECISIONS = ("fp32", "bf16", "int8")
WEIGHT_SCALES = ("per-channel", "per-tensor")
ORT_LAYOUTS = ("qdq", "qoperator")
OV_BATCHES = ("dynamic", "static")
DEFAULT_ROUNDS = 5
DEFAULT_REPEATS = 20
WARMUP_CALLS = 5
TOP1_DROP_MAX = 0.005
"""Labelled data and trained weights: a reduced-precision form may lose at most 0.5 points of top-1 (the
deployment benchmark's accuracy target, docs/deploy.md)."""
AGREEMENT_MIN = 0.9
"""Unlabelled data or random weights: a reduced-precision form must pick the fp32 class on 90 % of the images.
Random weights give near-flat logits, so their top-1 is noise and a top-1 difference says nothing."""
TIE_RTOL = 0.01
"""p50s within 1 % of the fastest are a tie: the candidate listed first in :func:`candidates` order wins, since
the measurement cannot tell them apart and the simpler form is the safer one to ship."""


# ---- candidates -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One deployed form: a runtime, a precision and the graph forms it was built from."""

    runtime: str
    precision: str
    shuffle: str
    hswish: str
    scales: str | None = None  # onnxruntime int8: per-channel or per-tensor weight scales
    layout: str | None = None  # onnxruntime int8: qdq or qoperator
    batch: str | None = None  # openvino: dynamic or static input shape

    @property
    def key(self) -> str:
        parts = (self.runtime, self.precision, self.shuffle, self.hswish, self.scales, self.layout, self.batch)
        return "/".join(p for p in parts if p)

    def forms(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class AutoSpace:
    """What may be tried; each axis is narrowed by the explicit options of ``spos-export`` (docs/target_auto.md)."""

    runtimes: tuple[str, ...] = RUNTIMES
    precisions: tuple[str, ...] = AUTO_PRECISIONS
    shuffles: tuple[str, ...] = ("reshape", "conv")
    hswish: tuple[str, ...] = ("mul", "op")
    scales: tuple[str, ...] = WEIGHT_SCALES
    layouts: tuple[str, ...] = ORT_LAYOUTS
    batches: tuple[str, ...] = OV_BATCHES


@dataclass
class Machine:
    """What this machine and this install can run (the facts the candidate list depends on)."""

    openvino: bool
    nncf: bool
    native_bf16: bool
    hardswish_in_model: bool = True


def _skip(c: Candidate, m: Machine) -> str | None:
    """Why ``c`` is not built here, or None (each reason is a fact, never a guess about speed)."""
    if c.runtime == "openvino" and not m.openvino:
        return "OpenVINO is not installed"
    if c.precision == "bf16" and not m.native_bf16:
        return "this CPU has no native bf16 (OpenVINO lists no BF16): emulated bf16 is slower than fp32"
    if c.runtime == "openvino" and c.precision == "int8" and not m.nncf:
        return "int8 for OpenVINO needs NNCF, which is not installed"
    if c.hswish == "op" and not m.hardswish_in_model:
        return "the model has no hard-swish: the op form is the same graph as mul"
    return None


def _combos(runtime: str, precision: str, space: AutoSpace) -> Iterator[dict[str, str | None]]:
    """The runtime-specific axes of one (runtime, precision); bf16 is OpenVINO's only (onnxruntime's CPU
    provider has no bf16 convolution kernels)."""
    if runtime == "onnxruntime" and precision == "int8":
        for s, lay in itertools.product(space.scales, space.layouts):
            yield {"scales": s, "layout": lay}
    elif runtime == "openvino":
        for b in space.batches:
            yield {"batch": b}
    elif precision == "fp32":
        yield {}


def candidates(space: AutoSpace, machine: Machine) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Every candidate of ``space`` in a fixed order (runtime, precision, shuffle, activation, variant), and
    those that cannot be built here with the reason. The order is the tie-break of :func:`choose`."""
    built, skipped = [], []
    for runtime, precision in itertools.product(space.runtimes, space.precisions):
        for shuffle, act in itertools.product(space.shuffles, space.hswish):
            for extra in _combos(runtime, precision, space):
                c = Candidate(runtime, precision, shuffle, act, **extra)
                reason = _skip(c, machine)
                if reason is None:
                    built.append(c)
                else:
                    skipped.append({"candidate": c.key, **c.forms(), "reason": reason})
    return built, skipped


NOT_CANDIDATES = [
    "the onnxruntime int8 (QDQ) file run by OpenVINO: OpenVINO's own int8 (NNCF) places the quantize pairs where "
    "its transformations expect them; the onnxruntime file ran slower in OpenVINO than OpenVINO fp32 (7.8-9.7 "
    "against 5.6-6.4 ms, OneShot-S+ 224, measured 2026-12-01 on a 2-core AMD EPYC)",
    "MXNet (fp32 and contrib int8): 2-5x slower than either runtime on every CPU measured (README table)",
    "bf16 in onnxruntime: its CPU provider has no bf16 convolutions",
]
"""Forms never built, and why: listed in the report so that the candidate list is complete."""


# ---- verification (pure) --------------------------------------------------------------------------------------


def verdict(
    precision: str,
    logits: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    random_weights: bool,
) -> tuple[bool, str, dict[str, Any]]:
    """Whether a candidate's logits on the check images are good enough to ship, why, and the numbers.

    fp32 forms must match the fp32 reference (MXNet) within the export's parity tolerance. Reduced
    precision: top-1 within :data:`TOP1_DROP_MAX` of fp32 on labelled data with trained weights, else top-1
    agreement with fp32 of at least :data:`AGREEMENT_MIN`.
    """
    from spos_deploy.deploy.onnx import PARITY_RTOL, compare_outputs
    from spos_deploy.nets.evaluate import top1

    tol = PARITY_RTOL if precision == "fp32" else float("inf")
    cmp = compare_outputs(logits, reference, tol)
    acc: dict[str, Any] = {
        "images": cmp.images,
        "max_rel_logit_error": cmp.max_rel,
        "top1_agreement": cmp.top1_agreement,
    }
    if labels is not None:
        acc.update(top1_fp32=top1(reference, labels), top1=top1(logits, labels))
    if precision == "fp32":
        ok = cmp.passed
        why = f"parity vs MXNet: max rel {cmp.max_rel:.2e} {'<=' if ok else '>'} {PARITY_RTOL:g}"
        return ok, why, {**acc, "rule": f"parity max rel <= {PARITY_RTOL:g}"}
    if labels is not None and not random_weights:
        drop = acc["top1_fp32"] - acc["top1"]
        ok = drop <= TOP1_DROP_MAX + 1e-12
        why = f"top-1 {acc['top1']:.4f} vs fp32 {acc['top1_fp32']:.4f} ({100 * drop:+.2f} points lost)"
        return ok, why, {**acc, "rule": f"top-1 at most {100 * TOP1_DROP_MAX:g} points below fp32 (labelled)"}
    ok = cmp.top1_agreement >= AGREEMENT_MIN
    why = f"top-1 agreement with fp32 {cmp.top1_agreement:.3f} {'>=' if ok else '<'} {AGREEMENT_MIN:g}"
    basis = "random weights" if random_weights else "unlabelled data"
    return ok, why, {**acc, "rule": f"top-1 agreement with fp32 >= {AGREEMENT_MIN:g} ({basis})"}


# ---- measured records and the decision (pure) -----------------------------------------------------------------


@dataclass
class Record:
    """A candidate as built, checked and timed."""

    candidate: Candidate
    passed: bool
    reason: str
    accuracy: dict[str, Any] | None = None
    times_ms: list[float] = field(default_factory=list)
    compiled: dict[str, Any] | None = None  # OpenVINO: what was compiled and executed

    @property
    def p50(self) -> float | None:
        return float(np.percentile(self.times_ms, 50)) if self.times_ms else None

    @property
    def p90(self) -> float | None:
        return float(np.percentile(self.times_ms, 90)) if self.times_ms else None

    def as_dict(self) -> dict[str, Any]:
        d = {
            "candidate": self.candidate.key,
            **self.candidate.forms(),
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "runs": len(self.times_ms),
            "passed": self.passed,
            "reason": self.reason,
            "accuracy": self.accuracy,
        }
        return d if self.compiled is None else {**d, "compiled": self.compiled}


def ranking(records: Sequence[Record]) -> list[Record]:
    """Passing, timed records, the winner first, then by p50. The winner is the first in candidate order
    among those within :data:`TIE_RTOL` of the fastest p50 (a tie goes to the form listed first)."""
    order = {id(r): i for i, r in enumerate(records)}
    timed = sorted((r for r in records if r.passed and r.times_ms), key=lambda r: (r.p50, order[id(r)]))
    if not timed:
        return []
    tied = [r for r in timed if r.p50 <= timed[0].p50 * (1 + TIE_RTOL)]
    win = min(tied, key=lambda r: order[id(r)])
    return [win] + [r for r in timed if r is not win]


@dataclass
class Choice:
    winner: Record
    why: str
    runner_up: Record | None
    speedup_vs_next: float | None


def choose(records: Sequence[Record]) -> Choice | None:
    """The fastest candidate that passed its checks (None when none passed); a failed one never wins."""
    ranked = ranking(records)
    if not ranked:
        return None
    win, nxt = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    if nxt is None:
        return Choice(win, "the only candidate that passed its checks and was timed", None, None)
    speedup = nxt.p50 / win.p50 if win.p50 > 0 else None
    if nxt.p50 <= win.p50 * (1 + TIE_RTOL):
        why = (
            f"tied with {nxt.candidate.key} (p50 {win.p50:.3f} vs {nxt.p50:.3f} ms, within {100 * TIE_RTOL:g} % "
            "of the fastest): listed first, the simpler form"
        )
    else:
        why = f"fastest passing: {speedup:.2f}x faster than the next, {nxt.candidate.key} ({nxt.p50:.3f} ms)"
    return Choice(win, why, nxt, speedup)


def _graph(c: Candidate) -> tuple[str, str, str, str | None]:
    return c.runtime, c.shuffle, c.hswish, c.batch


def _fp32_twin(r: Record, records: Sequence[Record]) -> Record | None:
    """The fp32 candidate of the same runtime and the same graph forms as ``r``."""
    return next(
        (o for o in records if o.candidate.precision == "fp32" and _graph(o.candidate) == _graph(r.candidate)), None
    )


def slower_than_fp32(records: Sequence[Record]) -> list[str]:
    """One line per reduced-precision candidate that measured slower than its fp32 twin: the report never
    lets an int8 (or bf16) model look faster than fp32 when it was not."""
    lines = []
    for r in records:
        if r.candidate.precision == "fp32" or r.p50 is None:
            continue
        twin = _fp32_twin(r, records)
        if twin is not None and twin.p50 is not None and r.p50 > twin.p50:
            lines.append(
                f"{r.candidate.key} measured slower than {twin.candidate.key}: p50 {r.p50:.3f} vs "
                f"{twin.p50:.3f} ms ({r.p50 / twin.p50:.2f}x)"
            )
    return lines


def auto_section(
    records: Sequence[Record],
    skipped: Sequence[dict[str, Any]],
    measurement: dict[str, Any],
    load: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``auto`` section of report.json: every candidate, the winner and why, the load verdict, warnings."""
    choice = choose(records)
    warnings = slower_than_fp32(records)
    if load and load.get("busy"):
        warnings.append(load.get("warning") or "the machine was busy while measuring: the ranking may not hold")
    elif load is None:
        warnings.append("no load probe available: whether the machine was busy while measuring is unknown")
    return {
        "measurement": measurement,
        "candidates": [r.as_dict() for r in records],
        "not_built": list(skipped),
        "never_candidates": NOT_CANDIDATES,
        "ranking": [r.candidate.key for r in ranking(records)],
        "winner": None if choice is None else choice.winner.candidate.key,
        "winner_forms": None if choice is None else choice.winner.candidate.forms(),
        "why": "no candidate passed its checks" if choice is None else choice.why,
        "speedup_vs_next": None if choice is None else choice.speedup_vs_next,
        "load": load,
        "warnings": warnings,
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _acc_cell(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "-"
    if "top1" in acc:
        return f"top-1 {acc['top1']:.4f} (fp32 {acc['top1_fp32']:.4f}), agree {acc['top1_agreement']:.3f}"
    return f"agree {acc['top1_agreement']:.3f}, rel err {acc['max_rel_logit_error']:.2e}"


def candidate_table(section: dict[str, Any]) -> list[str]:
    """The candidates as markdown table rows, fastest passing first, then the rest in candidate order."""
    rank = {k: i for i, k in enumerate(section["ranking"])}
    rows = sorted(section["candidates"], key=lambda c: rank.get(c["candidate"], len(rank)))
    lines = ["| candidate | p50 ms | p90 ms | accuracy vs fp32 | passed | why |", "|---|---|---|---|---|---|"]
    for c in rows:
        mark = " **(shipped)**" if c["candidate"] == section["winner"] else ""
        lines.append(
            f"| {c['candidate']}{mark} | {_ms(c['p50_ms'])} | {_ms(c['p90_ms'])} | {_acc_cell(c['accuracy'])} | "
            f"{'yes' if c['passed'] else 'NO'} | {c['reason']} |"
        )
    return lines


def auto_markdown(section: dict[str, Any]) -> str:
    """The ``## Auto target`` part of report.md."""
    m = section["measurement"]
    lines = [
        "",
        "## Auto target: every candidate measured on this machine",
        "",
        f"Batch 1, {m['threads']} threads, {m['rounds']} interleaved rounds x {m['repeats']} calls per candidate "
        "(shuffled order each round); p50/p90 over all rounds.",
        "",
        *candidate_table(section),
        "",
        f"- shipped: **{section['winner']}**: {section['why']}",
    ]
    if section.get("threads"):
        t = section["threads"]
        lines.append(
            f"- threads: **{t['chosen']}**, measured on the shipped file in {t['sessions']} fresh "
            f"sessions per count ({t['why']}); run it as `{section['shipped']['command']}`"
        )
    load = section.get("load")
    if load:
        from spos_deploy.runtime.load import summary_line

        lines.append(f"- machine while measuring: {summary_line(load)}")
    lines += [f"- **warning**: {w}" for w in section["warnings"]]
    if section["not_built"]:
        lines += ["", "Not built here:", ""]
        lines += [f"- {s['candidate']}: {s['reason']}" for s in section["not_built"]]
    lines += ["", "Never candidates:", ""] + [f"- {n}" for n in section["never_candidates"]]
    return "\n".join(lines) + "\n"


# ---- build, check, measure, ship ------------------------------------------------------------------------------


@dataclass
class AutoOptions:
    """The measurement budget and what may be tried."""

    space: AutoSpace = field(default_factory=AutoSpace)
    rounds: int = DEFAULT_ROUNDS
    repeats: int = DEFAULT_REPEATS
    threads: int | None = None  # None: the usable cores
    seed: int = 0
    keep: Callable[[Candidate], bool] | None = None  # only these candidates (the forms a latency table has)


@dataclass
class _Work:
    """What every candidate is built from: the original network, the check and calibration images, the
    fp32 reference logits, and the files made so far (by form)."""

    spec: ModelSpec
    opts: ExportOptions
    net: Any
    images: np.ndarray
    labels: np.ndarray | None
    calib: np.ndarray | None
    reference: np.ndarray
    random_weights: bool
    threads: int
    folder: Path
    files: dict[tuple, Path | Exception] = field(default_factory=dict)
    kept_float: dict[str, list[str]] = field(default_factory=dict)  # onnxruntime int8: convs left in float

    @property
    def size(self) -> int:
        return self.spec.space.input_size


def _cached(work: _Work, key: tuple, make: Callable[[Path], Path]) -> Path:
    """Build the file of ``key`` once; a failure is remembered and raised again for every candidate using it."""
    if key not in work.files:
        try:
            work.files[key] = make(work.folder / ("-".join(str(k) for k in key) + ".onnx"))
        except Exception as e:  # noqa: BLE001 - one bad form fails its candidates, not the whole search
            work.files[key] = e
    got = work.files[key]
    if isinstance(got, Exception):
        raise got
    return got


def _fp32_onnx(work: _Work, shuffle: str, act: str) -> Path:
    """The fp32 ONNX of one (shuffle, activation) form, each transform checked as the pipeline checks it."""
    from spos_deploy.deploy.onnx import export_onnx, rewrite_hswish
    from spos_deploy.deploy.pipeline import deploy_form

    def make(path: Path) -> Path:
        if act == "op":
            rewrite_hswish(_fp32_onnx(work, shuffle, "mul"), path)
            return path
        deployed, _ = deploy_form(work.net, work.spec, dataclasses.replace(work.opts, shuffle=shuffle), work.images)
        return export_onnx(deployed, path)

    return _cached(work, ("fp32", shuffle, act), make)


def _int8_file(work: _Work, c: Candidate) -> Path:
    """The int8 model of ``c``: onnxruntime's static quantization or NNCF's, on the fp32 ONNX of its forms."""
    from spos_deploy.deploy.openvino import quantize_for_openvino

    src = _fp32_onnx(work, c.shuffle, c.hswish)
    if c.runtime == "openvino":
        return _cached(
            work,
            ("nncf", c.shuffle, c.hswish),
            lambda p: quantize_for_openvino(src, p, work.calib, work.opts.ov_quant_preset),
        )
    return _cached(work, ("ort", c.shuffle, c.hswish, c.scales, c.layout), lambda p: _ort_int8(work, c, src, p))


def _ort_int8(work: _Work, c: Candidate, src: Path, dst: Path) -> Path:
    """onnxruntime int8 of ``c``. The sensitivity pass ranks convs on the QDQ model whatever the layout, so
    the QOperator model reuses the convs its QDQ twin kept in float instead of ranking them again: the same
    file the pipeline writes for that form, without a second sensitivity pass."""
    from spos_deploy.deploy.quantize import quantize_onnx

    cfg = dataclasses.replace(work.opts.ort_quant, per_channel=c.scales == "per-channel", quant_format=c.layout)
    twin = dataclasses.replace(c, layout="qdq")
    if c.layout == "qoperator" and cfg.keep_float > 0:
        _int8_file(work, twin)
        cfg = dataclasses.replace(cfg, exclude=work.kept_float[twin.key], keep_float=0)
    result = quantize_onnx(src, dst, work.calib, work.size, cfg)
    work.kept_float[c.key] = result.excluded
    return Path(result.path)


def _runner(work: _Work, c: Candidate) -> tuple[Callable[[], Any], np.ndarray, dict[str, Any] | None]:
    """A timed-call runner of ``c`` (batch 1, the measurement's threads), its logits on the check images and,
    for OpenVINO, what was compiled."""
    from spos_deploy.runtime.ort import ort_logits, ort_runner

    path = _int8_file(work, c) if c.precision == "int8" else _fp32_onnx(work, c.shuffle, c.hswish)
    if c.runtime == "onnxruntime":
        runner = ort_runner(path, 1, threads=work.threads, label=c.key)
        return runner, ort_logits(runner.session, work.images), None
    from spos_deploy.runtime import openvino as rov

    shape = (1, 3, work.size, work.size) if c.batch == "static" else None
    compiled = rov.ov_compile(path, c.precision, work.threads, static_shape=shape, label=c.key)
    return rov.ov_runner(compiled, 1), rov.ov_logits(compiled, work.images), compiled.as_dict()


def build_and_check(work: _Work, cands: Sequence[Candidate]) -> tuple[list[Record], dict[str, Callable[[], Any]]]:
    """Every candidate built and checked on the check images; the runners of those that could be run (a
    candidate that failed its check is still timed, so the report shows what its speed would have been)."""
    from spos_deploy.errors import short_message

    records, runners = [], {}
    for c in cands:
        log.info("auto: building %s", c.key)
        try:
            runner, logits, compiled = _runner(work, c)
        except Exception as e:  # noqa: BLE001 - a form that cannot be built here is a failed candidate
            log.debug("auto: %s could not be built", c.key, exc_info=True)
            records.append(Record(c, False, f"could not be built: {short_message(e)}"))
            continue
        ok, why, acc = verdict(c.precision, logits, work.reference, work.labels, work.random_weights)
        records.append(Record(c, ok, why, acc, compiled=compiled))
        runners[c.key] = runner
    return records, runners


def measure_all(records: Sequence[Record], runners: Mapping[str, Callable[[], Any]], auto: AutoOptions) -> dict:
    """Interleaved timing of every runner inside the load probe
    (:func:`spos_deploy.runtime.interleave.measure_interleaved`); fills each record's times, returns the load
    verdict."""
    times, load = measure_interleaved(runners, auto.rounds, auto.repeats, WARMUP_CALLS, seed=auto.seed)
    for r in records:
        r.times_ms = times.get(r.candidate.key, [])
    return load


def _machine(net: Any) -> Machine:
    """The facts the candidate list depends on: installed runtimes, native bf16, whether the model has any
    hard-swish (else the op form is the mul form)."""
    import importlib.util

    from spos_deploy.runtime import openvino as rov

    ov = rov.available()
    return Machine(
        openvino=ov,
        nncf=importlib.util.find_spec("nncf") is not None,
        native_bf16=ov and rov.native_bf16(),
        hardswish_in_model=_has_hswish(net),
    )


def _has_hswish(net: Any) -> bool:
    """Whether the network has a hard-swish block anywhere (else the op form would be the mul graph again)."""
    from spos_deploy.nets.blocks import HardSwish

    return any(isinstance(b, HardSwish) for b in _blocks(net))


def _blocks(block: Any) -> Iterator[Any]:
    yield block
    for child in getattr(block, "_children", {}).values():
        yield from _blocks(child)


def _winner_options(opts: ExportOptions, c: Candidate) -> ExportOptions:
    """The pipeline's options that write exactly the winner's form."""
    return dataclasses.replace(
        opts,
        fmt=engine_named(c.runtime).export_format,
        int8=c.precision == "int8",
        shuffle=c.shuffle,
        hswish=c.hswish,
        static_batch=1 if c.batch == "static" else None,
        ort_quant=dataclasses.replace(
            opts.ort_quant, per_channel=c.scales != "per-tensor", quant_format=c.layout or opts.ort_quant.quant_format
        ),
    )


SHIPPED_FILE = {"onnxruntime": ("model.onnx", "model.int8.onnx"), "openvino": ("model.xml", "model.int8.xml")}


def how_to_run(c: Candidate) -> dict[str, Any]:
    """Which shipped file is the winner and how to run it as it was measured (bf16 and the static shape are
    compile-time settings of OpenVINO, not properties of the file)."""
    name = SHIPPED_FILE[c.runtime][c.precision == "int8"]
    d: dict[str, Any] = {"file": name, "runtime": c.runtime, "precision": c.precision}
    if c.runtime == "openvino":
        d["command"] = f"spos-bench {name} --runtime openvino --precision {c.precision}"
        d["note"] = "compile with INFERENCE_PRECISION_HINT=" + ("bf16" if c.precision == "bf16" else "f32")
    else:
        d["command"] = f"spos-bench {name}"
    if c.batch == "static":
        d["input"] = "fixed to batch 1 in the IR"
    return d


def shipped_threads(path: Path, winner: Candidate, spec: ModelSpec, section: dict[str, Any]) -> dict[str, Any]:
    """The thread count to run the shipped file with: one thread against every core the candidates were
    measured on, in fresh sessions (:func:`spos_deploy.runtime.deployed.decide_threads`), as the search's
    ``--target auto`` decides it for a latency table."""
    from spos_deploy.runtime.deployed import decide_threads
    from spos_deploy.runtime.registry import runtime_for

    runtime = runtime_for(winner.runtime)
    shape = (1, 3, spec.space.input_size, spec.space.input_size)
    counts = [1, int(section["measurement"]["threads"])]
    log.info("--target auto: the shipped file at %s threads, in fresh sessions", " and ".join(map(str, counts)))

    def makers_at(threads: int) -> list[Callable[[], Callable[[], Any]]]:
        return [lambda: runtime.runner(path, shape, winner.precision, threads)]

    decision = decide_threads(makers_at, counts)
    log.info("--target auto: %d thread(s) (%s)", decision["chosen"], decision["why"])
    return decision


def _prepare_work(spec: ModelSpec, opts: ExportOptions, auto: AutoOptions, folder: Path) -> _Work:
    """Weights, check and calibration images (refused up front, as the pipeline refuses them) and the fp32
    reference logits of the network as given."""
    from spos_deploy.deploy.onnx import mxnet_logits
    from spos_deploy.deploy.pipeline import load_network, option_images
    from spos_deploy.deploy.quantize import check_calibration_images
    from spos_deploy.machine import cpu_info

    net, _ = load_network(spec, opts)
    check = option_images(opts.eval_data, spec, opts.eval_count, "--eval")
    calib = None
    if "int8" in auto.space.precisions:
        calib = option_images(opts.calib, spec, opts.calib_count, "--calib")
        check_calibration_images(
            calib.images, spec.space.input_size, what=f"--calib {opts.calib or 'imagenet-samples'}"
        )
    return _Work(
        spec=spec,
        opts=opts,
        net=net,
        images=check.images,
        labels=check.labels,
        calib=None if calib is None else calib.images,
        reference=mxnet_logits(net, check.images),
        random_weights=bool(opts.random_init and not opts.params),
        threads=auto.threads or int(cpu_info()["usable_cores"] or 1),
        folder=folder,
    )


def search(spec: ModelSpec, opts: ExportOptions, auto: AutoOptions) -> dict[str, Any]:
    """Build, check and time every candidate; the ``auto`` section (without shipping anything)."""
    with tempfile.TemporaryDirectory(prefix="spos-auto-") as tmp:
        work = _prepare_work(spec, opts, auto, Path(tmp))
        cands, skipped = candidates(auto.space, _machine(work.net))
        if auto.keep is not None:
            cands = [c for c in cands if auto.keep(c)]
        if not cands:
            from spos_deploy.errors import BadInputError

            raise BadInputError(
                "--target auto: no candidate can be built here: "
                + "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped[:3])
            )
        records, runners = build_and_check(work, cands)
        load = measure_all(records, runners, auto) if runners else {"busy": False, "warning": None}
    measurement = {
        "batch": 1,
        "threads": work.threads,
        "rounds": auto.rounds,
        "repeats": auto.repeats,
        "warmup": WARMUP_CALLS,
        "order": "interleaved: each round times every candidate, in a shuffled order",
        "statistic": "p50 and p90 over all rounds' calls",
        "check_images": int(len(work.images)),
        "labelled": work.labels is not None,
        "random_weights": work.random_weights,
    }
    return auto_section(records, skipped, measurement, load)


def run_auto(
    spec: ModelSpec, out_dir: str | Path, opts: ExportOptions, auto: AutoOptions
) -> tuple[ExportReport, dict[str, Any]]:
    """``--target auto``: search, then ship the winner with :func:`run_export` (the same files, checks and
    report as an explicit export of that form) and add the ``auto`` section to report.json and report.md."""
    from spos_deploy.atomic import atomic_dir
    from spos_deploy.deploy.choices import check_new_output
    from spos_deploy.deploy.pipeline import report_markdown, run_export
    from spos_deploy.errors import SposError

    out_dir = check_new_output(out_dir)
    section = search(spec, opts, auto)
    if section["winner"] is None:
        raise SposError(
            "--target auto: no candidate passed its checks: "
            + "; ".join(f"{c['candidate']}: {c['reason']}" for c in section["candidates"][:3])
        )
    winner = Candidate(**section["winner_forms"])
    section["shipped"] = how_to_run(winner)
    with atomic_dir(out_dir) as tmp:
        inner = tmp / "export"
        report = run_export(spec, inner, _winner_options(opts, winner))
        for f in inner.iterdir():
            f.rename(tmp / f.name)
        inner.rmdir()
        if auto.threads is None and section["measurement"]["threads"] > 1:  # threads are part of the form
            section["threads"] = shipped_threads(tmp / section["shipped"]["file"], winner, spec, section)
            section["shipped"]["command"] += f" --threads {section['threads']['chosen']}"
        (tmp / "report.json").write_text(json.dumps({**report.as_dict(), "auto": section}, indent=1) + "\n")
        (tmp / "report.md").write_text(report_markdown(report) + auto_markdown(section))
    return report, section


def space_from_options(
    fmt: str,
    int8: bool,
    per_tensor: bool,
    shuffle: str | None,
    hswish: str | None,
    static_batch: int | None,
    runtimes: Sequence[str] | None = None,
) -> AutoSpace:
    """The candidates that explicit ``spos-export`` options leave (docs/deploy.md, "--target auto"): each
    option given fixes its axis; ``--format onnx`` is the default, so it cannot restrict anything;
    ``runtimes`` (``--auto-runtimes``) keeps those runtimes' forms only."""
    from spos_deploy.errors import BadInputError

    if fmt == "mxnet":
        raise BadInputError("--target auto measures onnxruntime and OpenVINO forms; --format mxnet is not one")
    if static_batch is not None and static_batch != 1:
        raise BadInputError(f"--target auto measures batch 1; --static-batch {static_batch} cannot be a candidate")
    space = AutoSpace()
    if runtimes:
        unknown = sorted(set(runtimes) - set(RUNTIMES))
        if unknown:
            raise BadInputError(f"--auto-runtimes {' '.join(unknown)}: use {' and/or '.join(RUNTIMES)}")
        space.runtimes = tuple(r for r in RUNTIMES if r in runtimes)
    if fmt == "openvino" or static_batch is not None:
        if "openvino" not in space.runtimes:
            why = "--format openvino" if fmt == "openvino" else "--static-batch"
            raise BadInputError(f"{why} asks for OpenVINO forms, but --auto-runtimes leaves out openvino")
        space.runtimes = ("openvino",)
    if static_batch is not None:
        space.batches = ("static",)
    if int8:
        space.precisions = ("int8",)
    if per_tensor:
        space.scales = ("per-tensor",)
    if shuffle is not None:
        space.shuffles = (shuffle,)
    if hswish is not None:
        space.hswish = (hswish,)
    return space
