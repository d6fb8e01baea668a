"""Build the shipped onnxruntime CPU latency tables (fp32, int8) and check them against whole networks.

Targets, per precision, over 50 random architectures measured end to end on this machine: mean absolute
percentage error <= 5%, >= 95% within ±10%, Kendall tau >= 0.9; and a full table built in <= 15 minutes.
Writes the tables and their validation reports to spos_deploy/lookup_tables/, the summary to
benchmarks/results/latency_table_accuracy/ (the results of precisions not rerun are kept from the last record).

    python -m benchmarks.latency_table_accuracy [--precisions fp32 int8] [--samples 50] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from tabulate import tabulate

from benchmarks.record import ROOT, provenance, results_dir, write_record
from spos_deploy.atomic import write_json
from spos_deploy.cli.common import run_script
from spos_deploy.runtime import load
from spos_deploy.space import SearchSpace
from spos_deploy.tables.latency.build import LatencySetup, build_latency_table, default_latency_name
from spos_deploy.tables.latency.table import LatencyTable
from spos_deploy.tables.latency.validate import scatter_plot, validate_table

STUDY = "latency_table_accuracy"
TARGETS = {"mape": 5.0, "within_10": 0.95, "kendall_tau": 0.9, "build_minutes": 15.0}
HEADERS = [
    "precision", "build min", "samples", "MAPE %", "max err %", "within 5%", "within 10%", "Kendall tau",
    "rounds x sessions", "targets met",
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--reuse", action="store_true", help="validate existing tables instead of rebuilding")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved measurement rounds of the validation")
    return ap.parse_args(argv)


def build_and_validate(precision: str, args: argparse.Namespace, space: SearchSpace) -> dict[str, Any]:
    """One precision's table, built (or reused with ``--reuse``) and validated; its report beside it."""
    setup = LatencySetup(runtime="ort-cpu", precision=precision)
    path = ROOT / "spos_deploy" / "lookup_tables" / default_latency_name(space, setup)
    build_s = None
    if not (args.reuse and path.exists()):
        if path.exists():
            path.unlink()
        t0 = time.perf_counter()
        build_latency_table(space, setup, path, resume=path.with_name(path.name + ".partial.jsonl").exists())
        build_s = time.perf_counter() - t0
    old_report = path.with_suffix(".validation.json")
    if build_s is None and old_report.exists():  # reused table: keep its measured build time
        build_s = json.loads(old_report.read_text()).get("build_seconds")
    table = LatencyTable.load(path)
    stats = validate_table(table, args.samples, rounds=args.rounds)
    plot = path.with_suffix(".validation.png")
    scatter_plot(stats, plot, path.name)
    report = {"table": path.name, "kind": "latency", "fingerprint": table.fingerprint, "plot": plot.name}
    write_json(path.with_suffix(".validation.json"), {**report, "build_seconds": build_s, **stats})
    ok = {
        "mape": bool(stats["mape"] <= TARGETS["mape"]),
        "within_10": bool(stats["within_10"] >= TARGETS["within_10"]),
        "kendall_tau": bool(stats["kendall_tau"] >= TARGETS["kendall_tau"]),
        "build_minutes": None if build_s is None else bool(build_s / 60 <= TARGETS["build_minutes"]),
    }
    return {
        "precision": precision,
        "table": path.name,
        "build_seconds": build_s,
        **{k: stats[k] for k in ("samples", "mape", "max_error", "within_5", "within_10", "kendall_tau")},
        "targets_met": ok,
        "rounds": args.rounds,
        "sessions_per_network": 3,
    }


def with_earlier(results: list[dict[str, Any]], precisions: list[str]) -> tuple[list[dict[str, Any]], dict | None]:
    """This run's results and the last record's for the precisions not rerun, with where those came from."""
    previous = results_dir(STUDY) / f"{STUDY}.json"
    if not previous.exists():
        return results, None
    old = json.loads(previous.read_text())
    kept = [r for r in old["results"] if r["precision"] not in precisions]
    if not kept:
        return results, None
    source = {"precisions": [r["precision"] for r in kept], "date": old.get("date"), "command": old.get("command")}
    return kept + results, source


def table_text(results: list[dict[str, Any]]) -> str:
    rows = [
        [
            r["precision"],
            "-" if r["build_seconds"] is None else f"{r['build_seconds'] / 60:.1f}",
            r["samples"],
            f"{r['mape']:.2f}",
            f"{r['max_error']:.1f}",
            f"{r['within_5']:.0%}",
            f"{r['within_10']:.0%}",
            f"{r['kendall_tau']:.3f}",
            f"{r.get('rounds', '-')} x {r.get('sessions_per_network', 1)}",
            all(v is not False for v in r["targets_met"].values()),
        ]
        for r in sorted(results, key=lambda r: r["precision"])
    ]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    space = SearchSpace()  # OneShot, SE, last conv after pooling, 224
    with load.probe() as probe:
        results = [build_and_validate(p, args, space) for p in args.precisions]
    results, kept = with_earlier(results, args.precisions)
    text = table_text(results)
    print(text)
    prov = provenance(STUDY, argv)
    m = prov.machine
    md = (
        f"# Latency table accuracy (onnxruntime CPU, OneShot SE lcap 224, batch 1)\n\n{prov.where}, onnxruntime "
        f"{m.get('onnxruntime')}.\n\nEach table predicts {args.samples} random architectures that are then measured "
        "end to end (deployed form: BN merged, reshape shuffle), timed in interleaved rounds with one or more "
        f"onnxruntime sessions per network.\n\n{text}\n\nTargets: MAPE <= {TARGETS['mape']}%, >= "
        f"{TARGETS['within_10']:.0%} within ±10%, Kendall tau >= {TARGETS['kendall_tau']}, build <= "
        f"{TARGETS['build_minutes']:.0f} min. Scatter plots: `spos_deploy/lookup_tables/*.validation.png`.\n"
    )
    if kept:
        how = kept["command"] or "command not recorded"
        md += f"\nKept from the record of {kept['date']}: {', '.join(kept['precisions'])} ({how}).\n"
    result = {"benchmark": STUDY, "targets": TARGETS, "results": results} | ({"kept": kept} if kept else {})
    write_record(STUDY, STUDY, result, md, prov=prov, load=probe.record())


if __name__ == "__main__":
    run_script("latency_table_accuracy", main)
