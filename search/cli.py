"""``spos-search``: constrained evolutionary or random search on a trained supernet.

Writes ``DIR/results.json`` (best, Pareto front, evaluated count, constraints, history, timing),
``DIR/best.json`` and ``DIR/pareto_K.json`` model files and ``DIR/candidates.png``; prints the front as a
table (or ``results.json`` with ``--json``). See docs/search.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import SPACE_KEYS, add_space_options, space_from_args
from spos_deploy.errors import BadInputError


def _gpu_list(values: list[str] | None) -> list[int]:
    out: list[int] = []
    for v in values or []:
        for part in v.split(","):
            if part.strip():
                try:
                    out.append(int(part))
                except ValueError:
                    raise BadInputError(f"--gpus {' '.join(values)}: expected GPU ids like 0,1") from None
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-search",
        description="Search block and channel choices of a trained SPOS supernet under FLOPs, params, "
        "MicroNet-score and latency constraints (checked on lookup tables before any evaluation).",
    )
    p.add_argument("--supernet", required=True, help="spos-train supernet run folder, or a supernet .params file")
    p.add_argument("-o", "--out", required=True, help="output folder (must be new or empty, unless --resume)")
    d = p.add_argument_group("evaluation")
    d.add_argument("--data", default="fashion-mnist:train", help="training images for BN recalibration")
    d.add_argument("--data-limit", type=int, help="load only the first N training images")
    d.add_argument("--val-data", default="fashion-mnist:test", help="validation images for top-1")
    d.add_argument("--val-limit", type=int, help="use only the first N validation images")
    d.add_argument("--bn-images", type=int, default=2000, help="BN recalibration images (whole batches, fixed)")
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--workers", type=int, default=1, help="evaluation processes (spawned; one context each)")
    d.add_argument("--gpus", nargs="+", metavar="IDS", help="GPU ids, e.g. 0,1: one per worker (default: CPU)")
    d.add_argument("--shard", metavar="K/N", help="this machine evaluates shard K of N (see --shared-dir)")
    d.add_argument("--shared-dir", help="folder all shards see: results are exchanged there every generation")
    d.add_argument("--shard-timeout", type=float, default=24 * 3600, help="seconds to wait for other shards")
    s = p.add_argument_group("search")
    s.add_argument("--method", choices=["evolution", "random"], default="evolution")
    s.add_argument("--mode", choices=["joint", "blocks-first"], default="joint")
    s.add_argument("--population", type=int, default=50)
    s.add_argument("--parents", type=int, help="top-k parents of each generation (default: population / 5)")
    s.add_argument("--mutation", type=float, default=0.1, help="per-gene mutation probability (block genes)")
    s.add_argument(
        "--channel-mutation", type=float, help="per-gene probability for channel genes (default: --mutation)"
    )
    s.add_argument("--crossover", type=int, help="crossover children per generation (default: population / 2)")
    s.add_argument("--generations", type=int, default=20)
    s.add_argument("--budget", type=int, help="at most this many evaluated candidates (cache hits are free)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true", help="continue the search saved in --out")
    c = p.add_argument_group("constraints (checked on lookup tables before evaluation)")
    c.add_argument("--flops-range", type=float, nargs=2, metavar=("LO", "HI"), help="FLOPs, e.g. 8e6 14e6")
    c.add_argument("--params-range", type=float, nargs=2, metavar=("LO", "HI"), help="parameters, e.g. 1e6 3e6")
    c.add_argument("--score-max", type=float, help="MicroNet score at --score-bits")
    c.add_argument("--score-bits", type=int, default=32, choices=[32, 16, 8])
    c.add_argument("--lut", metavar="TABLE", help="latency table (spos-lut build --kind latency)")
    c.add_argument("--latency-max-ms", type=float, help="predicted latency budget (needs --lut)")
    c.add_argument("--allow-table-mismatch", action="store_true", help="use a latency table from other hardware")
    c.add_argument("--flops-table", help="FLOPs/params table (default: built from graphs on the fly)")
    c.add_argument("--micronet-table", help="MicroNet table (default: built from graphs on the fly)")
    p.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True, help="write candidates.png")
    p.add_argument("--no-progress", action="store_true")
    add_space_options(p)
    add_common(p)
    return p


def job_from_args(args: argparse.Namespace):
    from .driver import SearchConfig
    from .runner import SearchJob
    from .shards import parse_shard

    given = args.from_model or any(getattr(args, k, None) is not None for k in SPACE_KEYS)
    cfg = SearchConfig(
        method=args.method,
        mode=args.mode,
        population=args.population,
        parents=args.parents,
        mutation=args.mutation,
        channel_mutation=args.channel_mutation,
        crossover=args.crossover,
        generations=args.generations,
        budget=args.budget,
        seed=args.seed,
    )
    return SearchJob(
        supernet=args.supernet,
        out=args.out,
        config=cfg,
        space=space_from_args(args) if given else None,
        data=args.data,
        val_data=args.val_data,
        val_limit=args.val_limit,
        data_limit=args.data_limit,
        bn_images=args.bn_images,
        batch_size=args.batch_size,
        flops_range=tuple(args.flops_range) if args.flops_range else None,
        params_range=tuple(args.params_range) if args.params_range else None,
        score_max=args.score_max,
        score_bits=args.score_bits,
        lut=args.lut,
        latency_max_ms=args.latency_max_ms,
        allow_table_mismatch=args.allow_table_mismatch,
        flops_table=args.flops_table,
        micronet_table=args.micronet_table,
        workers=args.workers,
        gpus=_gpu_list(args.gpus),
        resume=args.resume,
        shard=parse_shard(args.shard) if args.shard else None,
        shared_dir=args.shared_dir,
        shard_timeout_s=args.shard_timeout,
        plot=args.plot,
        progress=not args.no_progress,
    )


def body(args: argparse.Namespace) -> int:
    from .report import front_table
    from .runner import run_job

    job = job_from_args(args)
    if args.gpus and args.workers == 1:
        job.workers = len(job.gpus)  # one worker per GPU unless told otherwise
    results = run_job(job)
    if args.json:
        print_json(results)
        return 0
    print(front_table(results["pareto"], results["pareto_cost"]))
    best = results["best"]
    extra = f", {best['latency_ms']:.3f} ms" if "latency_ms" in best else ""
    print(
        f"best: top-1 {best['accuracy']:.4f}, {best['flops'] / 1e6:.2f} MFLOPs, {best['params'] / 1e6:.3f} M params, "
        f"score {best['score']:.4f}{extra}; {results['evaluated']} candidates evaluated; outputs in {args.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-search", build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
