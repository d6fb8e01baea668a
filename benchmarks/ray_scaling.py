"""Search evaluation on Ray: candidates per second with 1 and 2 actors, and Ray's overhead per candidate.

The same candidates (random architectures of the small space), supernet and evaluation data (BN recalibration
and validation, the sizes of the end-to-end benchmark's search) are evaluated by

* the single-process loop with 1 MXNet thread (the baseline of Ray's overhead) and with every core (what
  ``spos-search`` without ``--ray`` does),
* ``--ray`` with 1 actor and with 2 actors (1 thread each),
* two plain worker processes without Ray (``spos-search --workers 2``): what two workers reach on this
  machine at all, the ceiling of the 2-actor figure.

Each configuration runs in a fresh process (MXNet reads its thread count when it loads), in interleaved
rounds (a shuffled order each round), timed after its evaluator is up (Ray's start and the actors' supernet
loading are reported apart). Targets: 2 actors >= 1.6x the candidates/s of 1 actor; 1 actor within 10 % of
the single-process loop with the same thread. The load record counts the configurations' own processes as
the benchmark's (the Ray processes a finished configuration leaves unreaped are the exception).

    python -m benchmarks.ray_scaling [--candidates 24] [--rounds 3] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import write_record
from spos_deploy.cli.common import run_script

STUDY = "ray_scaling"
MODES = {
    "local-1": (None, 1),
    "local-all": (None, None),
    "pool-2": (None, 2),
    "ray-1": ("local", 1),
    "ray-2": ("local", 2),
}
NAMES = {
    "local-1": "single process, 1 thread",
    "local-all": "single process, every core",
    "pool-2": "2 worker processes, no Ray (--workers 2)",
    "ray-1": "--ray, 1 actor",
    "ray-2": "--ray, 2 actors",
}


def worker(mode: str, folder: Path, candidates: int, bn_images: int, val_limit: int) -> dict[str, Any]:
    """One configuration in this (fresh) process: seconds to start, seconds per candidate."""
    from spos_deploy.search.evaluator import make_evaluator, prepare_data, resolve_supernet

    from spos_deploy.tables.core import random_architectures

    ray, workers = MODES[mode]
    run = resolve_supernet(str(folder), None)
    data = prepare_data(run.space, "fashion-mnist:train", "fashion-mnist:test", bn_images, 128, val_limit, 8192)
    blocks, channels = random_architectures(run.space, candidates, 11)
    t0 = time.perf_counter()
    evaluator = make_evaluator(run, data, 128, workers or 1, [], ray=ray)
    try:
        start = time.perf_counter() - t0
        list(evaluator.evaluate(blocks[:2], channels[:2]))  # warm: first calls allocate
        t1 = time.perf_counter()
        acc = list(evaluator.evaluate(blocks, channels))
        seconds = time.perf_counter() - t1
    finally:
        evaluator.close()
    return {"mode": mode, "start_s": start, "seconds": seconds, "per_candidate_s": seconds / candidates, "acc": acc}


def run_mode(mode: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    if MODES[mode][1] == 1 and MODES[mode][0] is None:
        env["OMP_NUM_THREADS"] = env["MXNET_OMP_MAX_THREADS"] = "1"
    cmd = [sys.executable, "-m", "benchmarks.ray_scaling", "--worker", mode, "--supernet", str(folder)]
    cmd += ["--candidates", str(args.candidates), "--bn-images", str(args.bn_images)]
    cmd += ["--val-limit", str(args.val_limit)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bn-images", type=int, default=1024)
    ap.add_argument("--val-limit", type=int, default=2000)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    ap.add_argument("--supernet", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    rate = {m: float(np.median([1 / r["per_candidate_s"] for r in rs])) for m, rs in by.items()}
    same = all(r["acc"] == runs[0]["acc"] for r in runs)
    return {
        "candidates_per_s": rate,
        "start_s": {m: float(np.median([r["start_s"] for r in rs])) for m, rs in by.items()},
        "speedup_2_vs_1_actor": rate["ray-2"] / rate["ray-1"],
        "speedup_2_processes_vs_1": rate["pool-2"] / rate["local-1"],
        "ray_overhead_pct": 100 * (rate["local-1"] / rate["ray-1"] - 1),
        "same_accuracies": same,
        "runs": [{k: v for k, v in r.items() if k != "acc"} for r in runs],
    }


def markdown(s: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [[NAMES[m], f"{r:.2f}", f"{s['start_s'][m]:.1f}"] for m, r in s["candidates_per_s"].items()]
    table = tabulate(rows, headers=["evaluator", "candidates/s", "start (s)"], tablefmt="github")
    return (
        "# Search evaluation on Ray\n\n"
        f"{args.candidates} random architectures of the small space, {args.bn_images} BN images, {args.val_limit} "
        f"validation images each; median of {args.rounds} interleaved rounds, each configuration in a fresh "
        "process.\n\n"
        f"{table}\n\n"
        f"- 2 actors against 1: **{s['speedup_2_vs_1_actor']:.2f}x** (target >= 1.6x); two plain processes "
        f"against one, the same candidates without Ray: {s['speedup_2_processes_vs_1']:.2f}x\n"
        f"- Ray's overhead per candidate (1 actor against the single process with 1 thread): "
        f"**{s['ray_overhead_pct']:+.1f} %** (target <= 10 %)\n"
        f"- same accuracies in every configuration: {'yes' if s['same_accuracies'] else 'NO'}\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.supernet), args.candidates, args.bn_images, args.val_limit)))
        return
    from spos_deploy.nets.supernet import build_supernet
    from spos_deploy.runtime import load
    from spos_deploy.space import SPACES

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_supernet(SPACES["small"], seed=0).save_parameters(str(folder / "supernet.params"))
        config = {"mode": "supernet", "space": SPACES["small"].to_config()}
        (folder / "config.json").write_text(json.dumps(config))
        runs, rng = [], random.Random(0)
        with load.probe(children=True) as probe:
            for _ in range(args.rounds):
                for mode in rng.sample(list(MODES), len(MODES)):
                    runs.append(run_mode(mode, folder, args))
                    print(f"{mode}: {1 / runs[-1]['per_candidate_s']:.2f} candidates/s", flush=True)
    s = summarize(runs)
    text = markdown(s, args)
    print(text)
    if args.record:
        write_record(STUDY, STUDY, {"args": vars(args), **s}, text, argv, load=probe.record())


if __name__ == "__main__":
    run_script("ray_scaling", main)
