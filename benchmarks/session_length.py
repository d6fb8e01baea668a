"""How many fresh sessions, timed how long, do two measurements of the same networks need to agree?

The deployed latency (:mod:`spos_deploy.runtime.deployed`) is the median over fresh sessions of each session's
median call. At 224 px and batch 8 two such measurements of the same 50 networks, minutes apart, disagreed by
15-28 % MAPE (``latency_prediction_imagenet_b8``), network by network and not as a common drift. This measures
that repeat agreement alone, with no table: ``--networks`` random architectures in one deployed form, measured
twice with each setting (every ``--sessions`` count with every ``--calls`` session length), all first
measurements before the second ones, so that the machine's state moves every setting alike. Per setting: MAPE,
share within 10 % and Kendall tau of the second measurement against the first, the spread of fresh sessions
within one measurement, and the time it took. The largest session count is also judged on its first ``k``
sessions alone (``fewer``): one run gives the whole curve of repeat agreement against sessions per network.

    python -m benchmarks.session_length --space imagenet --form onnxruntime:fp32 --batch 8 --calls 20 100
    python -m benchmarks.session_length --sessions 5 15 --calls 20      # more sessions instead of longer ones
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks._subnets import fail
from benchmarks.record import load_dict, rescoring, results_dir, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.cli.options import add_threads
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.deployed import SESSIONS, WARMUP, DeployedLatency, session_matrix
from spos_deploy.runtime.load import probe
from spos_deploy.runtime.registry import runtime_spelled
from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures, validation_stats
from spos_deploy.tables.latency.build import LatencySetup, export_deployed, network_shape

STUDY = "session_length"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Each setting (sessions, calls) measured twice on the same exported networks: every session median kept."""
    space = SPACES[args.space]
    spelled, precision = args.form.split(":")
    setup = LatencySetup(
        runtime=runtime_spelled(spelled).name, precision=precision, batch=args.batch, threads=args.threads
    )
    blocks, channels = random_architectures(space, args.networks, seed=4242)  # latency_prediction's held-out set
    shape = network_shape(space, setup)
    settings = [(n, c) for n in args.sessions for c in args.calls]
    raw: dict[tuple[int, int], list[np.ndarray]] = {k: [] for k in settings}
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
                raw[n, c].append(session_matrix(makers, n, WARMUP, c, seed=1000 * repeat + 10 * n + c, progress=True))
                seconds[n, c] += time.perf_counter() - t0
    rows = [
        {"sessions": n, "calls": c, "seconds": seconds[n, c], "session_ms": [m.tolist() for m in raw[n, c]]}
        for n, c in settings
    ]
    result = {"space": args.space, "runtime": setup.runtime, "precision": precision, "batch": args.batch}
    result["threads"] = setup.resolved_threads()
    return derive(result | {"warmup": WARMUP, "networks": args.networks, "lengths": rows})


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Every statistic of a result, from what was measured (pure: measuring and ``--rescore`` share it).

    Per setting: the two measurements' deployed latencies (``first_ms``, ``second_ms``) and their agreement
    (:func:`agreement`), the median spread of one network's fresh sessions; ``fewer``: the largest session
    count judged on its first ``k`` sessions, per session length. A record from before session medians were
    kept has only its latencies: those are used as they are, and it has no ``fewer``.
    """
    rows = []
    for r in result["lengths"]:
        if "session_ms" in r:
            ms = [DeployedLatency.from_passes(np.asarray(m)) for m in r["session_ms"]]
            first, second = ([m.ms for m in run] for run in ms)
            r = r | {"first_ms": first, "second_ms": second}
            r["session_spread_median"] = float(np.median([m.spread for run in ms for m in run]))
        rows.append(r | agreement(r["first_ms"], r["second_ms"]))
    out = result | {"lengths": rows, "fewer": []}
    kept = [r for r in rows if "session_ms" in r]
    if kept:
        most = max(r["sessions"] for r in kept)
        for r in (r for r in kept if r["sessions"] == most):
            runs = [np.asarray(m) for m in r["session_ms"]]
            for k in session_counts(most):
                first, second = ([m.ms for m in DeployedLatency.from_passes(run[:k])] for run in runs)
                out["fewer"].append({"sessions": k, "calls": r["calls"]} | agreement(first, second))
    return out


def agreement(first: Any, second: Any) -> dict[str, Any]:
    """How two measurements of the same networks agree (pure): ``repeat``, the second against the first as
    measured; ``speed_ratio``, the median of second / first (the machine's speed moving between them, shared
    by every network); ``repeat_same_speed``, the second divided by that ratio against the first: what is
    left once the shared speed is taken out, as latency tables' re-anchoring takes it out (docs/latency.md)."""
    f, s = np.asarray(first, float), np.asarray(second, float)
    ratio = float(np.median(s / f))
    return {
        "repeat": validation_stats(s, f),
        "speed_ratio": ratio,
        "repeat_same_speed": validation_stats(s / ratio, f),
    }


def session_counts(most: int) -> list[int]:
    """The session counts a run of ``most`` sessions is judged on: 1, 2, 3, 5, 7, 10, 15, ... up to ``most``."""
    steps = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50]
    return sorted({k for k in steps if k < most} | {most})


def _agreement_cells(r: dict[str, Any]) -> list[Any]:
    rep, same = r["repeat"], r["repeat_same_speed"]
    tau = rep["kendall_tau"]
    return [
        r["sessions"],
        r["calls"],
        f"{rep['mape']:.1f} %",
        f"{100 * rep['within_10']:.0f} %",
        "n/a" if tau is None else f"{tau:.2f}",
        f"{rep['max_error']:.0f} %",
        f"{r['speed_ratio']:.2f}",
        f"{same['mape']:.1f} %",
        f"{100 * same['within_10']:.0f} %",
    ]


AGREEMENT_HEAD = [
    "sessions", "calls per session", "repeat MAPE", "within 10 %", "tau", "worst", "second / first",
    "same speed: MAPE", "same speed: within 10 %",
]  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    head = [*AGREEMENT_HEAD, "session spread", "time"]
    body = [
        [*_agreement_cells(r), f"{100 * r['session_spread_median']:.0f} %", f"{r['seconds'] / 60:.1f} min"]
        for r in result["lengths"]
    ]
    fewer = [_agreement_cells(r) for r in result.get("fewer", [])]
    fewer_text = (
        "\nThe same run judged on the first k sessions of its largest session count (what k sessions per "
        "network would have given):\n\n" + tabulate(fewer, AGREEMENT_HEAD, tablefmt="github") + "\n"
        if fewer
        else ""
    )
    rescored = result.get("rescored")
    return (
        f"# Session length and repeat agreement: {result['space']}, {result['runtime']} {result['precision']}, "
        f"batch {result['batch']}" + (f", {result['threads']} thread(s)" if "threads" in result else "") + "\n\n"
        f"{result['networks']} random architectures, each measured twice per setting (fresh sessions per network "
        f"in interleaved passes, {result['warmup']} warm-up calls, the median call of each session, the median "
        "over sessions); the second measurement against the first. Second / first: the median ratio, the "
        "machine's speed moving between the two measurements; same speed: the second divided by it, what is "
        "left once that shared speed is taken out (as tables' re-anchoring does). Session spread: "
        "(max - min) / median of one network's session medians within one measurement.\n\n"
        + tabulate(body, head, tablefmt="github")
        + "\n"
        + fewer_text
        + (f"\nStatistics recomputed {rescored['date']}: `{rescored['command']}`.\n" if rescored else "")
    )


def rescore(path: Path, argv: list[str] | None) -> None:
    """A recorded result's statistics and report recomputed from what it recorded (nothing measured); its
    command, date, machine and load are kept, the rescoring's own go under ``rescored``."""
    try:
        record = json.loads(path.read_text())
        # the first records compared session lengths only, with one session count for all
        record["lengths"] = [{"sessions": record.get("sessions")} | r for r in record["lengths"]]
        for r in record["lengths"]:
            int(r["sessions"]), int(r["calls"]), float(r["seconds"])
            if "session_ms" not in r:
                [float(v) for v in r["first_ms"] + r["second_ms"]]
        result = derive(record)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        fail(f"--rescore {path}: not a session_length result ({type(e).__name__}: {e})")
    original = rescoring(STUDY, result, argv)
    write_record(STUDY, path.stem, result, markdown(result), folder=path.parent, prov=original, load=record.get("load"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", choices=sorted(SPACES), default="imagenet")
    ap.add_argument("--form", default="onnxruntime:fp32", help="RUNTIME:PRECISION")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--networks", type=int, default=16)
    add_threads(ap, help="threads of every session (default: every core)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[SESSIONS], help="fresh sessions per network to compare")
    ap.add_argument("--calls", type=int, nargs="+", default=[20, 100], help="timed calls per session to compare")
    ap.add_argument("--tag", default="", help="suffix of the record's name")
    ap.add_argument("--out", type=Path, default=results_dir(STUDY), help="folder of the record")
    ap.add_argument(
        "--rescore",
        type=Path,
        metavar="RESULT",
        help="recompute the statistics and report of a recorded result (session_length*.json) from what it "
        "recorded, nothing measured: for results recorded before a statistic was added; written in place",
    )
    args = ap.parse_args(argv)
    if args.rescore:
        rescore(args.rescore, argv)
        return
    if args.networks < 3 or min(args.sessions) < 1 or args.batch < 1 or min(args.calls) < 1:
        ap.error("--networks >= 3, --sessions, --batch and --calls >= 1")
    with probe() as p:
        result = measure(args)
    load = load_dict(p.record())
    name = STUDY + (f"_{args.tag}" if args.tag else "")
    write_record(STUDY, name, result, markdown(result), argv, folder=args.out, load=load)


if __name__ == "__main__":
    run_script(STUDY, main)
