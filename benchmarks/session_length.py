"""How many fresh sessions, timed how long, do two measurements of the same networks need to agree?

The deployed latency (:mod:`spos_deploy.runtime.deployed`) is the median over fresh sessions of each session's
median call. At 224 px and batch 8 two such measurements of the same 50 networks, minutes apart, disagreed by
15-28 % MAPE (``latency_prediction_imagenet_b8``), network by network and not as a common drift. This measures
that repeat agreement alone, with no table: ``--networks`` random architectures in one deployed form, measured
twice with each setting (every ``--sessions`` count with every ``--calls`` session length), all first
measurements before the second ones, so that the machine's state moves every setting alike. Per setting: MAPE,
share within 10 % and Kendall tau of the second measurement against the first, the spread of fresh sessions
within one measurement, and the time it took.

    python -m benchmarks.session_length --space imagenet --form onnxruntime:fp32 --batch 8 --calls 20 100
    python -m benchmarks.session_length --sessions 5 15 --calls 20      # more sessions instead of longer ones
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import load_dict, results_dir, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.deployed import SESSIONS, WARMUP, DeployedLatency, session_matrix
from spos_deploy.runtime.load import probe
from spos_deploy.runtime.registry import runtime_spelled
from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures, validation_stats
from spos_deploy.tables.latency.build import LatencySetup, export_deployed, network_shape

STUDY = "session_length"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Each setting (sessions, calls) measured twice on the same exported networks."""
    space = SPACES[args.space]
    spelled, precision = args.form.split(":")
    setup = LatencySetup(runtime=runtime_spelled(spelled).name, precision=precision, batch=args.batch)
    blocks, channels = random_architectures(space, args.networks, seed=4242)  # latency_prediction's held-out set
    shape = network_shape(space, setup)
    settings = [(n, c) for n in args.sessions for c in args.calls]
    ms: dict[tuple[int, int], list[list[DeployedLatency]]] = {k: [] for k in settings}
    seconds = dict.fromkeys(settings, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        specs = [
            ModelSpec(space, tuple(map(int, b)), tuple(map(int, c)), f"n{k}", shuffle=setup.shuffle)
            for k, (b, c) in enumerate(zip(blocks, channels))
        ]
        paths = [export_deployed(s, Path(tmp), setup.precision, setup.seed, setup.runtime) for s in specs]
        makers = [lambda p=p: setup.runner(p, shape) for p in paths]
        for repeat in range(2):
            for n, c in settings:
                t0 = time.perf_counter()
                passes = session_matrix(makers, n, WARMUP, c, seed=1000 * repeat + 10 * n + c, progress=True)
                ms[n, c].append(DeployedLatency.from_passes(passes))
                seconds[n, c] += time.perf_counter() - t0
    rows = []
    for n, c in settings:
        first, second = ([m.ms for m in run] for run in ms[n, c])
        spread = [m.spread for run in ms[n, c] for m in run]
        rows.append(
            {
                "sessions": n,
                "calls": c,
                "repeat": validation_stats(second, first),
                "session_spread_median": float(np.median(spread)),
                "seconds": seconds[n, c],
                "first_ms": first,
                "second_ms": second,
            }
        )
    return {
        "space": args.space,
        "runtime": setup.runtime,
        "precision": precision,
        "batch": args.batch,
        "warmup": WARMUP,
        "networks": args.networks,
        "lengths": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    head = ["sessions", "calls per session", "repeat MAPE", "within 10 %", "tau", "worst", "session spread", "time"]
    body = [
        [
            r["sessions"],
            r["calls"],
            f"{r['repeat']['mape']:.1f} %",
            f"{100 * r['repeat']['within_10']:.0f} %",
            f"{r['repeat']['kendall_tau']:.2f}" if r["repeat"]["kendall_tau"] is not None else "n/a",
            f"{r['repeat']['max_error']:.0f} %",
            f"{100 * r['session_spread_median']:.0f} %",
            f"{r['seconds'] / 60:.1f} min",
        ]
        for r in result["lengths"]
    ]
    return (
        f"# Session length and repeat agreement: {result['space']}, {result['runtime']} {result['precision']}, "
        f"batch {result['batch']}\n\n"
        f"{result['networks']} random architectures, each measured twice per setting (fresh sessions per network "
        f"in interleaved passes, {result['warmup']} warm-up calls, the median call of each session, the median "
        "over sessions); the second measurement against the first. Session spread: "
        "(max - min) / median of one network's session medians within one measurement.\n\n"
        + tabulate(body, head, tablefmt="github")
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", choices=sorted(SPACES), default="imagenet")
    ap.add_argument("--form", default="onnxruntime:fp32", help="RUNTIME:PRECISION")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--networks", type=int, default=16)
    ap.add_argument("--sessions", type=int, nargs="+", default=[SESSIONS], help="fresh sessions per network to compare")
    ap.add_argument("--calls", type=int, nargs="+", default=[20, 100], help="timed calls per session to compare")
    ap.add_argument("--tag", default="", help="suffix of the record's name")
    ap.add_argument("--out", type=Path, default=results_dir(STUDY), help="folder of the record")
    args = ap.parse_args(argv)
    if args.networks < 3 or min(args.sessions) < 1 or args.batch < 1 or min(args.calls) < 1:
        ap.error("--networks >= 3, --sessions, --batch and --calls >= 1")
    with probe() as p:
        result = measure(args)
    load = load_dict(p.record())
    name = STUDY + (f"_{args.tag}" if args.tag else "")
    write_record(STUDY, name, result, markdown(result), argv, folder=args.out, load=load)


if __name__ == "__main__":
    run_script(STUDY, main)
