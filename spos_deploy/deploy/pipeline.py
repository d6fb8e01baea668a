"""The deployment pipeline behind ``spos-export``: transform, export, quantize, verify, report.

Every step that changes the network is checked against the step before it on real images, and an
export whose check fails is an error. Everything is written into a temporary folder that is renamed
to the output folder only when all of it succeeded. The result is an :class:`ExportReport`: the CLI and
:func:`report_markdown` read it, ``report.json`` is its :meth:`ExportReport.as_dict`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mxnet as mx
import numpy as np
from tqdm import tqdm

from spos_deploy.atomic import atomic_dir, scratch_dir
from spos_deploy.counting.graph import symbol_from_block
from spos_deploy.counting.profile import Profile, profile_spec, profile_symbol
from spos_deploy.data.images import LabelledImages, load_images
from spos_deploy.deploy.choices import check_format_options, check_new_output, hswish_form
from spos_deploy.deploy.onnx import (
    PARITY_RTOL,
    Parity,
    compare_outputs,
    export_onnx,
    export_symbol,
    mxnet_logits,
    rewrite_hswish,
)
from spos_deploy.deploy.quantize import OrtQuantConfig, check_calibration_images, quantize_mxnet, quantize_onnx
from spos_deploy.deploy.transforms import merge_bn, set_shuffle_form
from spos_deploy.errors import BadInputError, SposError
from spos_deploy.machine import machine_record
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.evaluate import top1
from spos_deploy.nets.network import SposNet, build_subnet
from spos_deploy.nets.weights import load_subnet
from spos_deploy.runtime.ort import ort_logits, ort_session

if TYPE_CHECKING:
    from spos_deploy.runtime.openvino import OvCompiled

log = logging.getLogger(__name__)

TRANSFORM_RTOL = 1e-5
FORMAT_VERSION = 1
ARCHITECTURE_COUNTS = "paper-convention counts of the model (BN form, as spos-profile and the tables count it)"
DEPLOYED_COUNTS = "counts of the graph actually written (BN merged into conv weights and biases)"


@dataclass
class ExportOptions:
    params: str | None = None
    random_init: bool = False
    merge_bn: bool = True
    shuffle: str | None = None  # None: keep the model's form
    fmt: str = "onnx"
    int8: bool = False
    calib: str | None = None
    calib_count: int = 64
    eval_data: str | None = None
    eval_count: int = 500
    ort_quant: OrtQuantConfig = field(default_factory=OrtQuantConfig)
    mxnet_calib_mode: str = "naive"
    bench: bool = True
    bench_repeats: int = 30
    hswish: str | None = None  # None: the default form of the format (op for openvino, mul otherwise)
    static_batch: int | None = None  # OpenVINO IR only: fix the input to this batch
    ov_quant_preset: str = "performance"  # NNCF preset of int8 for OpenVINO
    progress: bool = False  # a bar over the steps (and int8 calibration) on stderr, where stderr is a terminal


@dataclass
class GraphCounts:
    """FLOPs (paper convention), params and MicroNet totals of one graph; ``what`` says which graph."""

    what: str
    flops: int
    params: int
    micronet_fp32: dict[str, Any]
    micronet_int8: dict[str, Any] | None = None

    @classmethod
    def of(cls, prof: Profile, what: str, int8: bool) -> GraphCounts:
        return cls(what, prof.flops, prof.params, prof.micronet(32), prof.micronet(8) if int8 else None)

    def as_dict(self) -> dict[str, Any]:
        d = {"what": self.what, "flops": self.flops, "params": self.params, "micronet_fp32": self.micronet_fp32}
        return d if self.micronet_int8 is None else {**d, "micronet_int8": self.micronet_int8}


@dataclass
class ExportReport:
    """What an export did and checked: the one record behind report.json, report.md and the CLI output."""

    model: dict[str, Any]
    config: dict[str, Any]
    weights: str
    random_weights: bool
    check_data: str
    machine: dict[str, Any]
    deployed: dict[str, Any]
    architecture: GraphCounts
    deployed_graph: GraphCounts
    calibration_data: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    int8: dict[str, Any] | None = None
    bf16: dict[str, Any] | None = None  # OpenVINO only: measured where the CPU runs bf16 natively, else why not
    openvino: dict[str, Any] | None = None  # OpenVINO only: its version and what each precision compiled to
    accuracy_fp32: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def counts(self) -> dict[str, Any]:
        """``counts`` of report.json: the architecture's numbers at the top level (what scripts have read
        since format 1), and both labelled graphs below them."""
        return {
            **{k: v for k, v in self.architecture.as_dict().items() if k != "what"},
            "architecture": self.architecture.as_dict(),
            "deployed_graph": self.deployed_graph.as_dict(),
        }

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": self.format_version,
            "model": self.model,
            "config": self.config,
            "weights": self.weights,
            "random_weights": self.random_weights,
            "check_data": self.check_data,
            "checks": self.checks,
            "files": self.files,
            "machine": self.machine,
        }
        if self.calibration_data is not None:
            d["calibration_data"] = self.calibration_data
        d.update(deployed=self.deployed, counts=self.counts())
        for key in ("openvino", "int8", "bf16"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.accuracy_fp32 is not None:
            d["accuracy_fp32"] = self.accuracy_fp32
        d["latency"] = self.latency
        return d


def load_network(spec: ModelSpec, opts: ExportOptions) -> tuple[SposNet, str]:
    """The network to deploy and where its weights came from: random weights only when asked for."""
    if opts.params:
        return load_subnet(spec, opts.params), f"weights from {opts.params}"
    if opts.random_init:
        return build_subnet(spec, seed=0), "RANDOM WEIGHTS (--random-init): for profiling and benchmarking only"
    raise BadInputError("give --params FILE (trained weights) or --random-init (profiling/benchmarking only)")


def option_images(ref: str | None, spec: ModelSpec, limit: int, flag: str) -> LabelledImages:
    """Images for ``flag``, refused when their labels cannot be classes of this model."""
    size = spec.space.input_size
    data = load_images(ref or "imagenet-samples", size, limit=limit)  # --eval-count applies to the default too
    if ref is None and spec.space.num_classes < 1000:
        return LabelledImages(data.images, None, f"{data.source}, labels not used ({spec.space.num_classes} classes)")
    data.check_labels(spec.space.num_classes, ref or "imagenet-samples", flag)
    return data


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else top1(logits, labels)


def _accuracy_report(
    ref_logits: np.ndarray, q_logits: np.ndarray, labels: np.ndarray | None, name: str = "int8"
) -> dict[str, Any]:
    """A reduced-precision model (``name``: int8 or bf16) against fp32 on the same images: a report row, not a
    check, since how much accuracy is an acceptable price is the user's call."""
    cmp = compare_outputs(q_logits, ref_logits, tolerance=float("inf"))
    return {
        "images": int(len(ref_logits)),
        "labelled": labels is not None,
        "top1_fp32": _accuracy(ref_logits, labels),
        f"top1_{name}": _accuracy(q_logits, labels),
        "top1_agreement": cmp.top1_agreement,
        "max_logit_error": cmp.max_abs,
        "max_rel_logit_error": cmp.max_rel,
    }


def _check(name: str, parity: Parity) -> dict[str, Any]:
    if not parity.passed:
        raise SposError(
            f"{name} check failed: max relative difference {parity.max_rel:.3g} > {parity.tolerance:g} "
            f"on {parity.images} images"
        )
    return {"check": name, **parity.as_dict()}


def _bench(kind: str, path: Path, size: int, repeats: int, params: Path | None = None) -> dict[str, Any]:
    from spos_deploy.runtime.bench import bench_onnx, bench_symbol

    if kind == "onnx":
        stats = bench_onnx(str(path), batch=1, warmup=5, repeats=repeats)
    else:
        stats = bench_symbol(str(path), str(params) if params else None, (1, 3, size, size), warmup=5, repeats=repeats)
    return {**stats.as_dict(), "runtime": "onnxruntime" if kind == "onnx" else "mxnet"}


def _bench_ov(c: OvCompiled, batch: int, repeats: int) -> dict[str, Any]:
    """Latency of a compiled OpenVINO model, with what it ran in: the row says its precision, never assumes it."""
    from spos_deploy.runtime.openvino import ov_runner
    from spos_deploy.runtime.timing import measure

    stats = measure(ov_runner(c, batch), batch, warmup=5, repeats=repeats)
    return {
        **stats.as_dict(),
        "runtime": "openvino",
        "precision": c.precision,
        "executed_precision": c.executed_precision,
        "int8_layers": c.int8_layers,
        "compute_layers": c.compute_layers,
        "threads": c.threads,
    }


class _Steps:
    """The export's progress bar on stderr: one tick per step of the pipeline, the step named as it starts.

    Drawn only with ``ExportOptions.progress`` and only where stderr is a terminal (tqdm's ``disable=None``):
    a log file or a captured stderr gets no bar lines. It is cleared when it closes (``leave=False``): what
    stays on the terminal is the command's result, or its one-line error.
    """

    def __init__(self, total: int, progress: bool):
        self.bar = tqdm(total=total, desc="export", unit="step", disable=None if progress else True, leave=False)
        self._open = False

    def __call__(self, name: str) -> None:
        if self._open:
            self.bar.update(1)
        self.bar.set_postfix_str(name)
        self._open = True

    def close(self) -> None:
        if self._open:
            self.bar.update(1)
        self.bar.close()


def _step_count(opts: ExportOptions) -> int:
    """Steps of :func:`run_export` for ``opts``: prepare, the fp32 model and its check(s), int8 and its check,
    the latency rows, the report."""
    fp32 = {"onnx": 1, "mxnet": 1, "openvino": 3}[opts.fmt]  # openvino: the ONNX, the IR, bf16
    return 1 + fp32 + 2 * opts.int8 + opts.bench + 1


@dataclass
class _Job:
    """What the two export paths share: the network in deployed form, the data, the report being filled."""

    spec: ModelSpec
    opts: ExportOptions
    deployed: SposNet
    images: np.ndarray
    labels: np.ndarray | None
    deployed_logits: np.ndarray
    calib: LabelledImages | None
    report: ExportReport
    step: Callable[[str], None] = lambda name: None  # the progress bar: a step starts

    @property
    def size(self) -> int:
        return self.spec.space.input_size


def deploy_form(net: SposNet, spec: ModelSpec, opts: ExportOptions, images: np.ndarray) -> tuple[SposNet, list]:
    """The network in the form it ships (BN merged, chosen shuffle), each transform checked on ``images``."""
    reference = mxnet_logits(net, images)
    deployed, checks = net, []
    if opts.merge_bn:
        deployed = merge_bn(deployed)
        parity = compare_outputs(mxnet_logits(deployed, images), reference, TRANSFORM_RTOL)
        checks.append(_check("merge BN (MXNet, inference)", parity))
    if opts.shuffle and opts.shuffle != spec.shuffle:
        deployed = set_shuffle_form(deployed, opts.shuffle)
        parity = compare_outputs(mxnet_logits(deployed, images), reference, TRANSFORM_RTOL)
        checks.append(_check(f"shuffle as {opts.shuffle}", parity))
    return deployed, checks


def _check_format_options(opts: ExportOptions) -> None:
    """Options that only some formats take, and the optional libraries a format needs: refused before any
    work, in one line."""
    check_format_options(opts.fmt, opts.hswish, opts.static_batch)
    if opts.fmt == "openvino":
        from spos_deploy.deploy.openvino import NNCF_PRESETS, require_nncf
        from spos_deploy.runtime.openvino import require_openvino

        require_openvino("--format openvino")
        if opts.int8:
            require_nncf("--int8 with --format openvino")
        if opts.ov_quant_preset not in NNCF_PRESETS:
            raise BadInputError(f"NNCF preset {opts.ov_quant_preset}: use one of {', '.join(NNCF_PRESETS)}")


def _prepare(spec: ModelSpec, opts: ExportOptions) -> _Job:
    """Everything before the first file is written: weights, data, transforms and their checks, counts."""
    _check_format_options(opts)
    net, weights_note = load_network(spec, opts)
    check_data = option_images(opts.eval_data, spec, opts.eval_count, "--eval")
    calib = option_images(opts.calib, spec, opts.calib_count, "--calib") if opts.int8 else None
    if calib is not None:  # before any export: a wrong set fails in a second, not after the fp32 model
        check_calibration_images(
            calib.images, spec.space.input_size, what=f"--calib {opts.calib or 'imagenet-samples'}"
        )
    deployed, checks = deploy_form(net, spec, opts, check_data.images)
    deployed_prof = profile_symbol(symbol_from_block(deployed), spec.space.input_size, spec.name)
    report = ExportReport(
        model=spec.to_json(),
        config=spec.space.to_config(),
        weights=weights_note,
        random_weights=bool(opts.random_init and not opts.params),
        check_data=check_data.source,
        machine=machine_record(),
        calibration_data=None if calib is None else f"{calib.source}, {len(calib)} images",
        checks=checks,
        deployed={
            "bn_merged": deployed.merged,
            "shuffle": deployed.spec.shuffle,
            "hswish": hswish_form(opts.fmt, opts.hswish),
            "format": opts.fmt,
            "precision": "int8" if opts.int8 else "fp32",
            **({"static_batch": opts.static_batch} if opts.fmt == "openvino" else {}),
        },
        architecture=GraphCounts.of(profile_spec(deployed.spec), ARCHITECTURE_COUNTS, opts.int8),
        deployed_graph=GraphCounts.of(deployed_prof, DEPLOYED_COUNTS, opts.int8),
    )
    logits = mxnet_logits(deployed, check_data.images)
    return _Job(spec, opts, deployed, check_data.images, check_data.labels, logits, calib, report)


def _write_onnx(job: _Job, path: Path) -> Path:
    """The deployed network as fp32 ONNX at ``path``, in the activation form of ``deployed.hswish`` (checked
    afterwards, like the rest of the file, by the caller's parity check)."""
    export_onnx(job.deployed, path, metadata={"weights": job.report.weights})
    if job.report.deployed["hswish"] == "op":
        job.report.deployed["hardswish_ops"] = rewrite_hswish(path, path)
    return path


def _export_onnx(job: _Job, tmp: Path) -> dict[str, Path]:
    """model.onnx (+ model.int8.onnx), each checked with onnxruntime, and their latency."""
    opts, report = job.opts, job.report
    job.step("fp32 ONNX, checked")
    files = {"fp32": _write_onnx(job, tmp / "model.onnx")}
    fp32_logits = ort_logits(ort_session(files["fp32"]), job.images)
    report.checks.append(
        _check("onnxruntime fp32 vs MXNet", compare_outputs(fp32_logits, job.deployed_logits, PARITY_RTOL))
    )
    if opts.int8:
        job.step("int8: calibration, sensitivity, quantization")
        qres = quantize_onnx(
            files["fp32"], tmp / "model.int8.onnx", job.calib.images, job.size, opts.ort_quant, opts.progress
        )
        files["int8"] = Path(qres.path)
        job.step("int8: accuracy against fp32")
        q_logits = ort_logits(ort_session(files["int8"]), job.images)
        report.int8 = {
            "runtime": "onnxruntime",
            **qres.as_dict(),
            "accuracy": _accuracy_report(fp32_logits, q_logits, job.labels),
            "path": files["int8"].name,
        }
    if opts.bench:
        job.step("latency")
        for precision, path in files.items():
            row = _bench("onnx", path, job.size, opts.bench_repeats)
            report.latency[f"onnxruntime_{precision}"] = {**row, "precision": precision}
    return files


def _export_mxnet(job: _Job, tmp: Path) -> dict[str, Path]:
    """model-symbol.json/-0000.params (+ the int8 pair from MXNet contrib), checked by reloading, and their
    latency."""
    opts, report = job.opts, job.report
    job.step("fp32 MXNet graph, checked")
    sym, params = export_symbol(job.deployed, tmp / "model", job.size)
    files = {"fp32": sym, "fp32_params": params}
    reloaded = mx.gluon.SymbolBlock.imports(str(sym), ["data"], str(params))
    parity = compare_outputs(mxnet_logits(reloaded, job.images), job.deployed_logits, PARITY_RTOL)
    report.checks.append(_check("MXNet symbol reload", parity))
    if opts.int8:
        job.step("int8: MXNet calibration and quantization")
        qnet = quantize_mxnet(job.deployed, job.calib.images, job.size, opts.mxnet_calib_mode)
        job.step("int8: accuracy against fp32")
        q_logits = mxnet_logits(qnet, job.images)
        qnet.export(str(tmp / "model-int8"))
        files["int8"], files["int8_params"] = tmp / "model-int8-symbol.json", tmp / "model-int8-0000.params"
        report.int8 = {
            "runtime": "mxnet-contrib",
            "calib_mode": opts.mxnet_calib_mode,
            "accuracy": _accuracy_report(job.deployed_logits, q_logits, job.labels),
        }
    if opts.bench:
        job.step("latency")
        for precision in ("fp32", "int8"):
            if precision in files:
                row = _bench("mxnet", files[precision], job.size, opts.bench_repeats, files[f"{precision}_params"])
                report.latency[f"mxnet_{precision}"] = {**row, "precision": precision}
    return files


def _export_openvino(job: _Job, tmp: Path) -> dict[str, Path]:
    """model.xml/.bin (+ model.int8.xml/.bin), converted from an fp32 ONNX made on the side (not shipped:
    the IR is what OpenVINO deploys), checked against MXNet with f32 forced; bf16 where native; latency."""
    from spos_deploy.deploy.openvino import write_ir
    from spos_deploy.runtime import openvino as rov

    opts, report = job.opts, job.report
    shape = None if opts.static_batch is None else (opts.static_batch, 3, job.size, job.size)
    with scratch_dir("spos-export-onnx-") as work:  # also removed by an interrupt that skips ``finally``
        job.step("fp32 ONNX, checked")
        onnx_fp32 = _write_onnx(job, work / "model.onnx")
        ort_fp32 = ort_logits(ort_session(onnx_fp32), job.images)
        parity = compare_outputs(ort_fp32, job.deployed_logits, PARITY_RTOL)
        report.checks.append(_check("onnxruntime fp32 (intermediate ONNX) vs MXNet", parity))
        job.step("fp32 OpenVINO IR, checked")
        files = {"fp32": write_ir(onnx_fp32, tmp / "model.xml", shape)}
        compiled = {"fp32": rov.ov_compile(files["fp32"], "fp32", label="model.xml")}
        fp32_logits = rov.ov_logits(compiled["fp32"], job.images)
        parity = compare_outputs(fp32_logits, job.deployed_logits, PARITY_RTOL)
        check = _check("OpenVINO fp32 (IR, f32 forced) vs MXNet", parity)
        report.checks.append({**check, "executed_precision": compiled["fp32"].executed_precision})
        job.step("bf16")
        bf16 = _openvino_bf16(job, files["fp32"], fp32_logits)
        if bf16 is not None:
            compiled["bf16"] = bf16
        if opts.int8:
            compiled["int8"] = _openvino_int8(job, onnx_fp32, tmp / "model.int8.xml", shape, fp32_logits)
            files["int8"] = tmp / "model.int8.xml"
    report.openvino = {
        "version": rov.version(),
        "cpu_capabilities": rov.cpu_capabilities(),
        "input_shape": list(shape) if shape else [None, 3, job.size, job.size],
        "compiled": {k: c.as_dict() for k, c in compiled.items()},
    }
    if opts.bench:
        job.step("latency")
        for precision, c in compiled.items():
            report.latency[f"openvino_{precision}"] = _bench_ov(c, opts.static_batch or 1, opts.bench_repeats)
    return {
        name: path for k, xml in files.items() for name, path in ((k, xml), (f"{k}_weights", xml.with_suffix(".bin")))
    }


def _openvino_bf16(job: _Job, xml: Path, fp32_logits: np.ndarray) -> OvCompiled | None:
    """The fp32 IR compiled in bf16 where the CPU runs it natively (elsewhere OpenVINO emulates it, slower
    than f32): its accuracy against OpenVINO fp32, or the reason it was not measured."""
    from spos_deploy.runtime import openvino as rov

    if not rov.native_bf16():
        caps = ", ".join(rov.cpu_capabilities())
        job.report.bf16 = {"measured": False, "reason": f"this CPU has no native bf16 (OpenVINO lists: {caps})"}
        return None
    try:
        c = rov.ov_compile(xml, "bf16", label=f"{xml.name} (bf16)")
    except BadInputError as e:  # a measurement row, not what was asked for: recorded, the export goes on
        job.report.bf16 = {"measured": False, "reason": str(e)}
        return None
    logits = rov.ov_logits(c, job.images)
    job.report.bf16 = {
        "measured": True,
        "runtime": "openvino",
        "path": xml.name,
        "executed_precision": c.executed_precision,
        "accuracy": _accuracy_report(fp32_logits, logits, job.labels, "bf16"),
    }
    return c


def _openvino_int8(
    job: _Job, onnx_fp32: Path, xml: Path, shape: tuple[int, ...] | None, fp32_logits: np.ndarray
) -> OvCompiled:
    """int8 for OpenVINO: NNCF on the fp32 ONNX, converted to an IR, compiled at int8 (refused unless its
    convolutions really run in int8), its accuracy against OpenVINO fp32."""
    from spos_deploy.deploy.openvino import quantize_for_openvino, require_nncf, write_ir
    from spos_deploy.runtime import openvino as rov

    job.step("int8: NNCF quantization")
    q_onnx = quantize_for_openvino(
        onnx_fp32, onnx_fp32.with_name("model.int8.onnx"), job.calib.images, job.opts.ov_quant_preset
    )
    job.step("int8: accuracy against fp32")
    c = rov.ov_compile(write_ir(q_onnx, xml, shape), "int8", label=xml.name)
    q_logits = rov.ov_logits(c, job.images)
    job.report.int8 = {
        "runtime": "openvino",
        "method": "NNCF post-training quantization (min-max statistics, fast bias correction) of the ONNX model",
        "nncf": str(getattr(require_nncf(), "__version__", "?")),
        "preset": job.opts.ov_quant_preset,
        "executed_precision": c.executed_precision,
        "int8_layers": c.int8_layers,
        "compute_layers": c.compute_layers,
        **({"notes": c.notes} if c.notes else {}),
        "accuracy": _accuracy_report(fp32_logits, q_logits, job.labels),
        "path": xml.name,
    }
    return c


def run_export(spec: ModelSpec, out_dir: str | Path, opts: ExportOptions) -> ExportReport:
    """Run the whole pipeline; returns the report (also written as report.json / report.md)."""
    out_dir = check_new_output(out_dir)
    steps = _Steps(_step_count(opts), opts.progress)
    try:
        steps("weights, check images, deployed form")
        job = _prepare(spec, opts)
        job.step = steps
        report = job.report
        with atomic_dir(out_dir) as tmp:
            files = {"onnx": _export_onnx, "mxnet": _export_mxnet, "openvino": _export_openvino}[opts.fmt](job, tmp)
            steps("report")
            if job.labels is not None:
                report.accuracy_fp32 = {"top1": _accuracy(job.deployed_logits, job.labels), "images": len(job.images)}
            report.files = {k: {"name": p.name, "bytes": p.stat().st_size} for k, p in files.items()}
            (tmp / "model.json").write_text(json.dumps(job.deployed.spec.to_json(), indent=1) + "\n")
            (tmp / "report.json").write_text(json.dumps(report.as_dict(), indent=1) + "\n")
            (tmp / "report.md").write_text(report_markdown(report))
    finally:
        steps.close()
    return report


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _micronet_line(label: str, m: dict[str, Any]) -> str:
    return f"{label}: {m['ops'] / 1e6:.2f} M ops, {m['params'] / 1e6:.3f} M params, score {m['score']:.4f}"


def _md_header(r: ExportReport) -> list[str]:
    lines = [f"# Export report: {r.model['name']}", ""]
    if r.random_weights:
        lines += [
            "**Random weights** (`--random-init`): for profiling and benchmarking only; accuracy is meaningless.",
            "",
        ]
    d = r.deployed
    return lines + [
        f"- weights: {r.weights}",
        f"- deployed: {d['format']}, {d['precision']}, BN merged: {d['bn_merged']}, shuffle: {d['shuffle']}, "
        f"h-swish: {_hswish_words(d)}" + (f", static batch {d['static_batch']}" if d.get("static_batch") else ""),
        f"- checked on: {r.check_data}",
        "",
    ]


def _md_checks(r: ExportReport) -> list[str]:
    lines = [
        "## Checks",
        "",
        "| check | images | max abs | max rel | tolerance | top-1 agreement | passed |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r.checks:
        lines.append(
            f"| {c['check']} | {c['images']} | {_fmt(c['max_abs'])} | {_fmt(c['max_rel'])} | "
            f"{_fmt(c['tolerance'])} | {_fmt(c['top1_agreement'])} | {c['passed']} |"
        )
    return lines


def _md_counts(r: ExportReport) -> list[str]:
    a, g = r.architecture, r.deployed_graph
    lines = [
        "",
        "## Counts",
        "",
        "| | architecture | deployed graph |",
        "|---|---|---|",
        f"| FLOPs (paper convention) | {a.flops:,} | {g.flops:,} |",
        f"| params | {a.params:,} | {g.params:,} |",
        f"| MicroNet score fp32 | {a.micronet_fp32['score']:.4f} | {g.micronet_fp32['score']:.4f} |",
    ]
    if a.micronet_int8 is not None and g.micronet_int8 is not None:
        lines.append(f"| MicroNet score int8 | {a.micronet_int8['score']:.4f} | {g.micronet_int8['score']:.4f} |")
    lines += ["", f"Architecture: {a.what}. Deployed graph: {g.what}.", ""]
    lines.append(f"- {_micronet_line('MicroNet fp32 (architecture)', a.micronet_fp32)}")
    if a.micronet_int8 is not None:
        lines.append(f"- {_micronet_line('MicroNet int8 (architecture)', a.micronet_int8)}")
    return lines


def _hswish_words(d: dict[str, Any]) -> str:
    if d.get("hswish") == "op":
        n = d.get("hardswish_ops", 0)
        return f"HardSwish op ({n} nodes)" if n else "HardSwish op (the model has no h-swish)"
    return "HardSigmoid(x)*x"


def _md_reduced(title: str, name: str, row: dict[str, Any] | None) -> list[str]:
    """The int8 or bf16 section: how it was made and what it costs against fp32 on the check images."""
    if row is None:
        return []
    lines = ["", f"## {title}", ""]
    if not row.get("measured", True):
        return lines + [f"- not measured: {row['reason']}"]
    lines.append(f"- runtime: {row['runtime']}")
    if row.get("method"):
        lines.append(f"- method: {row['method']}, preset {row['preset']}")
    if row.get("excluded") is not None:
        lines.append(f"- kept in float by the sensitivity pass: {', '.join(row['excluded']) or 'none'}")
    if row.get("executed_precision"):
        layers = (
            f" ({row['int8_layers']} of {row['compute_layers']} compute layers in int8)" if "int8_layers" in row else ""
        )
        lines.append(f"- runs in: {row['executed_precision']}{layers}")
    a = row["accuracy"]
    return lines + [
        f"- images: {a['images']} ({'labelled' if a['labelled'] else 'unlabelled'})",
        f"- top-1 fp32 / {name}: {_fmt(a['top1_fp32'])} / {_fmt(a[f'top1_{name}'])}",
        f"- top-1 agreement: {_fmt(a['top1_agreement'])}",
        f"- max logit error: {_fmt(a['max_logit_error'])}",
    ]


def _md_openvino(r: ExportReport) -> list[str]:
    if r.openvino is None:
        return []
    o = r.openvino
    lines = [
        "",
        "## OpenVINO",
        "",
        f"- version: {o['version']}; CPU capabilities: {', '.join(o['cpu_capabilities'])}",
        f"- input shape: {o['input_shape']}",
        "",
        "| asked for | inference precision | runs in | int8 layers | compute layers |",
        "|---|---|---|---|---|",
    ]
    for c in o["compiled"].values():
        lines.append(
            f"| {c['precision']} | {c['inference_precision']} | {c['executed_precision']} | {c['int8_layers']} | "
            f"{c['compute_layers']} |"
        )
    return lines


def _md_latency(r: ExportReport) -> list[str]:
    if not r.latency:
        return []
    lines = [
        "",
        "## Latency (this machine)",
        "",
        "| runtime | runs in | batch | p50 ms | p90 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in r.latency.items():
        ran = v.get("executed_precision", v.get("precision", "-"))
        lines.append(f"| {k} | {ran} | {v['batch']} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} | {v['p99_ms']:.2f} |")
    lines.append(f"\nMachine: {r.machine['cpu']}, {r.machine['usable_cores']} cores.")
    return lines


def report_markdown(r: ExportReport) -> str:
    """A readable summary of the report (the JSON has everything)."""
    lines = _md_header(r) + _md_checks(r) + _md_counts(r) + _md_openvino(r)
    lines += _md_reduced("int8", "int8", r.int8) + _md_reduced("bf16", "bf16", r.bf16) + _md_latency(r)
    lines += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    lines += [f"| {f['name']} | {f['bytes']:,} |" for f in r.files.values()]
    return "\n".join(lines) + "\n"
