"""Latency predictors against measured deployed latency, per space and shipping form.

For each search space x deployed form (runtime, precision) x batch: a latency table is built here with both
predictors (the part-timed additive one and the one fitted on whole networks), then held-out random
architectures are exported in that form and their deployed latency (:mod:`spos_deploy.runtime.deployed`)
is measured twice, independently. Recorded per predictor, on all architectures and on the fastest 20 %:
MAPE, share within 10 %, Kendall tau, worst error, against the two measurements' own agreement; how many
architectures each predictor ranks slower than the same network made wider; and the build's cost.

Targets (issue "Latency-aware search that holds its budget"): MAPE <= 5 %, >= 95 % within 10 %, Kendall tau
>= 0.9 x the repeat tau; the small space's table never predicts a network slower than it made wider.

    python -m benchmarks.latency_prediction --spaces small --forms ort-cpu:int8 ort-cpu:fp32 --batches 1 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.record import write_record

from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, measure_deployed_specs
from spos_deploy.tables.latency.table import LatencyTable
from spos_deploy.tables.latency.validate import predictor_report, setup_of, specs_of

TARGETS = {"mape": 5.0, "within_10": 0.95, "tau_of_repeat": 0.9}


def measure_case(space_name: str, form: str, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Build the table of one case (or reuse the one built before), measure the held-out set twice, report."""
    runtime, precision = form.split(":")
    work = Path(args.work) / f"{space_name}_{runtime}_{precision}_b{batch}"
    work.mkdir(parents=True, exist_ok=True)
    done = work / "report.json"
    if done.exists():
        return json.loads(done.read_text())
    space = SPACES[space_name]
    setup = LatencySetup(runtime=runtime, precision=precision, batch=batch, fit_networks=args.fit_networks)
    path = work / "table.json"
    t0 = time.perf_counter()
    if not path.exists():
        build_latency_table(space, setup, path, resume=path.with_name(path.name + ".partial.jsonl").exists())
    build_s = time.perf_counter() - t0
    table = LatencyTable.load(path)
    blocks, channels = random_architectures(space, args.samples, seed=4242)
    with tempfile.TemporaryDirectory() as tmp:
        specs = specs_of(table, blocks, channels)
        runs = measure_deployed_specs(specs, setup_of(table), Path(tmp), seed=1, repeats=2)
    first, second = ([m.ms for m in run] for run in runs)
    report = predictor_report({"additive": table.additive(), "fitted": table}, blocks, channels, first, second)
    report.update(space=space_name, runtime=runtime, precision=precision, batch=batch, table=str(path))
    report.update(build_seconds=build_s, fit=_fit_summary(table), first_ms=first, second_ms=second)
    done.write_text(json.dumps(report))
    return report


def _fit_summary(table: LatencyTable) -> dict[str, Any]:
    f = table.fitted or {}
    return {k: f.get(k) for k in ("ridge", "cv_mape", "fixed_ms", "budget_ratio")} | {
        "networks": len(f.get("networks", []))
    }


def markdown(reports: list[dict[str, Any]]) -> str:
    head = [
        "space", "form", "batch", "predictor", "MAPE %", "within 10 %", "tau (repeat)", "worst %",
        "fastest 20 %: MAPE, tau (repeat)", "wider-is-slower errors", "build s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        rep = r["repeat"]
        for name, p in r["predictors"].items():
            a, f = p["all"], p["fastest"]
            lines.append(
                f"| {r['space']} | {r['runtime']} {r['precision']} | {r['batch']} | {name} | {a['mape']:.1f} | "
                f"{a['within_10']:.0%} | {a['kendall_tau']:.2f} ({rep['kendall_tau']:.2f}) | {a['max_error']:.0f} | "
                f"{f['mape']:.1f}, {f['kendall_tau'] or 0:.2f} ({r['repeat_fastest']['kendall_tau'] or 0:.2f}) | "
                f"{p['widening_violations']} | {r['build_seconds']:.0f} |"
            )
        lines.append(
            f"| | | | *repeat* | {rep['mape']:.1f} | {rep['within_10']:.0%} | {rep['kendall_tau']:.2f} | "
            f"{rep['max_error']:.0f} | | | |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", choices=sorted(SPACES), default=["small"])
    ap.add_argument("--forms", nargs="+", default=["ort-cpu:fp32", "ort-cpu:int8"], help="RUNTIME:PRECISION")
    ap.add_argument("--batches", nargs="+", type=int, default=[1])
    ap.add_argument("--samples", type=int, default=50, help="held-out random architectures per case")
    ap.add_argument("--fit-networks", type=int, default=60)
    ap.add_argument("--work", default="runs/latency_prediction", help="tables and per-case reports (resumable)")
    ap.add_argument("--tag", default="", help="suffix of the record's name")
    args = ap.parse_args()
    cases = [(s, f, b) for s in args.spaces for f in args.forms for b in args.batches]
    reports = [measure_case(s, f, b, args) for s, f, b in cases]
    name = "latency_prediction" + (f"_{args.tag}" if args.tag else "")
    write_record("latency_prediction", name, {"targets": TARGETS, "cases": reports}, markdown(reports))


if __name__ == "__main__":
    main()
