"""Latency predictors against measured deployed latency, per space and shipping form.

For each search space x deployed form (runtime, precision) x batch: a latency table is built here with both
predictors (the part-timed additive one and the one fitted on whole networks), then held-out random
architectures are exported in that form and their deployed latency (:mod:`spos_deploy.runtime.deployed`)
is measured twice, independently. Recorded per predictor, on all architectures and on the fastest 20 %:
MAPE, share within 10 %, Kendall tau, worst error, against the two measurements' own agreement; how many of
2,000 random architectures each predictor ranks slower than the same network made one width wider (the
hardware does that too: docs/latency.md); and the build's cost.

Targets: MAPE <= 5 %, >= 95 % within 10 %, Kendall tau >= 0.9 x the repeat tau.

    python -m benchmarks.latency_prediction --spaces small --forms onnxruntime:int8 onnxruntime:fp32 --batches 1 8
    python -m benchmarks.latency_prediction --spaces imagenet --batches 8 --truth-sessions 15   # held-out, 15 sessions
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

from benchmarks.record import load_dict, results_dir, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.runtime.deployed import SESSIONS
from spos_deploy.runtime.load import probe, summary_line
from spos_deploy.runtime.registry import runtime_named, runtime_spelled
from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, measure_deployed_specs
from spos_deploy.tables.latency.table import FIT_NETWORKS, LatencyTable, reanchor_factor
from spos_deploy.tables.latency.validate import predictor_report, setup_of, specs_of

TARGETS = {"mape": 5.0, "within_10": 0.95, "tau_of_repeat": 0.9}


def measure_case(space_name: str, form: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build the table of one case (or reuse the one built before), measure the held-out set twice, report."""
    spelled, precision = form.split(":")
    runtime = runtime_spelled(spelled).name  # the work folder and the report name it as tables do: ort-cpu
    work = Path(args.work) / f"{space_name}_{runtime}_{precision}_b{batch}"
    work.mkdir(parents=True, exist_ok=True)
    done = work / "report.json"
    if done.exists():  # measured by an earlier invocation: its own date and load are in it
        earlier = json.loads(done.read_text())
        if earlier.get("truth_sessions", SESSIONS) == args.truth_sessions:
            return earlier
    kept = recorded_case(args.recorded, space_name, runtime, precision, batch, args.truth_sessions)
    if kept is not None:  # in the record this run extends: kept with its own date, load and command
        return kept
    with probe() as p:
        report = _measure(space_name, runtime, precision, batch, work, args)
    report.update(measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    report.update(load=load_dict(p.record()))
    done.write_text(json.dumps(report))
    return report


def recorded_case(
    record: dict[str, Any] | None, space: str, runtime: str, precision: str, batch: int, truth_sessions: int = SESSIONS
) -> dict[str, Any] | None:
    """The case of an earlier record measured for the same space, form, batch and held-out sessions, or None.

    Why: one 224 px batch-8 case costs over an hour of a quiet machine; a record is extended form by form,
    and the cases it holds keep the date and load they were measured under.
    """
    want = (space, runtime, precision, batch, truth_sessions)
    for case in (record or {}).get("cases", []):
        got = tuple(case.get(k) for k in ("space", "runtime", "precision", "batch")) + (
            case.get("truth_sessions", SESSIONS),
        )
        if got == want:
            return case | {"command": case.get("command", record.get("command"))}
    return None


def _measure(
    space_name: str, runtime: str, precision: str, batch: int, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    space = SPACES[space_name]
    setup = LatencySetup(runtime=runtime, precision=precision, batch=batch, fit_networks=args.fit_networks)
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
        runs = measure_deployed_specs(specs, truth, Path(tmp), seed=1, repeats=2)
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
    report.update(anchor_factors=factors, truth_sessions=args.truth_sessions)
    return report


def _fit_summary(table: LatencyTable) -> dict[str, Any]:
    f = table.fitted or {}
    return {k: f.get(k) for k in ("ridge", "cv_mape", "fixed_ms", "budget_ratio")} | {
        "networks": len(f.get("networks", []))
    }


def _seconds(v: float | None) -> str:
    return "not recorded" if v is None else f"{v:.0f}"


def _label(report: dict[str, Any]) -> str:
    """A report's runtime as the commands spell it (``onnxruntime on cpu``)."""
    return runtime_named(report["runtime"]).label


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
                    f"| {r['space']} | {_label(r)} {r['precision']} | {r['batch']} | {name} | {label} | "
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
    for r in reports:
        load = r.get("load")
        lines.append(
            f"- {r['space']} {_label(r)} {r['precision']} batch {r['batch']}: measured {r.get('measured_at', '?')}, "
            f"machine {summary_line(load) if load else 'load not recorded'}; anchors ran "
            f"{', '.join(f'{f:.3f}' for f in r['anchor_factors'])} x the table's prediction in the two measurements "
            f"({r.get('truth_sessions', SESSIONS)} fresh sessions per held-out network)"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", choices=sorted(SPACES), default=["small"])
    ap.add_argument("--forms", nargs="+", default=["onnxruntime:fp32", "onnxruntime:int8"], help="RUNTIME:PRECISION")
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--samples", type=int, default=50, help="held-out random architectures per case")
    ap.add_argument("--fit-networks", type=int, default=FIT_NETWORKS)
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
    args = ap.parse_args()
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
