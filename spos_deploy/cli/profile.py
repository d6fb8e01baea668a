"""``spos-profile``: FLOPs, params and MicroNet ops of a model, op by op and block by block.

Light at import: the counting modules (which build MXNet graphs) are imported inside :func:`body`, after
the signal policy is installed, so Ctrl-C during start-up is one line and exit 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tabulate import tabulate

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import (
    add_alias,
    add_allow_table_mismatch,
    add_input_size,
    add_measure,
    add_plot,
    add_precision,
    add_reanchor,
    add_repeats,
    add_runtime,
    add_score_bits,
    add_shuffle,
    add_tables,
    add_threads,
    device_given,
)
from spos_deploy.space import part_key

if TYPE_CHECKING:
    from spos_deploy.counting.profile import Profile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-profile",
        description="Count FLOPs (SPOS paper convention), params and MicroNet ops/score of a model.json "
        "or a built-in model (oneshot, oneshot+, oneshot-s+).",
    )
    p.add_argument("model", help="model.json path or built-in name")
    add_input_size(p, help="override the model's input size (a multiple of 32)")
    add_shuffle(p, help="override the channel-shuffle form")
    p.add_argument("--table", choices=["ops", "blocks", "none"], default="blocks", help="which table to print")
    add_score_bits(p, dest="bits", help="precision of the MicroNet numbers and score")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="NAME",
        help="also profile gluoncv networks side by side (e.g. mobilenetv2_1.0 mobilenetv3_small shufflenet_v2); "
        "'all' for the usual comparison set",
    )
    add_plot(p, help="write a per-block FLOPs/params bar chart")
    add_measure(
        p,
        help="also measure time per op and per block on --device (the runtime's own profiler, deployed form, "
        "random weights)",
    )
    add_repeats(p, 30, "profiled runs for --measure", dest="measure_runs")
    add_alias(p, "--measure-runs", "--repeats")
    add_runtime(
        p,
        "onnxruntime",
        "--measure: onnxruntime's profiler or OpenVINO's counters",
        device_help="where --measure runs",
    )
    add_precision(p, help="--measure --runtime openvino: fp32 (default) or bf16 (where the CPU has it)")
    add_threads(p, help="threads for --measure (default: the runtime's own)")
    lat = p.add_argument_group("predicted latency (a latency table of this machine)")
    add_tables(lat, ("latency",))
    add_allow_table_mismatch(lat)
    add_reanchor(lat)
    add_common(p)
    return p


def _m(x: float) -> str:
    return f"{x / 1e6:.3f}"


def _int(x: int | None) -> str:
    return "" if x is None else f"{x:,}"


def _ops_table(prof: Profile, bits: int, measured: dict | None = None) -> str:
    from spos_deploy.counting.micronet import at_bits
    from spos_deploy.runtime.op_profile import op_key

    rows = []
    shown: set[str] = set()
    for r in prof.rows:
        params, mults, adds = at_bits(r, bits)
        row = [
            r.name,
            r.quantizable,
            r.inp_size,
            r.kernel,
            r.cin,
            r.cout,
            _m(params),
            _m(mults),
            _m(adds),
            _m(mults + adds),
        ]
        if measured is not None:
            key = op_key(measured["ops_ms"], r.name)
            row.append("" if key is None or key in shown else f"{measured['ops_ms'][key]:.4f}")
            shown.add(key)
        rows.append(row)
    headers = ["op", "quantizable", "inp_size", "kernel", "Cin", "Cout", "params(M)", "mults(M)", "adds(M)", "MFLOPs"]
    if measured is not None:
        headers.append("ms (empty: fused into a neighbour)")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _blocks_table(prof: Profile, bits: int, measured: dict | None = None, predicted: dict | None = None) -> str:
    blocks = {part_key(b["position"]): b for b in prof.blocks()}
    rows = []
    for r in prof.block_rows(bits):
        b = blocks.get(r["part"], {})
        row = [
            r["part"],
            r["block"],
            b.get("mid_channels", ""),
            b.get("stride", ""),
            b.get("input_size", ""),
            _int(r["flops"]),
            _int(r["params"]),
            _m(r["mults"]),
            _m(r["adds"]),
            _m(r["ops"]),
        ]
        if measured is not None:
            ms = measured["blocks_ms"].get(r["part"], 0.0)
            row += [f"{ms:.3f}", f"{2 * (r['flops'] or 0) / (ms * 1e6):.1f}" if ms > 0 else "-"]
        if predicted is not None:
            pos = b.get("position")
            row.append(f"{predicted['blocks_ms'][pos]:.4f}" if pos is not None else "")
        rows.append(row)
    other = (measured or {}).get("blocks_ms", {}).get("other", 0.0)
    if other > 0:
        rows.append(["other", "(no block: graph plumbing)", *[""] * 8, f"{other:.3f}", "-"])
    headers = [
        "part",
        "block",
        "mid",
        "stride",
        "inp_size",
        "FLOPs",
        "params",
        "mults(M)",
        "adds(M)",
        "MicroNet ops(M)",
    ]
    if measured is not None:
        headers += ["ms", "GFLOP/s"]
    if predicted is not None:
        headers.append("predicted ms")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _summary(prof: Profile, bits: int) -> list:
    mn = prof.micronet(bits)
    return [
        prof.name,
        prof.input_size,
        f"{prof.flops:,}",
        f"{prof.params:,}",
        _m(mn["ops"]),
        _m(mn["params"]),
        f"{mn['score']:.4f}",
    ]


def _plot(prof: Profile, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spos_deploy.atomic import atomic_path

    parts = prof.block_rows(32)
    names = [p["part"] for p in parts]
    fig, ax = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    ax[0].bar(names, [(p["flops"] or 0) / 1e6 for p in parts], color="tab:blue")
    ax[0].set_ylabel("MFLOPs (paper)")
    ax[1].bar(names, [(p["params"] or 0) / 1e6 for p in parts], color="tab:orange")
    ax[1].set_ylabel("params (M)")
    ax[1].tick_params(axis="x", rotation=90)
    ax[0].set_title(f"{prof.name}: {prof.flops / 1e6:.1f} MFLOPs, {prof.params / 1e6:.3f} M params")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _check_measure_args(args: argparse.Namespace) -> None:
    """Refuse runtime options that cannot apply, before any counting work."""
    from spos_deploy.errors import BadInputError
    from spos_deploy.runtime.registry import profiling_engines

    if not args.measure and (args.runtime != "onnxruntime" or args.precision is not None or device_given(args)):
        raise BadInputError("--runtime, --device and --precision apply only with --measure")
    if args.runtime not in profiling_engines():
        raise BadInputError(
            f"--runtime {args.runtime}: --measure reads per-op times from {' or '.join(profiling_engines())}"
        )
    if args.runtime == "onnxruntime" and args.precision not in (None, "fp32"):
        raise BadInputError(
            f"--precision {args.precision}: onnxruntime profiles the fp32 export; use --runtime openvino"
        )
    if args.runtime == "openvino" and args.device == "gpu":
        raise BadInputError("--device gpu: the OpenVINO runtime here runs on the CPU only")
    if args.runtime == "openvino" and args.measure:
        from spos_deploy.runtime.openvino import check_precision, require_openvino

        require_openvino("--measure --runtime openvino")
        if args.precision == "int8":
            raise BadInputError("--precision int8: profiling runs the random-weight fp32 export; use fp32 or bf16")
        check_precision(args.precision or "fp32")


def _measured(args: argparse.Namespace, spec: object) -> dict | None:
    """The --measure profile, or ``None``."""
    if not args.measure:
        return None
    from spos_deploy.deploy.timing_forms import measure_spec

    return measure_spec(
        spec,
        device=args.device,
        runs=args.measure_runs,
        threads=args.threads,
        runtime=args.runtime,
        precision=args.precision or "fp32",
    )


def _predicted(args: argparse.Namespace, spec: object) -> dict | None:
    """The --latency-table prediction of ``spec``: total, fixed part and one figure per position."""
    if not args.latency_table:
        return None
    import logging

    from spos_deploy.tables.latency.validate import use_table

    table, note, _ = use_table(args.latency_table, spec.space, args.allow_table_mismatch, args.reanchor)
    logging.getLogger("spos_deploy").info("%s", note)
    fixed, per_block = table.per_position(spec.block_choices, spec.channel_choices)
    total = float(table.predict(spec.block_choices, spec.channel_choices))
    return {
        "predicted_latency_ms": total,
        "predicted_budget_latency_ms": total * table.budget_ratio,
        "fixed_ms": fixed,
        "blocks_ms": per_block,
        "predictor": table.predictor,
        "table": str(args.latency_table),
    }


def _print_measured(m: dict) -> None:
    from spos_deploy.runtime.load import summary_line

    what = m["runtime"]
    if "openvino" in m:
        what += f" {m['openvino']['executed_precision']}"
    total, e2e = m["nodes_total_ms"], m["end_to_end_p50_ms"]
    print(
        f"\nmeasured ({what}, {m['device']}, BN merged, random weights): end to end {e2e:.3f} ms p50, sum of "
        f"nodes {total:.3f} ms ({100 * total / e2e:.0f} % of end to end; other: "
        f"{m['blocks_ms'].get('other', 0.0):.3f} ms)"
    )
    if m.get("load"):
        print(f"load: {summary_line(m['load'])}")


def body(args: argparse.Namespace) -> int:
    from spos_deploy.counting.profile import COMPARE_MODELS, profile_spec, profile_zoo
    from spos_deploy.model_spec import load_spec

    _check_measure_args(args)
    spec = load_spec(args.model, input_size=args.input_size)
    if args.shuffle:
        spec = spec.with_(shuffle=args.shuffle)
    prof = profile_spec(spec)
    compare: list[Profile] = []
    if args.compare:
        names = list(COMPARE_MODELS) if args.compare == ["all"] else args.compare
        compare = [profile_zoo(n, spec.space.input_size) for n in names]
    if args.plot:
        _plot(prof, args.plot)
    measured = _measured(args, spec)
    predicted = _predicted(args, spec)
    if args.json:
        out = prof.to_json(args.bits)
        if measured is not None:
            out["measured"] = measured
        if predicted is not None:
            out["predicted_latency_ms"] = predicted["predicted_latency_ms"]
            out["latency_prediction"] = predicted
            for b in out["blocks"]:
                b["predicted_latency_ms"] = predicted["blocks_ms"][b["position"]]
        if compare:
            out["compare"] = [c.to_json(args.bits, include_ops=False) for c in compare]
        print_json(out)
        return 0
    headers = [
        "model",
        "input",
        "FLOPs (paper)",
        "params",
        f"MicroNet ops(M) @{args.bits}b",
        "MicroNet params(M)",
        "score",
    ]
    print(
        tabulate(
            [_summary(prof, args.bits)] + [_summary(c, args.bits) for c in compare],
            headers=headers,
            tablefmt="github",
            disable_numparse=True,
        )
    )
    if args.table != "none":
        print()
        if args.table == "ops":
            print(_ops_table(prof, args.bits, measured))
        else:
            print(_blocks_table(prof, args.bits, measured, predicted))
    if measured is not None:
        _print_measured(measured)
    if predicted is not None:
        print(
            f"\npredicted latency: {predicted['predicted_latency_ms']:.4f} ms ({predicted['predictor']} predictor: "
            f"{predicted['fixed_ms']:.4f} ms fixed + the blocks; budget latency "
            f"{predicted['predicted_budget_latency_ms']:.4f} ms) from {predicted['table']}"
        )
    for p in [prof, *compare]:
        if p.unknown_ops:
            print(f"note: {p.name}: op types counted as free (no rule): {', '.join(p.unknown_ops)}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-profile", build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
