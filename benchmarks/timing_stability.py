"""How steadily does this machine time batch-1 inference? Pass-to-pass drift per runtime and thread count.

A latency table can be no more right than the timing it is built and checked with. This measures that
timing alone, with no table: ``--networks`` random architectures of the space in the deployed form of each
target (``runtime:threads``), each held in three sessions or compiled models, timed in ``--passes``
interleaved, shuffled passes (the way ``spos-lut validate`` measures). Per target and round:

* drift: how far the machine's speed moved between passes (:func:`pass_drift`), the noise every network
  in a pass shares;
* residual: the per-network scatter left once each pass's drift is divided out;
* tau between halves: Kendall tau of the even passes' medians against the odd passes' medians, a ceiling
  for any table's tau on these networks (:func:`halves_tau`);
* the load record of :mod:`spos_deploy.runtime.load` (other processes' CPU time, steal, run-queue wait).

The targets are measured one after the other and the whole set ``--rounds`` times, so a change of the
machine's state shows as a change between rounds of the same target. Results:
``benchmarks/results/timing_stability/timing_stability.{md,json}`` (``--out`` another folder).

    python -m benchmarks.timing_stability [--targets onnxruntime:1 onnxruntime:2 openvino:1 openvino:2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import provenance, results_dir, write_record
from spos_deploy.cli.common import run_script
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime import load
from spos_deploy.runtime.registry import runtime_spelled
from spos_deploy.space import SPACES
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.build import (
    LatencySetup,
    export_deployed,
    interleaved_passes,
    network_shape,
    onnx_runner,
)
from spos_deploy.tables.latency.validate import drift_free, halves_tau, pass_drift

STUDY = "timing_stability"

DEFAULT_TARGETS = ("onnxruntime:1", "onnxruntime:2", "openvino:1", "openvino:2")


def _runtime(text: str) -> str | None:
    """The latency runtime a target's runtime part names (as ``spos-lut --runtime``; None: none)."""
    try:
        return runtime_spelled(text).name
    except BadInputError:
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--targets", nargs="+", default=list(DEFAULT_TARGETS), help="runtime:threads, runtime onnxruntime or openvino"
    )
    ap.add_argument("--space", choices=sorted(SPACES), default="imagenet")
    ap.add_argument("--networks", type=int, default=12, help="random architectures (default 12)")
    ap.add_argument("--passes", type=int, default=8, help="interleaved passes per measurement (default 8)")
    ap.add_argument("--repeats", type=int, default=20, help="timed inferences per network and pass")
    ap.add_argument("--rounds", type=int, default=2, help="times the whole set of targets is measured")
    ap.add_argument("--out", type=Path, default=results_dir(STUDY))
    args = ap.parse_args(argv)
    if args.networks < 2 or args.passes < 2 or args.repeats < 1 or args.rounds < 1:
        ap.error("--networks and --passes must be >= 2, --repeats and --rounds >= 1")
    for t in args.targets:
        runtime, _, threads = t.partition(":")
        if _runtime(runtime) not in ("ort-cpu", "openvino-cpu") or not threads.isdigit() or int(threads) < 1:
            ap.error(f"target {t!r}: use onnxruntime:N or openvino:N (N threads >= 1)")
    return args


def measure(
    target: str, args: argparse.Namespace, folder: Path, specs: list[ModelSpec], exported: dict[str, list[Path]]
) -> dict[str, Any]:
    """One target: every network exported once per runtime (kept in ``exported``), three runners each,
    interleaved passes."""
    spelled, _, threads = target.partition(":")
    runtime = _runtime(spelled)
    setup = LatencySetup(runtime=runtime, threads=int(threads))
    shape = network_shape(specs[0].space, setup)
    if runtime not in exported:
        (folder / runtime).mkdir()
        exported[runtime] = [export_deployed(s, folder / runtime, "fp32", 0, runtime) for s in specs]
    paths = exported[runtime]
    runs = [[onnx_runner(p, shape, setup) for _ in range(3)] for p in paths]
    with load.probe() as lp:
        per_pass = interleaved_passes(runs, args.passes, repeats=args.repeats)
    steady = drift_free(per_pass)
    residual = steady / np.median(steady, axis=0)
    return {
        "target": target,
        "p50_ms": float(np.median(per_pass)),
        "range_ms": [float(np.median(per_pass, axis=0).min()), float(np.median(per_pass, axis=0).max())],
        "drift_pct": 100 * pass_drift(per_pass),
        "residual_pct": float(100 * np.std(residual)),
        "tau_halves": halves_tau(per_pass),
        "load": lp.record().as_dict(),
        "per_pass_ms": per_pass.tolist(),
    }


def write_results(args: argparse.Namespace, argv: list[str] | None, rows: list[dict[str, Any]], load_rec: Any) -> Path:
    prov = provenance(STUDY, argv)
    doc = {"benchmark": "timing_stability", "settings": vars(args) | {"out": None}, "results": rows}
    table = [
        [
            r["round"],
            r["target"],
            f"{r['p50_ms']:.2f}",
            f"{r['range_ms'][0]:.2f}-{r['range_ms'][1]:.2f}",
            f"{r['drift_pct']:.1f}",
            f"{r['residual_pct']:.1f}",
            "n/a" if r["tau_halves"] is None else f"{r['tau_halves']:.3f}",
            load.summary_line(r["load"]),
        ]
        for r in rows
    ]
    headers = ["round", "runtime:threads", "p50 ms", "networks' range ms", "drift %", "residual %", "tau halves"]
    text = tabulate(table, headers=[*headers, "load"], tablefmt="github", disable_numparse=True)
    md = (
        f"# Timing stability: batch-1 inference, interleaved passes\n\n{prov.where}; space {args.space}; "
        f"{args.networks} random architectures, fp32 deployed "
        f"form, 3 sessions each, {args.passes} passes x {args.repeats} inferences.\n\n{text}\n\n"
        "drift: spread of the passes' typical speed (max - min); residual: per-network scatter once each pass's "
        "drift is divided out; tau halves: even passes' medians against the odd ones' (a ceiling for a table's "
        "tau on these networks).\n"
    )
    print(text)
    return write_record(STUDY, "timing_stability", doc, md, folder=args.out, prov=prov, load=load_rec)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    space = SPACES[args.space]
    blocks, channels = random_architectures(space, args.networks, 4242)
    specs = [
        ModelSpec(space, tuple(map(int, b)), tuple(map(int, c)), f"net{i}", shuffle="reshape")
        for i, (b, c) in enumerate(zip(blocks, channels))
    ]
    rows, exported = [], {}
    with tempfile.TemporaryDirectory(prefix="timing_stability_") as tmp, load.probe() as probe:
        for k in range(1, args.rounds + 1):
            for target in args.targets:
                row = measure(target, args, Path(tmp), specs, exported) | {"round": k}
                print(f"round {k} {target}: drift {row['drift_pct']:.1f} %", flush=True)
                rows.append(row)
    print(f"results: {write_results(args, argv, rows, probe.record())}")


if __name__ == "__main__":
    run_script("timing_stability", main)
