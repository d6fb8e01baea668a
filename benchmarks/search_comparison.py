"""Evolutionary vs random search on the Fashion-MNIST supernet, at the same number of evaluated candidates.

For each seed, both methods search under the same latency budget (an int8 onnxruntime table of this CPU) with
the same evaluation budget; the best supernet accuracy of each run is recorded and averaged over the seeds.
Then every returned architecture is exported in its deployed form and measured end to end (interleaved
rounds, like ``spos-lut validate``) to check that it meets the latency budget within the table's validated
error.

    python -m benchmarks.search_comparison --supernet runs/e2e/supernet [--evaluations 48] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import ROOT, provenance, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.runtime import load
from spos_deploy.space import space_for_layout
from spos_deploy.tables.latency.table import LatencyTable, latency_quantile
from spos_deploy.tables.latency.validate import measure_architectures

STUDY = "search_comparison"
TABLE = (
    ROOT
    / "spos_deploy"
    / "lookup_tables"
    / "latency_OneShot_se_lcap_32_c10_ort-cpu_int8_b1_t2_intel-xeon-processor.json"
)
HEADERS = ["seed", "method", "evaluated", "best acc", "predicted ms", "measured ms", "vs budget", "meets budget"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", default=str(ROOT / "runs" / "e2e" / "supernet"))
    ap.add_argument("--lut", default=str(TABLE))
    ap.add_argument("--latency-max-ms", type=float, help="default: the 30%% quantile of random architectures")
    ap.add_argument("--evaluations", type=int, default=48)
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--parents", type=int, default=4)
    ap.add_argument("--val-limit", type=int, default=2000)
    ap.add_argument("--bn-images", type=int, default=1024)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved end-to-end latency rounds")
    ap.add_argument("--out", default=str(ROOT / "runs" / "search-comparison"))
    return ap.parse_args(argv)


def search(args: argparse.Namespace, method: str, seed: int, budget_ms: float) -> dict:
    out = Path(args.out) / f"{method}-seed{seed}"
    if not (out / "results.json").exists():
        cmd = [str(Path(sys.executable).parent / "spos-search"), "--supernet", args.supernet, "--lut", args.lut]
        cmd += ["--latency-max-ms", str(budget_ms), "--method", method, "--budget", str(args.evaluations)]
        cmd += ["--population", str(args.population), "--parents", str(args.parents)]
        cmd += ["--generations", str(args.evaluations // args.population + 2)]
        cmd += ["--val-limit", str(args.val_limit), "--bn-images", str(args.bn_images), "--seed", str(seed)]
        cmd += ["--data-limit", "5000", "--no-progress"]
        cmd += ["--no-plot", "-o", str(out)] + (["--resume"] if out.exists() else [])
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads((out / "results.json").read_text())


def search_runs(args: argparse.Namespace, budget: float) -> list[dict[str, Any]]:
    """Both methods for every seed: the best architecture each returned."""
    runs = []
    for seed in args.seeds:
        for method in ("evolution", "random"):
            res = search(args, method, seed, budget)
            best = res["best"]
            runs.append(
                {
                    "seed": seed,
                    "method": method,
                    "evaluated": res["evaluated"],
                    "best_accuracy": best["accuracy"],
                    "predicted_ms": best.get("latency_ms"),
                    "blocks": best["block_choices"],
                    "channels": best["channel_choices"],
                }
            )
    return runs


def measure(table: Any, runs: list[dict[str, Any]], budget: float, max_err: float | None, rounds: int) -> Any:
    """Every returned architecture measured end to end (interleaved); returns the load record meanwhile."""
    blocks = np.array([r["blocks"] for r in runs])
    channels = np.array([r["channels"] for r in runs])
    with load.probe() as probe:
        measured = measure_architectures(table, blocks, channels, rounds=rounds)
    for r, m in zip(runs, measured):
        r["measured_ms"] = m
        r["measured_over_budget_pct"] = 100 * (m - budget) / budget
        r["meets_budget_within_validated_error"] = bool(max_err is None or m <= budget * (1 + max_err / 100))
    return probe.record()


def runs_table(runs: list[dict[str, Any]], mean: dict[str, float]) -> str:
    rows = [
        [
            r["seed"],
            r["method"],
            r["evaluated"],
            f"{r['best_accuracy']:.4f}",
            f"{r['predicted_ms']:.3f}",
            f"{r['measured_ms']:.3f}",
            f"{r['measured_over_budget_pct']:+.1f}%",
            "yes" if r["meets_budget_within_validated_error"] else "NO",
        ]
        for r in runs
    ]
    rows += [["mean", k, "", f"{v:.4f}", "", "", "", ""] for k, v in mean.items()]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    table = LatencyTable.load(args.lut, expect_space=space)
    budget = args.latency_max_ms
    if budget is None:
        budget = round(latency_quantile(table, 0.3), 3)
    validation = Path(args.lut).with_suffix(".validation.json")
    val = json.loads(validation.read_text()) if validation.exists() else {}
    max_err = val.get("max_error")
    runs = search_runs(args, budget)
    load_rec = measure(table, runs, budget, max_err, args.rounds)
    mean = {k: float(np.mean([r["best_accuracy"] for r in runs if r["method"] == k])) for k in ("evolution", "random")}
    text = runs_table(runs, mean)
    print(text)
    verdict = "beats" if mean["evolution"] > mean["random"] else "does NOT beat"
    prov = provenance(STUDY, argv)
    record = {
        "latency_budget_ms": budget,
        "table": str(Path(args.lut).name),
        "table_validated_max_error_pct": max_err,
        "table_validated_mape_pct": val.get("mape"),
        "args": vars(args),
        "runs": runs,
        "mean_best_accuracy": mean,
        "evolution_beats_random": mean["evolution"] > mean["random"],
    }
    md = (
        f"# Evolutionary vs random search (Fashion-MNIST supernet, int8 latency budget {budget:.3f} ms)\n\n"
        f"{prov.where}. {args.evaluations} evaluated candidates per run, "
        f"seeds {args.seeds}; accuracy = top-1 of the supernet path on {args.val_limit} test images after BN "
        f"recalibration on {args.bn_images} training images. Measured = deployed int8 ONNX, median of "
        f"{args.rounds} interleaved rounds; the table's validated max error is {max_err:.1f}% "
        f"(MAPE {val.get('mape', float('nan')):.1f}%).\n\n{text}\n\n"
        f"Evolution {verdict} random search on mean best accuracy "
        f"({mean['evolution']:.4f} vs {mean['random']:.4f}).\n"
    )
    write_record(STUDY, STUDY, record, md, prov=prov, load=load_rec)


if __name__ == "__main__":
    run_script("search_comparison", main)
