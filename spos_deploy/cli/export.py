"""``spos-export``: deployable files (ONNX, MXNet or OpenVINO IR; fp32 and int8) with a verified report.

Light at import (argparse and the option tables only): MXNet, onnx and onnxruntime are imported inside
:func:`body`, after the signal policy is installed, so Ctrl-C during start-up is one line and exit 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from spos_deploy.cli.common import add_common, print_json, replacing, run
from spos_deploy.cli.options import (
    add_force,
    add_hswish,
    add_input_size,
    add_output,
    add_params,
    add_progress,
    add_shuffle,
    add_static_batch,
    add_target,
    nonneg_int,
    positive_int,
    show_progress,
)
from spos_deploy.deploy.choices import (
    CALIBRATION_METHODS,
    FORMATS,
    MXNET_CALIB_MODES,
    check_format_options,
    check_new_output,
)
from spos_deploy.errors import BadInputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-export",
        description="Merge BN, choose the shuffle form, export to ONNX, MXNet or an OpenVINO IR, optionally quantize "
        "to int8; every step is checked on real images and summarised in DIR/report.json and DIR/report.md.",
    )
    p.add_argument("model", help="model.json path or built-in name")
    w = p.add_mutually_exclusive_group()
    add_params(w, help="trained weights (.params from save_parameters or export)")
    w.add_argument("--random-init", action="store_true", help="random weights, for profiling/benchmarking only")
    add_output(p, help="output folder (must not exist, unless --force)")
    add_force(p)
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="onnx")
    p.add_argument("--merge-bn", action=argparse.BooleanOptionalAction, default=True, help="fold BN into convs")
    add_shuffle(p, help="channel-shuffle form of the deployed graph")
    add_hswish(p)
    add_static_batch(p)
    add_input_size(p, help="override the model's input size")
    p.add_argument("--int8", action="store_true", help="also write an int8 model")
    p.add_argument(
        "--calib",
        metavar="DATA",
        help="calibration images: image folder, .rec, .npz, 'imagenet-samples' or 'fashion-mnist' "
        "(default: the 20 bundled ImageNet samples)",
    )
    p.add_argument("--calib-count", type=positive_int, default=64, help="calibration images to use (default 64)")
    p.add_argument(
        "--eval",
        dest="eval_data",
        metavar="DATA",
        help="labelled images for the parity and accuracy checks (default: bundled ImageNet samples)",
    )
    p.add_argument("--eval-count", type=positive_int, default=500, help="check images to use (default 500)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax", help="onnxruntime calibration")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default per-channel)")
    p.add_argument("--keep-float", type=nonneg_int, default=2, help="most sensitive convs kept in float (0: none)")
    p.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="7-bit weights (default: on for CPUs without VNNI int8 instructions)",
    )
    p.add_argument("--mxnet-calib", choices=MXNET_CALIB_MODES, default="naive", help="MXNet contrib calibration")
    p.add_argument("--no-bench", action="store_true", help="skip the latency measurement in the report")
    add_progress(p)
    add_target(p)
    add_common(p)
    return p


def _options(args: argparse.Namespace) -> Any:
    from spos_deploy.deploy.pipeline import ExportOptions
    from spos_deploy.deploy.quantize import OrtQuantConfig

    return ExportOptions(
        params=args.params,
        random_init=args.random_init,
        merge_bn=args.merge_bn,
        shuffle=args.shuffle,
        fmt=args.fmt,
        int8=args.int8,
        calib=args.calib,
        calib_count=args.calib_count,
        eval_data=args.eval_data,
        eval_count=args.eval_count,
        ort_quant=OrtQuantConfig(
            per_channel=not args.per_tensor,
            method=args.calib_method,
            reduce_range=args.reduce_range,
            keep_float=args.keep_float,
        ),
        mxnet_calib_mode=args.mxnet_calib,
        hswish=args.hswish,
        static_batch=args.static_batch,
        bench=not args.no_bench,
        progress=show_progress(args),
    )


_SHOWN_AS: dict[str, str] = {}
"""The output folder the user named, by the folder written for it (``--force`` writes the new export beside
the old one first: :func:`spos_deploy.cli.common.replacing`)."""


def _print_text(report: Any, output: str) -> None:
    output = _SHOWN_AS.get(output, output)
    print(f"wrote {output}/ ({', '.join(f['name'] for f in report.files.values())})")
    for c in report.checks:
        print(f"  check {c['check']}: max rel {c['max_rel']:.2e} <= {c['tolerance']:g}  ok")
    a, g = report.architecture, report.deployed_graph
    print(f"  FLOPs / params, architecture (paper convention): {a.flops:,} / {a.params:,}")
    print(f"  FLOPs / params, deployed graph (as written):      {g.flops:,} / {g.params:,}")
    if report.int8 is not None:
        acc = report.int8["accuracy"]
        layers = report.int8.get("int8_layers")
        print(
            f"  int8 ({report.int8['runtime']}): top-1 agreement {acc['top1_agreement']:.3f}, top-1 fp32 "
            f"{acc['top1_fp32']}, int8 {acc['top1_int8']} on {acc['images']} images"
            + ("" if layers is None else f"; {layers} of {report.int8['compute_layers']} compute layers in int8")
        )
    if report.bf16 is not None:
        acc = report.bf16.get("accuracy")
        print(
            f"  bf16 (openvino): top-1 agreement {acc['top1_agreement']:.3f}, top-1 fp32 {acc['top1_fp32']}, "
            f"bf16 {acc['top1_bf16']} on {acc['images']} images"
            if acc
            else f"  bf16: not measured ({report.bf16['reason']})"
        )
    for k, v in report.latency.items():
        print(f"  latency {k} ({v.get('precision', '?')}): p50 {v['p50_ms']:.2f} ms")
    print(f"  report: {output}/report.md")


def print_auto(section: dict[str, Any]) -> None:
    """The candidate table and the winner, for the text output of ``spos-export --target auto``."""
    from spos_deploy.deploy.auto import candidate_table
    from spos_deploy.runtime.load import summary_line

    for line in candidate_table(section):
        print("  " + line)
    print(f"  shipped: {section['winner']} ({section['shipped']['file']}): {section['why']}")
    if section.get("threads"):
        print(f"  threads: {section['threads']['chosen']} ({section['threads']['why']})")
    print(f"  run it: {section['shipped']['command']}")
    if section.get("load"):
        print(f"  machine while measuring: {summary_line(section['load'])}")
    for w in section["warnings"]:
        print(f"  warning: {w}")


def export_auto(args: argparse.Namespace) -> int:
    """The ``--target auto`` branch: search, ship, print the table (or the JSON). The options that narrow the
    candidates are checked before the pipeline's options are made, since that loads the pipeline (MXNet) and
    a bad option should cost no second."""
    from spos_deploy.deploy.auto import AutoOptions, run_auto, space_from_options
    from spos_deploy.model_spec import load_spec

    space = space_from_options(
        args.fmt, args.int8, args.per_tensor, args.shuffle, args.hswish, args.static_batch, args.auto_runtimes
    )
    auto = AutoOptions(space=space, rounds=args.auto_rounds, repeats=args.auto_repeats, threads=args.threads)
    spec = load_spec(args.model, input_size=args.input_size)
    report, section = run_auto(spec, args.output, _options(args), auto)
    if args.json:
        print_json({**report.as_dict(), "auto": section})
        return 0
    print(f"--target auto: {len(section['candidates'])} candidates measured on this machine")
    print_auto(section)
    _print_text(report, args.output)
    return 0


def body(args: argparse.Namespace) -> int:
    """``-o DIR``, or with ``--force`` an existing ``DIR`` replaced once the new export is complete."""
    if args.params is None and not args.random_init:
        raise BadInputError("give --params FILE (trained weights) or --random-init (profiling/benchmarking only)")
    if not (args.force and os.path.lexists(args.output)):
        check_new_output(args.output)
    with replacing(args.output, args.force, "spos-export") as out:
        _SHOWN_AS[str(out)] = args.output
        return _export(argparse.Namespace(**{**vars(args), "output": str(out)}))


def _export(args: argparse.Namespace) -> int:
    from spos_deploy.model_spec import load_spec

    if args.target != "auto" and args.auto_runtimes:
        raise BadInputError("--auto-runtimes chooses among --target auto's candidates: add --target auto")
    if args.target == "auto":  # it checks the options that narrow its candidates itself
        return export_auto(args)
    check_format_options(args.fmt, args.hswish, args.static_batch)
    spec = load_spec(args.model, input_size=args.input_size)
    from spos_deploy.deploy.pipeline import run_export

    report = run_export(spec, args.output, _options(args))
    if args.json:
        print_json(report.as_dict())
    else:
        _print_text(report, args.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-export", build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
