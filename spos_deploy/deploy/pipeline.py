"""The deployment pipeline behind ``spos-export``: transform, export, quantize, verify, report.

Every step that changes the network is checked against the step before it on real images, and an
export whose check fails is an error. Everything is written into a temporary folder that is renamed
to the output folder only when all of it succeeded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from spos_deploy.atomic import atomic_dir
from spos_deploy.counting.profile import profile_spec
from spos_deploy.data.images import LabelledImages, imagenet_samples, load_images
from spos_deploy.deploy.onnx import (
    PARITY_RTOL,
    Parity,
    compare_outputs,
    cpu_session,
    export_onnx,
    export_symbol,
    mxnet_logits,
    ort_logits,
)
from spos_deploy.deploy.quantize import OrtQuantConfig, quantize_mxnet, quantize_onnx
from spos_deploy.deploy.transforms import merge_bn, set_shuffle_form
from spos_deploy.errors import BadInputError, SposError
from spos_deploy.machine import machine_record
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import SposNet, build_subnet
from spos_deploy.nets.weights import load_subnet

log = logging.getLogger(__name__)

TRANSFORM_RTOL = 1e-5
FORMAT_VERSION = 1


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


def _load_network(spec: ModelSpec, opts: ExportOptions) -> tuple[SposNet, str]:
    if opts.params:
        return load_subnet(spec, opts.params), f"weights from {opts.params}"
    if opts.random_init:
        return build_subnet(spec, seed=0), "RANDOM WEIGHTS (--random-init): for profiling and benchmarking only"
    raise BadInputError("give --params FILE (trained weights) or --random-init (profiling/benchmarking only)")


def _data(ref: str | None, size: int, limit: int) -> LabelledImages:
    return imagenet_samples(size) if ref is None else load_images(ref, size, limit=limit)


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float((logits.argmax(1) == labels).mean())


def _accuracy_report(ref_logits: np.ndarray, q_logits: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    cmp = compare_outputs(q_logits, ref_logits, tolerance=float("inf"))
    return {
        "images": int(len(ref_logits)),
        "labelled": labels is not None,
        "top1_fp32": _accuracy(ref_logits, labels),
        "top1_int8": _accuracy(q_logits, labels),
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
    return stats.as_dict()


def run_export(spec: ModelSpec, out_dir: str | Path, opts: ExportOptions) -> dict[str, Any]:
    """Run the whole pipeline; returns the report (also written as report.json / report.md)."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise BadInputError(f"{out_dir}: output folder exists; choose a new one (nothing was written)")
    if opts.fmt not in ("onnx", "mxnet"):
        raise BadInputError(f"--format {opts.fmt}: use onnx or mxnet")
    size = spec.space.input_size
    net, weights_note = _load_network(spec, opts)
    check_data = _data(opts.eval_data, size, opts.eval_count)
    images = check_data.images
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": spec.to_json(),
        "config": spec.space.to_config(),
        "weights": weights_note,
        "random_weights": bool(opts.random_init and not opts.params),
        "check_data": check_data.source,
        "checks": [],
        "files": {},
        "machine": machine_record(),
    }
    if opts.int8:
        calib = _data(opts.calib, size, opts.calib_count)
        report["calibration_data"] = f"{calib.source}, {len(calib)} images"

    reference = mxnet_logits(net, images)
    deployed = net
    if opts.merge_bn:
        deployed = merge_bn(deployed)
        report["checks"].append(
            _check(
                "merge BN (MXNet, inference)",
                compare_outputs(mxnet_logits(deployed, images), reference, TRANSFORM_RTOL),
            )
        )
    if opts.shuffle and opts.shuffle != spec.shuffle:
        deployed = set_shuffle_form(deployed, opts.shuffle)
        report["checks"].append(
            _check(
                f"shuffle as {opts.shuffle}", compare_outputs(mxnet_logits(deployed, images), reference, TRANSFORM_RTOL)
            )
        )
    deployed_logits = mxnet_logits(deployed, images)
    report["deployed"] = {
        "bn_merged": deployed.merged,
        "shuffle": deployed.spec.shuffle,
        "format": opts.fmt,
        "precision": "int8" if opts.int8 else "fp32",
    }

    prof = profile_spec(deployed.spec)
    report["counts"] = {"flops": prof.flops, "params": prof.params, "micronet_fp32": prof.micronet(32)}
    if opts.int8:
        report["counts"]["micronet_int8"] = prof.micronet(8)

    with atomic_dir(out_dir) as tmp:
        files: dict[str, Path] = {}
        latency: dict[str, Any] = {}
        if opts.fmt == "onnx":
            files["fp32"] = export_onnx(deployed, tmp / "model.onnx", metadata={"weights": weights_note})
            fp32_logits = ort_logits(cpu_session(files["fp32"]), images)
            report["checks"].append(
                _check("onnxruntime fp32 vs MXNet", compare_outputs(fp32_logits, deployed_logits, PARITY_RTOL))
            )
            if opts.int8:
                qres = quantize_onnx(files["fp32"], tmp / "model.int8.onnx", calib.images, size, opts.ort_quant)
                os.remove(qres.preprocessed)
                files["int8"] = Path(qres.path)
                q_logits = ort_logits(cpu_session(files["int8"]), images)
                report["int8"] = {
                    "runtime": "onnxruntime",
                    **qres.as_dict(),
                    "accuracy": _accuracy_report(fp32_logits, q_logits, check_data.labels),
                }
                report["int8"].pop("preprocessed", None)
                report["int8"]["path"] = files["int8"].name
            if opts.bench:
                latency["onnxruntime_fp32"] = _bench("onnx", files["fp32"], size, opts.bench_repeats)
                if "int8" in files:
                    latency["onnxruntime_int8"] = _bench("onnx", files["int8"], size, opts.bench_repeats)
        else:
            sym, params = export_symbol(deployed, tmp / "model", size)
            files["fp32"], files["fp32_params"] = sym, params
            reloaded = mx.gluon.SymbolBlock.imports(str(sym), ["data"], str(params))
            report["checks"].append(
                _check(
                    "MXNet symbol reload", compare_outputs(mxnet_logits(reloaded, images), deployed_logits, PARITY_RTOL)
                )
            )
            if opts.int8:
                qnet = quantize_mxnet(deployed, calib.images, size, opts.mxnet_calib_mode)
                q_logits = mxnet_logits(qnet, images)
                qnet.export(str(tmp / "model-int8"))
                files["int8"], files["int8_params"] = tmp / "model-int8-symbol.json", tmp / "model-int8-0000.params"
                report["int8"] = {
                    "runtime": "mxnet-contrib",
                    "calib_mode": opts.mxnet_calib_mode,
                    "accuracy": _accuracy_report(deployed_logits, q_logits, check_data.labels),
                }
            if opts.bench:
                latency["mxnet_fp32"] = _bench("mxnet", files["fp32"], size, opts.bench_repeats, files["fp32_params"])
                if "int8" in files:
                    latency["mxnet_int8"] = _bench(
                        "mxnet", files["int8"], size, opts.bench_repeats, files["int8_params"]
                    )
        if check_data.labels is not None:
            report["accuracy_fp32"] = {"top1": _accuracy(deployed_logits, check_data.labels), "images": len(check_data)}
        report["latency"] = latency
        report["files"] = {k: {"name": p.name, "bytes": p.stat().st_size} for k, p in files.items()}
        (tmp / "model.json").write_text(json.dumps(deployed.spec.to_json(), indent=1) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "report.md").write_text(report_markdown(report))
    return report


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def report_markdown(r: dict[str, Any]) -> str:
    """A readable summary of the report (the JSON has everything)."""
    m = r["model"]
    lines = [f"# Export report: {m['name']}", ""]
    if r.get("random_weights"):
        lines += [
            "**Random weights** (`--random-init`): for profiling and benchmarking only; accuracy is meaningless.",
            "",
        ]
    d = r["deployed"]
    lines += [
        f"- weights: {r['weights']}",
        f"- deployed: {d['format']}, {d['precision']}, BN merged: {d['bn_merged']}, shuffle: {d['shuffle']}",
        f"- checked on: {r['check_data']}",
        "",
    ]
    lines += [
        "## Checks",
        "",
        "| check | images | max abs | max rel | tolerance | top-1 agreement | passed |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r["checks"]:
        lines.append(
            f"| {c['check']} | {c['images']} | {_fmt(c['max_abs'])} | {_fmt(c['max_rel'])} | "
            f"{_fmt(c['tolerance'])} | {_fmt(c['top1_agreement'])} | {c['passed']} |"
        )
    c = r["counts"]
    lines += [
        "",
        "## Counts",
        "",
        f"- FLOPs (paper convention): {c['flops']:,}",
        f"- params: {c['params']:,}",
        f"- MicroNet fp32: {c['micronet_fp32']['ops'] / 1e6:.2f} M ops, "
        f"{c['micronet_fp32']['params'] / 1e6:.3f} M params, score {c['micronet_fp32']['score']:.4f}",
    ]
    if "micronet_int8" in c:
        mi = c["micronet_int8"]
        lines.append(
            f"- MicroNet int8: {mi['ops'] / 1e6:.2f} M ops, {mi['params'] / 1e6:.3f} M params, score {mi['score']:.4f}"
        )
    if "int8" in r:
        a = r["int8"]["accuracy"]
        lines += ["", "## int8", "", f"- runtime: {r['int8']['runtime']}"]
        if r["int8"].get("excluded") is not None:
            lines.append(f"- kept in float by the sensitivity pass: {', '.join(r['int8']['excluded']) or 'none'}")
        lines += [
            f"- images: {a['images']} ({'labelled' if a['labelled'] else 'unlabelled'})",
            f"- top-1 fp32 / int8: {_fmt(a['top1_fp32'])} / {_fmt(a['top1_int8'])}",
            f"- top-1 agreement: {_fmt(a['top1_agreement'])}",
            f"- max logit error: {_fmt(a['max_logit_error'])}",
        ]
    if r.get("latency"):
        lines += [
            "",
            "## Latency (batch 1, this machine)",
            "",
            "| runtime | p50 ms | p90 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for k, v in r["latency"].items():
            lines.append(f"| {k} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} | {v['p99_ms']:.2f} |")
        mach = r["machine"]
        lines.append(f"\nMachine: {mach['cpu']}, {mach['usable_cores']} cores.")
    lines += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    for f in r["files"].values():
        lines.append(f"| {f['name']} | {f['bytes']:,} |")
    return "\n".join(lines) + "\n"
