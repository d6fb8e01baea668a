"""How many architectures per second a FLOPs/params table checks against bounds (target: >= 1,000,000 / s).

Side by side in one run: the vectorized table check, and graph counting (build the Gluon graph, walk it)
for a few architectures, so the speed-up is a ratio measured on the same machine.

    python benchmarks/table_counting_throughput.py [--archs 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos_deploy.atomic import write_json, write_text  # noqa: E402
from spos_deploy.machine import machine_record  # noqa: E402
from spos_deploy.model_spec import ModelSpec  # noqa: E402
from spos_deploy.tables.flops.build import count_spec_parts  # noqa: E402
from spos_deploy.tables.flops.table import FlopsTable  # noqa: E402

TARGET = 1_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--graph-archs", type=int, default=20)
    args = ap.parse_args()

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
    table_rate = n / statistics.median(times)

    t0 = time.perf_counter()
    for i in range(args.graph_archs):
        count_spec_parts(ModelSpec(table.space, tuple(map(int, blocks[i])), tuple(map(int, channels[i]))))
    graph_rate = args.graph_archs / (time.perf_counter() - t0)

    rows = [
        ["table check (vectorized numpy)", f"{table_rate:,.0f}", f"{statistics.median(times) * 1e3:.1f} ms / {n:,}"],
        ["graph counting (build + walk)", f"{graph_rate:,.1f}", f"{args.graph_archs} architectures"],
    ]
    result = {
        "benchmark": "table_counting_throughput",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_record(),
        "config": "OneShot, SE, last conv after pooling, 224",
        "archs": n,
        "repeats": args.repeats,
        "table_archs_per_s": table_rate,
        "graph_archs_per_s": graph_rate,
        "speedup": table_rate / graph_rate,
        "fraction_inside_bounds": float(inside.mean()),
        "target_archs_per_s": TARGET,
        "target_met": table_rate >= TARGET,
    }
    text = tabulate(rows, headers=["method", "architectures / s", "detail"], tablefmt="github", disable_numparse=True)
    print(text)
    print(
        f"\nspeed-up {result['speedup']:,.0f}x; target >= {TARGET:,}/s: {'met' if result['target_met'] else 'MISSED'}"
    )
    out = ROOT / "benchmarks" / "results"
    write_json(out / "table_counting_throughput.json", result)
    m = result["machine"]
    write_text(
        out / "table_counting_throughput.md",
        f"# Table counting throughput\n\n{result['date']} on {m['cpu']} ({m['usable_cores']} cores), "
        f"numpy {m['numpy']}\n\nChecking FLOPs and params bounds (190-330 MFLOPs, 2.8-5.0 M params) for "
        f"{n:,} random architectures, median of {args.repeats} runs.\n\n{text}\n\nSpeed-up "
        f"{result['speedup']:,.0f}x. Target >= {TARGET:,}/s: **{'met' if result['target_met'] else 'missed'}**.\n",
    )


if __name__ == "__main__":
    main()
