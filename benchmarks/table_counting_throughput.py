"""How many architectures per second a FLOPs/params table checks against bounds (target: >= 1,000,000 / s).

Side by side in one run: the vectorized table check, and graph counting (build the Gluon graph, walk it)
for a few architectures, so the speed-up is a ratio measured on the same machine.

    python -m benchmarks.table_counting_throughput [--archs 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import ROOT, provenance, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime import load
from spos_deploy.tables.flops.build import count_spec_parts
from spos_deploy.tables.flops.table import FlopsTable

STUDY = "table_counting_throughput"
TARGET = 1_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--graph-archs", type=int, default=20)
    return ap.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The table check of ``--archs`` random architectures (median of ``--repeats``) and graph counting of
    ``--graph-archs`` of them, one after the other in this process."""
    table = FlopsTable.load(ROOT / "spos_deploy" / "lookup_tables" / "flops_OneShot_se_lcap_224.json")
    rng = np.random.default_rng(0)
    n, L = args.archs, table.space.num_positions
    blocks = rng.integers(0, 4, (n, L), dtype=np.int8)
    channels = rng.integers(0, 10, (n, L), dtype=np.int8)
    bounds = dict(flops_range=(190e6, 330e6), params_range=(2.8e6, 5.0e6))
    table.within(blocks[:1000], channels[:1000], **bounds)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        inside = table.within(blocks, channels, **bounds)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(args.graph_archs):
        count_spec_parts(ModelSpec(table.space, tuple(map(int, blocks[i])), tuple(map(int, channels[i]))))
    graph_rate = args.graph_archs / (time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "graph_rate": graph_rate, "inside": float(inside.mean())}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n = args.archs
    with load.probe() as probe:
        timed = measure(args)
    table_rate = n / timed["median_s"]
    graph_rate = timed["graph_rate"]
    rows = [
        ["table check (vectorized numpy)", f"{table_rate:,.0f}", f"{timed['median_s'] * 1e3:.1f} ms / {n:,}"],
        ["graph counting (build + walk)", f"{graph_rate:,.1f}", f"{args.graph_archs} architectures"],
    ]
    result = {
        "benchmark": "table_counting_throughput",
        "config": "OneShot, SE, last conv after pooling, 224",
        "archs": n,
        "repeats": args.repeats,
        "table_archs_per_s": table_rate,
        "graph_archs_per_s": graph_rate,
        "speedup": table_rate / graph_rate,
        "fraction_inside_bounds": timed["inside"],
        "target_archs_per_s": TARGET,
        "target_met": table_rate >= TARGET,
    }
    text = tabulate(rows, headers=["method", "architectures / s", "detail"], tablefmt="github", disable_numparse=True)
    print(text)
    met = "met" if result["target_met"] else "missed"
    print(f"\nspeed-up {result['speedup']:,.0f}x; target >= {TARGET:,}/s: {met.upper() if met == 'missed' else met}")
    prov = provenance(STUDY, argv)
    md = (
        f"# Table counting throughput\n\n{prov.where}, numpy {prov.machine['numpy']}\n\nChecking FLOPs and params "
        f"bounds (190-330 MFLOPs, 2.8-5.0 M params) for {n:,} random architectures, median of {args.repeats} runs."
        f"\n\n{text}\n\nSpeed-up {result['speedup']:,.0f}x. Target >= {TARGET:,}/s: **{met}**.\n"
    )
    write_record(STUDY, STUDY, result, md, prov=prov, load=probe.record())


if __name__ == "__main__":
    run_script("table_counting_throughput", main)
