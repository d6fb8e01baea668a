"""``spos-lut``: build, validate and show lookup tables."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import add_space_options, space_from_args
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import BLOCK_NAMES, SearchSpace
from spos_deploy.tables.flops.table import FlopsTable, default_table_name

DEFAULT_DIR = Path("lookup_tables")


def _random_archs(space: SearchSpace, n: int, seed: int, table: FlopsTable) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, space.num_blocks, (n, space.num_positions))
    channels = rng.integers(0, space.num_scales, (n, space.num_positions))
    valid = table.valid[np.arange(space.num_positions)[None, :], blocks, channels]
    channels = np.where(valid, channels, space.widest_choice)
    return blocks, channels


def _read_kind(path: str) -> str:
    from spos_deploy.tables.flops.table import read_table_json

    return read_table_json(path).get("kind", "?")


def cmd_build(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    t0 = time.perf_counter()
    if args.kind == "flops":
        from spos_deploy.tables.flops.build import build_flops_table

        out = Path(args.output) if args.output else DEFAULT_DIR / default_table_name(space)
        build_flops_table(space, progress=not args.no_progress).save(out)
    elif args.kind == "micronet":
        from spos_deploy.tables.micronet.table import build_micronet_table, default_micronet_name

        out = Path(args.output) if args.output else DEFAULT_DIR / default_micronet_name(space)
        build_micronet_table(space, progress=not args.no_progress).save(out)
    else:
        from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, default_latency_name

        setup = LatencySetup(
            runtime=args.runtime,
            precision=args.precision,
            batch=args.batch,
            threads=args.threads,
            shuffle=args.shuffle,
            repeats=args.repeats,
            calibration_networks=args.calibration_networks,
        )
        setup.check()
        out = Path(args.output) if args.output else DEFAULT_DIR / default_latency_name(space, setup)
        if out.exists() and not args.resume:
            raise BadInputError(f"{out}: exists; choose another --output or delete it")
        build_latency_table(space, setup, out, resume=args.resume, progress=not args.no_progress)
    result = {"table": str(out), "kind": args.kind, "config": space.to_config(), "seconds": time.perf_counter() - t0}
    if args.json:
        print_json(result)
    else:
        print(f"wrote {out} ({space.describe()}) in {result['seconds']:.1f} s")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if _read_kind(args.table) == "latency":
        return _validate_latency(args)
    return _validate_flops(args)


def _validate_latency(args: argparse.Namespace) -> int:
    """Latency tables: predicted vs measured end to end for random architectures on this machine."""
    from spos_deploy.tables.latency.table import LatencyTable
    from spos_deploy.tables.latency.validate import scatter_plot, validate_table

    table = LatencyTable.load(args.table)
    stats = validate_table(
        table,
        args.samples,
        seed=args.seed,
        allow_mismatch=args.allow_table_mismatch,
        progress=not args.no_progress,
        rounds=args.rounds,
    )
    result = {"table": args.table, "kind": "latency", "fingerprint": table.fingerprint, **stats}
    plot = Path(args.plot) if args.plot else Path(args.table).with_suffix(".validation.png")
    scatter_plot(stats, plot, Path(args.table).name)
    result["plot"] = str(plot)
    if args.report:
        from spos_deploy.atomic import write_json

        write_json(args.report, result)
    if args.json:
        print_json(result)
    else:
        rows = [
            ["samples", stats["samples"]],
            ["MAPE %", f"{stats['mape']:.2f}"],
            ["max error %", f"{stats['max_error']:.2f}"],
            ["within ±5%", f"{stats['within_5']:.0%}"],
            ["within ±10%", f"{stats['within_10']:.0%}"],
            ["Kendall tau", f"{stats['kendall_tau']:.3f}"],
        ]
        print(tabulate(rows, tablefmt="github", disable_numparse=True))
        print(f"scatter plot: {plot}")
    return 0


def _validate_flops(args: argparse.Namespace) -> int:
    """FLOPs tables: compare table counting with graph counting on random architectures (must be exact)."""
    from spos_deploy.tables.flops.build import count_spec_parts

    table = FlopsTable.load(args.table)
    space = table.space
    blocks, channels = _random_archs(space, args.samples, args.seed, table)
    t_flops, t_params = table.count(blocks, channels)
    mismatches = []
    from tqdm import tqdm

    for i in tqdm(range(args.samples), desc="graph counts", disable=args.no_progress):
        spec = ModelSpec(space, tuple(map(int, blocks[i])), tuple(map(int, channels[i])))
        parts = count_spec_parts(spec)
        g_flops = sum(c.flops for c in parts.values())
        g_params = sum(c.params for c in parts.values())
        if (g_flops, g_params) != (int(t_flops[i]), int(t_params[i])):
            mismatches.append(
                {"model": spec.to_json(), "graph": [g_flops, g_params], "table": [int(t_flops[i]), int(t_params[i])]}
            )
    result = {
        "table": args.table,
        "kind": "flops",
        "samples": args.samples,
        "exact": not mismatches,
        "mismatches": mismatches,
        "config": space.to_config(),
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"{args.table}: {args.samples} random architectures, "
            f"{'all exact' if not mismatches else f'{len(mismatches)} MISMATCHES'}"
        )
    return 0 if not mismatches else 1


def cmd_show(args: argparse.Namespace) -> int:
    if _read_kind(args.table) == "latency":
        return _show_latency(args)
    table = FlopsTable.load(args.table)
    space = table.space
    if args.json:
        print_json(table.to_json())
        return 0
    print(f"{args.table}: FLOPs/params table, {space.describe()}")
    print(
        f"stem {table.stem_flops:,} FLOPs / {table.stem_params:,} params; "
        f"head {table.head_flops:,} / {table.head_params:,}"
    )
    rows = []
    for pos in space.positions():
        for b, name in enumerate(BLOCK_NAMES):
            f = table.flops[pos.index, b]
            rows.append(
                [pos.index, name, pos.stride, pos.in_size, f"{f[f >= 0].min() / 1e6:.3f}", f"{f.max() / 1e6:.3f}"]
            )
    print(
        tabulate(
            rows,
            headers=["pos", "block", "stride", "inp_size", "min MFLOPs", "max MFLOPs"],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    return 0


def _show_latency(args: argparse.Namespace) -> int:
    from spos_deploy.tables.latency.table import LatencyTable

    table = LatencyTable.load(args.table)
    if args.json:
        print_json(table.to_json())
        return 0
    fp = table.fingerprint
    print(
        f"{args.table}: latency table, {table.space.describe()}, {fp['runtime']} {fp['runtime_version']} "
        f"({fp['provider']}), {fp['precision']}, batch {fp['batch']}, {fp['threads']} threads"
    )
    print(f"measured on {fp.get('gpu') or fp['cpu']} ({fp['cores']} cores) at {fp.get('date')}")
    print(
        f"stem {table.stem_ms:.3f} ms, head {table.head_ms:.3f} ms; correction: "
        f"{table.slope:.3f} x sum + {table.intercept:.3f} ms"
    )
    rows = []
    for pos in table.space.positions():
        for b, name in enumerate(BLOCK_NAMES):
            e = table.entries[pos.index, b]
            rows.append(
                [
                    pos.index,
                    name,
                    pos.stride,
                    pos.in_size,
                    f"{np.nanmin(e):.3f}",
                    f"{np.nanmax(e):.3f}",
                    f"{np.nanmax(table.dispersion[pos.index, b]):.1%}",
                ]
            )
    print(
        tabulate(
            rows,
            headers=["pos", "block", "stride", "inp_size", "min ms", "max ms", "max dispersion"],
            tablefmt="github",
            disable_numparse=True,
        )
    )
    if args.plot:
        _latency_heatmap(table, args.plot)
        print(f"heat map: {args.plot}")
    return 0


def _latency_heatmap(table, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spos_deploy.atomic import atomic_path

    fig, axes = plt.subplots(1, table.space.num_blocks, figsize=(4 * table.space.num_blocks, 5), sharey=True)
    for b, ax in enumerate(np.atleast_1d(axes)):
        im = ax.imshow(table.entries[:, b, :], aspect="auto", cmap="viridis")
        ax.set_title(BLOCK_NAMES[b])
        ax.set_xlabel("channel choice")
        fig.colorbar(im, ax=ax, label="ms")
    np.atleast_1d(axes)[0].set_ylabel("position")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spos-lut", description="Build, validate and show lookup tables.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a table for a configuration")
    b.add_argument("--kind", choices=["flops", "micronet", "latency"], default="flops")
    b.add_argument("-o", "--output", help=f"output file (default {DEFAULT_DIR}/<kind>_<config>.json)")
    b.add_argument("--no-progress", action="store_true")
    lat = b.add_argument_group("latency tables (--kind latency)")
    lat.add_argument("--runtime", choices=["ort-cpu", "ort-cuda", "mxnet-cpu", "mxnet-gpu"], default="ort-cpu")
    lat.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    lat.add_argument("--batch", type=int, default=1)
    lat.add_argument("--threads", type=int, help="intra-op threads (default: every core this process may use)")
    lat.add_argument("--shuffle", choices=["reshape", "conv"], default="reshape", help="deployed shuffle form")
    lat.add_argument("--repeats", type=int, default=25, help="timed runs per entry (at least)")
    lat.add_argument(
        "--calibration-networks",
        type=int,
        default=8,
        help="random whole networks measured at the end to fit the correction",
    )
    lat.add_argument("--resume", action="store_true", help="continue an interrupted build")
    add_space_options(b)
    add_common(b)
    b.set_defaults(func=cmd_build)
    v = sub.add_parser("validate", help="check a table against whole-network measurements or counts")
    v.add_argument("table")
    v.add_argument("--samples", type=int, default=50)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--rounds", type=int, default=5, help="interleaved end-to-end measurement rounds (onnxruntime)")
    v.add_argument("--no-progress", action="store_true")
    v.add_argument("--plot", help="scatter plot PNG (latency; default: next to the table)")
    v.add_argument("--report", help="also write the result JSON here (latency)")
    v.add_argument(
        "--allow-table-mismatch",
        action="store_true",
        help="validate a table measured on other hardware or settings anyway",
    )
    add_common(v)
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("show", help="summarise a table")
    s.add_argument("table")
    s.add_argument("--plot", help="latency tables: heat map PNG of the entries")
    add_common(s)
    s.set_defaults(func=cmd_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-lut", build_parser(), lambda a: a.func(a), argv)


if __name__ == "__main__":
    sys.exit(main())
