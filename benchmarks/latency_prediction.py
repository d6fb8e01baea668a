"""Latency predictors against measured deployed latency, per space and shipping form.

For each search space x deployed form (runtime, precision) x batch: a latency table is built here with both
predictors (the part-timed additive one and the one fitted on whole networks), then held-out random
architectures are exported in that form and their deployed latency (:mod:`spos_deploy.runtime.deployed`)
is measured twice, independently. Recorded per predictor, on all architectures and on the fastest 20 %:
MAPE, share within 10 %, Kendall tau, worst error, against the two measurements' own agreement; how many of
2,000 random architectures each predictor ranks slower than the same network made one width wider (the
hardware does that too: docs/latency.md); and the build's cost.

Each case also records every session median of its held-out networks, its fit solved again on the first k of
the table's whole networks (the fit curve: how many a space needs) and the held-out set judged with the
sessions' lower quartile beside their median. ``--threads`` measures a case at a thread count (small networks
ship at 1 thread where ``--target auto`` decides so); the count is part of a case's identity.

Targets: MAPE <= 5 %, >= 95 % within 10 %, Kendall tau >= 0.9 x the repeat tau.

    python -m benchmarks.latency_prediction --spaces small --forms onnxruntime:int8 onnxruntime:fp32 --batches 1 8
    python -m benchmarks.latency_prediction --spaces imagenet --batches 8 --truth-sessions 15   # held-out, 15 sessions
    python -m benchmarks.latency_prediction --threads 1 --fit-networks 480 --tag small_b1_t1_fit480
    python -m benchmarks.latency_prediction --threads 1 --remeasure --tag small_b1_t1_again   # same tables, again
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import load_dict, results_dir, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.cli.options import add_threads
from spos_deploy.runtime.deployed import SESSIONS
from spos_deploy.runtime.load import probe, summary_line
from spos_deploy.runtime.registry import runtime_named, runtime_spelled
from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, measure_deployed_specs, refit
from spos_deploy.tables.latency.table import LatencyTable, reanchor_factor
from spos_deploy.tables.latency.validate import predictor_report, setup_of, specs_of

TARGETS = {"mape": 5.0, "within_10": 0.95, "tau_of_repeat": 0.9}
FIT_CURVE = (40, 80, 160, 240, 320, 480)  # whole-network counts a case's fit is also judged at
STATISTICS = {"median": 0.5, "lower quartile": 0.25}  # of the session medians; the median is the definition


def measure_case(space_name: str, form: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build the table of one case (or reuse the one built before), measure the held-out set twice, report."""
    spelled, precision = form.split(":")
    runtime = runtime_spelled(spelled).name  # the work folder and the report name it as tables do: ort-cpu
    threads = f"_t{args.threads}" if args.threads else ""  # all cores: named as before
    work = Path(args.work) / f"{space_name}_{runtime}_{precision}_b{batch}{threads}"
    work.mkdir(parents=True, exist_ok=True)
    done = work / "report.json"
    earlier = finished_report(work, args.truth_sessions, args.remeasure)
    if earlier is not None:
        return earlier
    kept = recorded_case(
        args.recorded, space_name, runtime, precision, batch, args.truth_sessions, _threads_of(args.threads)
    )
    if kept is not None:  # in the record this run extends: kept with its own date, load and command
        return kept
    with probe() as p:
        report = _measure(space_name, runtime, precision, batch, work, args)
    report.update(measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    report.update(load=load_dict(p.record()))
    done.write_text(json.dumps(report))
    return report


def finished_report(work: Path, truth_sessions: int, remeasure: bool = False) -> dict[str, Any] | None:
    """The report an earlier invocation left in a case's work folder (its own date and load are in it), when it
    answers this one: measured with the same sessions per held-out network, and not ``--remeasure``."""
    done = work / "report.json"
    if remeasure or not done.exists():
        return None
    earlier = json.loads(done.read_text())
    return earlier if earlier.get("truth_sessions", SESSIONS) == truth_sessions else None


def _threads_of(threads: int | None) -> int:
    """The thread count a case runs with: ``--threads``, or every core this process may use."""
    return threads or LatencySetup().resolved_threads()


def recorded_case(
    record: dict[str, Any] | None,
    space: str,
    runtime: str,
    precision: str,
    batch: int,
    truth_sessions: int = SESSIONS,
    threads: int | None = None,
) -> dict[str, Any] | None:
    """The case of an earlier record measured for the same space, form, batch, threads and held-out sessions,
    or None (``threads`` None: every core; a case recorded without a count ran on every core of a 2-core
    machine).

    Why: one 224 px batch-8 case costs over an hour of a quiet machine; a record is extended form by form,
    and the cases it holds keep the date and load they were measured under.
    """
    want = (space, runtime, precision, batch, truth_sessions, _threads_of(threads))
    for case in (record or {}).get("cases", []):
        got = tuple(case.get(k) for k in ("space", "runtime", "precision", "batch")) + (
            case.get("truth_sessions", SESSIONS),
            case.get("threads", 2),
        )
        if got == want:
            return case | {"command": case.get("command", record.get("command"))}
    return None


def _measure(
    space_name: str, runtime: str, precision: str, batch: int, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    space = SPACES[space_name]
    setup = LatencySetup(
        runtime=runtime, precision=precision, batch=batch, threads=args.threads, fit_networks=args.fit_networks
    )
    path = work / "table.json"
    cost = work / "build_seconds.json"  # kept beside the table: a rerun that reuses it still reports its cost
    if not path.exists():
        resumed = path.with_name(path.name + ".partial.jsonl").exists()
        t0 = time.perf_counter()
        build_latency_table(space, setup, path, resume=resumed)
        if not resumed:  # a resumed build's time is only its last part: reported as not recorded
            cost.write_text(json.dumps(time.perf_counter() - t0))
    build_s = json.loads(cost.read_text()) if cost.exists() else None
    table = LatencyTable.load(path)
    blocks, channels = random_architectures(space, args.samples, seed=4242)
    ab, ac = table.anchor_choices()  # timed with the held-out set: the machine's speed at that moment
    with tempfile.TemporaryDirectory() as tmp:
        specs = specs_of(table, [*blocks, *ab], [*channels, *ac])
        truth = replace(setup_of(table), sessions=args.truth_sessions)
        runs = measure_deployed_specs(specs, truth, Path(tmp), seed=1, repeats=2, progress=True)
    n = len(blocks)
    first, second = ([m.ms for m in run[:n]] for run in runs)
    factors = [reanchor_factor(table.anchor_reference(), [m.ms for m in run[n:]]) for run in runs]
    tables = {"additive": table.additive(), "fitted": table}
    report = predictor_report(tables, blocks, channels, first, second)
    # what a user gets: predictions re-anchored (search and validation do it by default); each measurement
    # divided by its own anchors' factor, so the repeat agreement is judged the same way
    report["reanchored"] = predictor_report(
        tables, blocks, channels, np.array(first) / factors[0], np.array(second) / factors[1]
    )
    report.update(space=space_name, runtime=runtime, precision=precision, batch=batch, table=str(path))
    report.update(build_seconds=build_s, fit=_fit_summary(table), first_ms=first, second_ms=second)
    # every session median kept (anchors last): another statistic of the sessions can be judged later
    report.update(first_sessions=[m.session_ms for m in runs[0]], second_sessions=[m.session_ms for m in runs[1]])
    report.update(anchor_factors=factors, truth_sessions=args.truth_sessions, threads=setup.resolved_threads())
    anchors = [[m.ms for m in run[n:]] for run in runs]
    report.update(fit_curve=fit_curve(table, blocks, channels, first, second, anchors))
    report.update(statistics=statistics(table, blocks, channels, report["first_sessions"], report["second_sessions"]))
    return report


def fit_curve(
    table: LatencyTable, blocks: Any, channels: Any, first: Any, second: Any, anchors: list[list[float]]
) -> list[dict[str, Any]]:
    """The fitted predictor solved on the first k of the table's whole networks (:func:`refit`), each judged
    re-anchored on the held-out set as the table itself is: how many networks a space's table needs."""
    have = len((table.fitted or {}).get("networks", []))
    rows = []
    for k in sorted({k for k in FIT_CURVE if k < have} | ({have} if have else set())):
        t = refit(table, k)
        stats = _reanchored(t, blocks, channels, first, second, anchors)["predictors"]["fitted"]["all"]
        rows.append({"networks": k, "ridge": t.fitted["ridge"], "cv_mape": t.fitted["cv_mape"]} | stats)
    return rows


def _reanchored(
    table: LatencyTable, blocks: Any, channels: Any, first: Any, second: Any, anchors: list[Any]
) -> dict[str, Any]:
    """``table`` (as ``fitted``) against the two measurements, each divided by its anchors' factor."""
    factors = [reanchor_factor(table.anchor_reference(), a) for a in anchors]
    truth = np.asarray(first, float) / factors[0], np.asarray(second, float) / factors[1]
    return predictor_report({"fitted": table}, blocks, channels, *truth)


def statistics(
    table: LatencyTable, blocks: Any, channels: Any, first_sessions: Any, second_sessions: Any
) -> dict[str, dict[str, Any]]:
    """The same sessions judged with another statistic than their median (:data:`STATISTICS`): for each, the
    held-out set's two measurements against each other and the fit solved on that statistic of its own
    networks' sessions (:func:`refit`), both re-anchored on the anchors (the sessions' last rows) taken the same
    way. Why: small networks' fresh sessions fall into a fast and a slow mode (docs/latency.md), and a low
    quantile may be the steadier figure of the two."""
    n, count = len(blocks), len((table.fitted or {}).get("networks", []))
    out = {}
    for name, q in STATISTICS.items():
        first, second = (np.array([float(np.quantile(s, q)) for s in run]) for run in (first_sessions, second_sessions))
        t = refit(table, count, quantile=q) if count else table
        rep = _reanchored(t, blocks, channels, first[:n], second[:n], [first[n:], second[n:]])
        out[name] = {"quantile": q, "repeat": rep["repeat"], "fitted": rep["predictors"]["fitted"]["all"]}
        out[name]["cv_mape"] = (t.fitted or {}).get("cv_mape")
    return out


def _fit_summary(table: LatencyTable) -> dict[str, Any]:
    f = table.fitted or {}
    return {k: f.get(k) for k in ("ridge", "cv_mape", "fixed_ms", "budget_ratio")} | {
        "networks": len(f.get("networks", []))
    }


def _seconds(v: float | None) -> str:
    return "not recorded" if v is None else f"{v:.0f}"


def _form(report: dict[str, Any]) -> str:
    """A report's form as the commands spell it (``onnxruntime on cpu int8, 1 thread``); cases recorded
    before the thread count was part of a case ran on every core and say nothing."""
    threads = report.get("threads")
    count = "" if threads is None else f", {threads} thread" + ("s" if threads > 1 else "")
    return f"{runtime_named(report['runtime']).label} {report['precision']}{count}"


def markdown(reports: list[dict[str, Any]]) -> str:
    head = [
        "space", "form", "batch", "predictor", "predictions", "MAPE %", "within 10 %", "tau (repeat)", "worst %",
        "fastest 20 %: MAPE, tau (repeat)", "wider predicted faster (of 2000)", "build s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        for label, block in (("as built", r), ("re-anchored", r["reanchored"])):
            rep = block["repeat"]
            for name, p in block["predictors"].items():
                a, f = p["all"], p["fastest"]
                lines.append(
                    f"| {r['space']} | {_form(r)} | {r['batch']} | {name} | {label} | "
                    f"{a['mape']:.1f} | {a['within_10']:.0%} | {a['kendall_tau']:.2f} ({rep['kendall_tau']:.2f}) | "
                    f"{a['max_error']:.0f} | {f['mape']:.1f}, {f['kendall_tau'] or 0:.2f} "
                    f"({block['repeat_fastest']['kendall_tau'] or 0:.2f}) | {p['widening_violations']} | "
                    f"{_seconds(r['build_seconds'])} |"
                )
            lines.append(
                f"| | | | *repeat* | {label} | {rep['mape']:.1f} | {rep['within_10']:.0%} | {rep['kendall_tau']:.2f} | "
                f"{rep['max_error']:.0f} | | | |"
            )
    lines.append("")
    lines += _section(
        "The fitted predictor solved on the first k of each table's whole networks, re-anchored, against the same "
        "held-out measurements (how many networks a table needs):",
        ["space", "form", "batch", "fitted on", "ridge", "cross-validated MAPE %", "MAPE %", "within 10 %", "tau"],
        [
            [*_case(r), c["networks"], f"{c['ridge']:g}", f"{c['cv_mape']:.1f}", *_stats(c)]
            for r in reports
            for c in r.get("fit_curve", [])
        ],
    )
    lines += _section(
        "The same sessions judged with another statistic than their median (re-anchored; the fit solved on that "
        "statistic of its own networks' sessions):",
        ["space", "form", "batch", "statistic", "repeat: MAPE %, within 10 %, tau", "fitted: the same", "CV MAPE %"],
        [
            [*_case(r), name, ", ".join(_stats(st["repeat"])), ", ".join(_stats(st["fitted"])), _cv(st["cv_mape"])]
            for r in reports
            for name, st in r.get("statistics", {}).items()
        ],
    )
    for r in reports:
        load = r.get("load")
        lines.append(
            f"- {r['space']} {_form(r)}, batch {r['batch']}: measured {r.get('measured_at', '?')}, "
            f"machine {summary_line(load) if load else 'load not recorded'}; anchors ran "
            f"{', '.join(f'{f:.3f}' for f in r['anchor_factors'])} x the table's prediction in the two measurements "
            f"({r.get('truth_sessions', SESSIONS)} fresh sessions per held-out network)"
        )
    return "\n".join(lines) + "\n"


def _case(report: dict[str, Any]) -> list[Any]:
    return [report["space"], _form(report), report["batch"]]


def _stats(s: dict[str, Any]) -> list[str]:
    """MAPE, share within 10 % and tau of one :func:`~spos_deploy.tables.core.validation_stats`, as printed."""
    return [f"{s['mape']:.1f}", f"{s['within_10']:.0%}", f"{s['kendall_tau']:.2f}"]


def _cv(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _section(intro: str, head: list[str], rows: list[list[Any]]) -> list[str]:
    """A titled Markdown table, or nothing for no rows (records from before the table existed)."""
    return [intro, "", tabulate(rows, head, tablefmt="github", disable_numparse=True), ""] if rows else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", choices=sorted(SPACES), default=["small"])
    ap.add_argument("--forms", nargs="+", default=["onnxruntime:fp32", "onnxruntime:int8"], help="RUNTIME:PRECISION")
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--samples", type=int, default=50, help="held-out random architectures per case")
    add_threads(
        ap,
        help="threads of every case's table and measurements (default: every core; the form a "
        "small network ships with is often 1 thread: spos-export --target auto decides it)",
    )
    ap.add_argument(
        "--fit-networks", type=int, help="whole networks each table is fitted on (default: the space's, as spos-lut)"
    )
    ap.add_argument(
        "--truth-sessions",
        type=int,
        default=SESSIONS,
        help="fresh sessions per held-out network in each of its two measurements (the table is built with the "
        f"default {SESSIONS}): 15 pins a 224 px batch-8 network about twice as closely (docs/latency.md)",
    )
    ap.add_argument("--work", default="runs/latency_prediction", help="tables and per-case reports (resumable)")
    ap.add_argument("--tag", default="", help="suffix of the record's name")
    ap.add_argument(
        "--keep-recorded",
        action="store_true",
        help="cases the record of this name already holds are kept as recorded, not measured again",
    )
    ap.add_argument(
        "--remeasure",
        action="store_true",
        help="measure the held-out networks again with the tables the work folder holds (a case's finished "
        "report is otherwise reused): a second, independent measurement of the same tables",
    )
    args = ap.parse_args()
    if args.remeasure and args.keep_recorded:
        ap.error("--remeasure measures every case again: drop --keep-recorded")
    if args.truth_sessions < 1 or args.samples < 3:
        ap.error("--truth-sessions must be >= 1 and --samples >= 3")
    name = "latency_prediction" + (f"_{args.tag}" if args.tag else "")
    existing = results_dir("latency_prediction") / f"{name}.json"
    args.recorded = json.loads(existing.read_text()) if args.keep_recorded and existing.exists() else None
    cases = [(s, f, b) for s in args.spaces for f in args.forms for b in args.batches]
    reports = [measure_case(s, f, b, args) for s, f, b in cases]
    write_record("latency_prediction", name, {"targets": TARGETS, "cases": reports}, markdown(reports))


if __name__ == "__main__":
    run_script("latency_prediction", main)
