"""``spos-lut``: build, validate, show and list lookup tables (the library does the work: :mod:`spos_deploy.tables`).

A table argument is a path or the name of a built or shipped table (:mod:`spos_deploy.tables.catalog`);
builds without ``-o`` go to the per-user table folder, never into the current folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import (
    TARGET_TABLE_HELP,
    add_allow_table_mismatch,
    add_batch,
    add_force,
    add_output,
    add_plot,
    add_precision,
    add_progress,
    add_reanchor,
    add_repeats,
    add_resume,
    add_runtime,
    add_samples,
    add_seed,
    add_sessions,
    add_shuffle,
    add_space_options,
    add_target,
    add_threads,
    config_from_args,
    device_given,
    latency_runtime,
    nonneg_int,
    positive_int,
    space_from_args,
)
from spos_deploy.errors import BadInputError
from spos_deploy.runtime.deployed import SESSIONS
from spos_deploy.runtime.registry import DEFAULT_RUNTIME, runtime_for
from spos_deploy.tables.catalog import TABLES_ENV, is_shipped, resolve_table, user_tables_dir
from spos_deploy.tables.latency.table import FIT_NETWORKS, FIT_NETWORKS_BY_SPACE, STAT_SETS, VALIDATION_PASSES

DEFAULT_DIR_HELP = f"${TABLES_ENV}, else $XDG_DATA_HOME/spos-deploy/tables (~/.local/share/spos-deploy/tables)"
"""Where a build writes without ``-o`` (:func:`~spos_deploy.tables.catalog.user_tables_dir`), as help texts say it."""
KINDS = ("flops", "micronet", "latency")


def _latency_setup(args: argparse.Namespace, space: Any) -> Any:
    """The build's settings; with ``--target auto``, the runtime and precision ``spos-export --target auto``
    ships for this space here (:func:`spos_deploy.tables.latency.target.decide_target`)."""
    from spos_deploy.tables.latency.build import LatencySetup

    if args.target == "auto":
        if args.runtime or device_given(args):
            raise BadInputError(
                "--target auto chooses the runtime (on the cpu): drop --runtime and --device, or narrow with "
                "--auto-runtimes"
            )
        from spos_deploy.tables.latency.target import decide_target

        target = decide_target(
            space, args.threads, args.auto_runtimes, args.auto_rounds, args.auto_repeats, args.precision
        )
        given = {"runtime": target.runtime, "precision": target.precision, "threads": target.threads}
    else:
        given = {"runtime": latency_runtime(args) or DEFAULT_RUNTIME, "precision": args.precision or "fp32"}
    setup = config_from_args(LatencySetup, args, **given)
    setup.check()
    return setup


def _default_name(args: argparse.Namespace, space: Any, setup: Any) -> str:
    from spos_deploy.tables.flops.table import default_table_name
    from spos_deploy.tables.micronet.table import default_micronet_name

    if args.kind == "latency":
        from spos_deploy.tables.latency.build import default_latency_name

        return default_latency_name(space, setup)
    return (default_table_name if args.kind == "flops" else default_micronet_name)(space)


def output_path(output: str | None, default_name: str, force: bool, resume: bool = False) -> Path:
    """Where a build writes: ``-o FILE``, ``-o FOLDER`` (the default name inside it) or the per-user table
    folder (where a name finds it again; the current folder is never written to without ``-o``).

    An existing file is refused before any work unless ``force`` (or, for latency, ``resume``).
    """
    out = Path(output) if output else user_tables_dir() / default_name
    if out.is_dir():
        out = out / default_name
    for up in out.parents:
        if up.exists() and not up.is_dir():
            raise BadInputError(f"{out}: {up} is a file, not a folder")
    if out.is_dir() or (out.exists() and not force and not resume):
        raise BadInputError(f"{out}: exists; choose another --output or pass --force")
    return out


def cmd_build(args: argparse.Namespace) -> int:
    space = space_from_args(args)
    if args.auto_runtimes and not args.target:
        raise BadInputError("--auto-runtimes narrows --target auto's candidates: add --target auto")
    if args.target and args.kind != "latency":
        raise BadInputError("--target auto picks the form of a latency table: add --kind latency")
    setup = _latency_setup(args, space) if args.kind == "latency" else None
    if args.target and not args.output and not args.force and not args.resume:
        from spos_deploy.tables.catalog import find_table

        found = find_table(_default_name(args, space, setup))
        if found is not None:  # the table of the decided form is built already: nothing to do
            return _built(args, found, space, 0.0, "up to date")
    out = output_path(
        args.output, _default_name(args, space, setup), args.force, args.kind == "latency" and args.resume
    )
    t0 = time.perf_counter()
    progress = not args.no_progress
    if args.kind == "flops":
        from spos_deploy.tables.flops.build import build_flops_table

        build_flops_table(space, progress).save(out)
    elif args.kind == "micronet":
        from spos_deploy.tables.micronet.build import build_micronet_table

        build_micronet_table(space, progress).save(out)
    else:
        from spos_deploy.tables.latency.build import build_latency_table

        build_latency_table(space, setup, out, resume=args.resume, progress=progress)
    return _built(args, out, space, time.perf_counter() - t0, "wrote")


def _built(args: argparse.Namespace, out: Path, space: Any, seconds: float, verb: str) -> int:
    result = {"table": str(out), "kind": args.kind, "config": space.to_config(), "seconds": seconds}
    if args.json:
        print_json(result)
    else:
        print(f"{verb} {out} ({space.describe()}) in {seconds:.1f} s")
        if not args.output:
            print(f"(the per-user table folder: commands find the table by its name, {out.name.removesuffix('.json')})")
    return 0


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _validate_latency(args: argparse.Namespace, table: Any) -> dict[str, Any]:
    from spos_deploy.tables.latency.validate import validate_rounds

    runtime = None  # the table's own
    if args.runtime or device_given(args):  # --device alone: the table's engine on that device
        runtime = runtime_for(args.runtime or table.fingerprint.get("runtime", ""), args.device).name

    return {
        "kind": "latency",
        "fingerprint": table.fingerprint,
        **validate_rounds(
            table,
            args.samples,
            args.rounds,
            args.seed,
            args.passes,
            args.reanchor,
            args.allow_table_mismatch,
            not args.no_progress,
            args.table,
            runtime,
        ),
    }


def _latency_rows(result: dict[str, Any]) -> list[list[Any]]:
    return [
        ["samples", result["samples"]],
        ["MAPE %", f"{result['mape']:.2f}"],
        ["max error %", f"{result['max_error']:.2f}"],
        ["within ±5%", f"{result['within_5']:.0%}"],
        ["within ±10%", f"{result['within_10']:.0%}"],
        ["Kendall tau", _fmt(result["kendall_tau"], ".3f")],
    ]


def _round_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Per round and summary: speed factors (anchors before the round, anchors inside its passes), then
    MAPE / within 10 % / tau as built, re-anchored before and re-anchored in-pass."""
    headers = ["round", "speed", "speed in-pass"]
    for label in ("", " re-anch.", " in-pass"):
        headers += [f"MAPE %{label}", f"within 10%{label}", f"tau{label}"]

    def stats(s: dict[str, Any] | None) -> list[str]:
        if not s:
            return ["-", "-", "-"]
        return [f"{s['mape']:.2f}", f"{s['within_10']:.0%}", _fmt(s["kendall_tau"], ".3f")]

    rows = []
    for i, r in enumerate(result["rounds"]):
        speed = f"{r['reanchor']['factor']:.3f}" if r.get("reanchor") else "-"
        in_pass = f"{r['anchors_in_pass']['factor']:.3f}" if r.get("anchors_in_pass") else "-"
        rows.append([i + 1, speed, in_pass, *(c for key in STAT_SETS for c in stats(r.get(key)))])
    summary = result["summary"]
    for which in ("mean", "worst"):
        cells = []
        for key in STAT_SETS:
            s = summary[key]
            if not s:
                cells += ["-", "-", "-"]
                continue
            mape, w10, tau = (s[k][which] if s[k] else None for k in ("mape", "within_10", "kendall_tau"))
            cells += [_fmt(mape, ".2f"), _fmt(w10, ".0%"), _fmt(tau, ".3f")]
        rows.append([which, "", "", *cells])
    return headers, rows


def _print_latency(result: dict[str, Any], args_reanchor: bool) -> None:
    from tabulate import tabulate

    notes = [r["reanchor"]["note"] for r in result["rounds"] if r.get("reanchor")]
    if notes:
        print(notes[-1] if len(notes) == 1 else "re-anchored each round: " + "; ".join(notes))
    elif not result["reanchor"]:
        why = "--no-reanchor" if not args_reanchor else "the table has no anchor networks"
        print(f"predictions as built, not re-anchored ({why})")
    if len(result["rounds"]) > 1:
        headers, rows = _round_rows(result)
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        print("pooled over all rounds:")
    print(tabulate(_latency_rows(result), tablefmt="github", disable_numparse=True))
    print(_sources_line(result["rounds"]))
    for w in result.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    print(f"scatter plot: {result['plot']}")


def _sources_line(rounds: list[dict[str, Any]]) -> str:
    """Where the error as built comes from, in MAPE points (the mean over rounds)."""

    def mean(key: str) -> str:
        vals = [r["error_sources"][key] for r in rounds if r["error_sources"][key] is not None]
        return f"{sum(vals) / len(vals):.2f}" if vals else "n/a"

    return (
        f"re-anchored with the anchors timed inside the passes: MAPE {mean('mape_reanchored_in_pass')} %; "
        f"error as built, MAPE points from: machine speed {mean('from_machine_speed')}, correction "
        f"{mean('from_correction')}, entries {mean('from_entries')} (ground-truth noise "
        f"{mean('measurement_noise_pct')} %, drift between passes {mean('pass_drift_pct')} %; the measurement "
        f"ranks the networks against itself to tau {mean('tau_ceiling')})"
    )


def _default_plot(table: Path) -> Path:
    """The validation scatter plot goes beside the table, except for a shipped table, whose folder belongs
    to the installation: then into the per-user table folder."""
    name = table.with_suffix(".validation.png").name
    return user_tables_dir() / name if is_shipped(table) else table.with_name(name)


def cmd_validate(args: argparse.Namespace) -> int:
    from spos_deploy.tables.files import kind_of, load_table, validate_any

    path = resolve_table(args.table)
    args.table = str(path)
    table = load_table(path)
    kind = kind_of(table)
    if kind == "latency":
        result = {"table": args.table, **_validate_latency(args, table)}
        from spos_deploy.tables.latency.validate import scatter_plot

        plot = Path(args.plot) if args.plot else _default_plot(path)
        scatter_plot(result, plot, path.name)
        result["plot"] = str(plot)
    else:
        result = {
            "table": args.table,
            **validate_any(table, args.samples, args.seed, not args.no_progress, 1, args.allow_table_mismatch),
        }
    if args.report:
        from spos_deploy.atomic import write_json

        write_json(args.report, result)
    if args.json:
        print_json(result)
    elif kind == "latency":
        _print_latency(result, args.reanchor)
    else:
        bad = len(result["mismatches"])
        print(f"{args.table}: {args.samples} random architectures, {'all exact' if not bad else f'{bad} MISMATCHES'}")
    return 0 if kind == "latency" or result["exact"] else 1


def cmd_show(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from spos_deploy.tables.files import load_table
    from spos_deploy.tables.latency.table import LatencyTable

    args.table = str(resolve_table(args.table))
    table = load_table(args.table)
    if args.plot and not isinstance(table, LatencyTable):
        raise BadInputError(f"--plot: heat maps are drawn for latency tables only ({args.table} is not one)")
    if args.json:
        print_json(table.to_json())
        return 0
    lines, headers, rows = table.describe(args.table)
    print("\n".join(lines))
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    if args.plot:
        from spos_deploy.tables.latency.validate import heatmap

        heatmap(table, args.plot)
        print(f"heat map: {args.plot}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from spos_deploy.tables.catalog import list_tables, shipped_tables_dir

    entries = list_tables()
    user, shipped = user_tables_dir(), shipped_tables_dir()
    if args.json:
        print_json({"user_dir": str(user), "shipped_dir": str(shipped), "tables": [e.to_json() for e in entries]})
        return 0
    print(f"user tables: {user}" + ("" if user.is_dir() else " (none built yet)"))
    print(f"shipped tables: {shipped}")
    rows = []
    for e in entries:
        where = e.source + (" (shadowed by a user table)" if e.shadowed else "")
        if e.error:
            rows.append([e.name, "-", f"not a readable table: {e.error}", "", where])
        else:
            rows.append([e.name, e.kind, e.config, e.setup or "", where])
    print(tabulate(rows, headers=["name", "kind", "configuration", "measured with", "from"], tablefmt="github"))
    print("use a table by its name: spos-lut show NAME, --flops-table NAME, --latency-table NAME, ...")
    return 0


TABLE_ARG_HELP = "a table file, or the name of a built or shipped table (see spos-lut list)"


def _build_parser(sub: Any) -> None:
    b = sub.add_parser("build", help="build a table for a configuration")
    b.add_argument("--kind", choices=list(KINDS), default="flops")
    add_output(
        b,
        f"output file, or a folder for the default name (default: <kind>_<config>.json in {DEFAULT_DIR_HELP})",
        required=False,
        metavar="FILE",
    )
    add_force(b, help="replace an existing output file (the new table takes its place once complete)")
    add_progress(b)
    lat = b.add_argument_group("latency tables (--kind latency)")
    add_runtime(
        lat, None, "runtime the table is measured with (default: onnxruntime)", device_help="device it is measured on"
    )
    add_precision(
        lat, "fp32 (default), int8 (onnxruntime: QDQ; OpenVINO: NNCF) or bf16 (openvino, where the CPU has it)"
    )
    add_batch(lat)
    add_threads(lat, help="intra-op threads (default: every core this process may use)")
    add_shuffle(lat, "reshape", help="deployed shuffle form")
    add_repeats(lat, 25, "timed runs per entry (at least; >= 3)", lo=3)
    lat.add_argument(
        "--calibration-networks",
        type=nonneg_int,
        default=8,
        help="random whole networks measured at the end to fit the additive predictor's correction",
    )
    lat.add_argument(
        "--fit-networks",
        type=nonneg_int,
        help="whole networks the fitted predictor is solved on (default: "
        + ", ".join(f"{n} on the {s} space" for s, n in FIT_NETWORKS_BY_SPACE.items())
        + f", {FIT_NETWORKS} on others; 0: the additive predictor only)",
    )
    add_sessions(
        lat, SESSIONS, f"fresh sessions per whole network (default {SESSIONS}: the deployed-latency definition)"
    )
    add_resume(lat, help="continue an interrupted build")
    add_target(b, TARGET_TABLE_HELP)
    add_space_options(b)
    add_common(b)
    b.set_defaults(func=cmd_build)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spos-lut", description="Build, validate and show lookup tables.")
    sub = p.add_subparsers(dest="command", required=True)
    _build_parser(sub)
    v = sub.add_parser("validate", help="check a table against whole-network measurements or counts")
    v.add_argument("table", help=TABLE_ARG_HELP)
    add_samples(v, 50, "random architectures")
    add_seed(v)
    v.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="latency: validation rounds, fresh architectures each; per round and mean/worst (default 1)",
    )
    v.add_argument(
        "--passes",
        type=positive_int,
        default=VALIDATION_PASSES,
        help=f"latency: interleaved end-to-end timing passes per round (default {VALIDATION_PASSES})",
    )
    add_runtime(
        v,
        None,
        "latency: the runtime the table must be for (a table of another runtime is refused)",
        device_help="latency: the device the table must be for",
    )
    add_reanchor(v)
    add_progress(v)
    add_plot(v, help="scatter plot PNG (latency; default: next to the table, or the user folder for a shipped one)")
    v.add_argument("--report", metavar="FILE", help="also write the result JSON here")
    add_allow_table_mismatch(v, help="validate a table measured on other hardware or settings anyway")
    add_common(v)
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser("show", help="summarise a table")
    s.add_argument("table", help=TABLE_ARG_HELP)
    add_plot(s, help="latency tables: heat map PNG of the entries")
    add_common(s)
    s.set_defaults(func=cmd_show)
    ls = sub.add_parser("list", help="the tables a name finds: built ones (per-user folder), then the shipped ones")
    add_common(ls)
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-lut", build_parser(), lambda a: a.func(a), argv)


if __name__ == "__main__":
    sys.exit(main())
