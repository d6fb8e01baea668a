"""``spos-search``: constrained evolutionary or random search on a trained supernet.

Writes ``DIR/results.json`` (best, Pareto front, evaluated count, constraints, history, timing),
``DIR/best.json`` and ``DIR/pareto_K.json`` model files and ``DIR/candidates.png``; prints the front as a
table (or ``results.json`` with ``--json``). See docs/search.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spos_deploy.cli.common import add_common, print_json, replacing, run
from spos_deploy.cli.options import (
    SPACE_KEYS,
    TARGET_TABLE_HELP,
    add_allow_table_mismatch,
    add_batch,
    add_batch_size,
    add_data,
    add_force,
    add_gpus,
    add_output,
    add_plot,
    add_precision,
    add_progress,
    add_ranges,
    add_ray,
    add_reanchor,
    add_removed,
    add_resume,
    add_runtime,
    add_score_bits,
    add_seed,
    add_space_options,
    add_tables,
    add_target,
    add_threads,
    config_from_args,
    fraction,
    gpu_ids,
    int_range,
    latency_runtime,
    nonneg_int,
    positive_float,
    positive_int,
    show_progress,
    space_from_args,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-search",
        description="Search block and channel choices of a trained SPOS supernet under FLOPs, params, "
        "MicroNet-score and latency constraints (checked on lookup tables before any evaluation).",
    )
    p.add_argument("--supernet", required=True, help="spos-train supernet run folder, or a supernet .params file")
    add_output(p, "output folder (must be new or empty, unless --resume or --force)")
    add_data(p, "fashion-mnist:train", "fashion-mnist:test")
    _evaluation_options(p)
    _search_options(p)
    add_seed(p)
    add_resume(p, "continue the search saved in the output folder (same settings)")
    add_force(
        p,
        "replace the output folder's earlier search: the new one is written beside it and takes its place "
        "only once complete (not with --resume)",
    )
    _constraint_options(p)
    _form_options(p)
    add_target(p, TARGET_TABLE_HELP)
    add_plot(p, "where to draw the candidates (default: candidates.png in the output folder)")
    p.add_argument("--no-plot", action="store_true", help="no candidates plot")
    add_progress(p)
    add_space_options(p)
    add_common(p)
    return p


def _evaluation_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("evaluation")
    d.add_argument("--bn-images", type=positive_int, default=2000, help="BN recalibration images (whole batches)")
    add_batch_size(d, "evaluation batch")
    d.add_argument(
        "--workers",
        type=int_range(1, 256),
        help="evaluation processes (spawned), or Ray actors with --ray (default: 1; with --ray, one per CPU of "
        "the cluster)",
    )
    add_gpus(p, "GPU ids, e.g. 0 1 or 0,1: one per worker (default: CPU)")
    add_ray(
        d,
        "evaluate each generation's candidates on Ray actors: a local instance sized to this machine, or the "
        "cluster at ADDRESS (HOST:PORT or auto); same seed, same result (docs/distributed.md)",
    )
    for flag in ("--shard", "--shared-dir", "--shard-timeout"):
        add_removed(d, flag, "spread the evaluation over machines with --ray ADDRESS (docs/distributed.md)", "?")


def _search_options(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("search")
    s.add_argument("--method", choices=["evolution", "random"], default="evolution")
    s.add_argument(
        "--mode",
        choices=["joint", "blocks-first", "blocks"],
        default="joint",
        help="joint: blocks and channels together; blocks-first: blocks at one uniform width, then channels; "
        "blocks: block choices only, at the widest uniform width the constraints allow (for a supernet trained "
        "at full width only)",
    )
    s.add_argument("--population", type=positive_int, default=50)
    s.add_argument("--parents", type=positive_int, help="top-k parents of each generation (default: population / 5)")
    s.add_argument("--mutation", type=fraction, default=0.1, help="per-gene mutation probability (block genes)")
    s.add_argument("--channel-mutation", type=fraction, help="per-gene probability for channel genes")
    s.add_argument("--crossover", type=nonneg_int, help="crossover children per generation (default: population / 2)")
    s.add_argument("--generations", type=positive_int, default=20)
    s.add_argument("--budget", type=positive_int, help="at most this many evaluated candidates (cache hits are free)")


def _constraint_options(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("constraints (checked on lookup tables before evaluation)")
    add_ranges(c, ("flops", "params"))
    c.add_argument("--score-max", type=positive_float, help="MicroNet score at --score-bits")
    add_score_bits(c, help="precision of the MicroNet score")
    add_tables(c, ("flops", "micronet", "latency"))
    c.add_argument(
        "--latency-max-ms",
        type=positive_float,
        help="latency budget of the deployed network (needs --latency-table, or the deployed form below)",
    )
    add_allow_table_mismatch(c)
    add_reanchor(c)


def _form_options(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group(
        "deployed form (what spos-export will ship): the latency table must be measured in it; without "
        "--latency-table, the table of this form is found by its name or built here"
    )
    add_runtime(
        f,
        None,
        "runtime that will run the exported model (default with a budget and no table: onnxruntime)",
        device_help="device it will run on",
    )
    add_precision(f, "fp32, int8 or bf16")
    add_threads(f, help="threads the deployed model runs with")
    add_batch(f, default=None, help="batch the deployed model runs with")
    f.add_argument(
        "--no-closed-loop",
        dest="closed_loop",
        action="store_false",
        help="do not export and measure the chosen architecture (by default it is, and re-ranked when over budget)",
    )
    f.add_argument(
        "--no-rerank",
        dest="rerank",
        action="store_false",
        help="measure the chosen architecture, but hand it over even when it is over budget",
    )


def job_from_args(args: argparse.Namespace):
    from .deployed import Form
    from .driver import SearchConfig
    from .runner import SearchJob

    given = args.from_model or any(getattr(args, k, None) is not None for k in SPACE_KEYS)
    return config_from_args(
        SearchJob,
        args,
        out=args.output,
        config=config_from_args(SearchConfig, args),
        space=space_from_args(args) if given else None,
        data_limit=args.train_limit,
        flops_range=tuple(args.flops_range) if args.flops_range else None,
        params_range=tuple(args.params_range) if args.params_range else None,
        lut=args.latency_table,
        form=Form(latency_runtime(args), args.precision, args.threads, args.batch),
        gpus=gpu_ids(args.gpus),
        plot=False if args.no_plot else (args.plot or True),
        progress=show_progress(args),
    )


def body(args: argparse.Namespace) -> int:
    from .report import front_table
    from .runner import run_job

    job = job_from_args(args)
    if args.workers is None and not args.ray:
        job.workers = len(job.gpus) or 1  # one worker per GPU unless told otherwise
    with replacing(args.output, args.force, "spos-search", lock=True) as out:
        job.out = str(out)
        results = run_job(job)
    if args.json:
        print_json(results)
        return 0
    print(front_table(results["pareto"], results["pareto_cost"]))
    best = results["best"]
    extra = f", {best['latency_ms']:.3f} ms" if "latency_ms" in best else ""
    print(
        f"best: top-1 {best['accuracy']:.4f}, {best['flops'] / 1e6:.2f} MFLOPs, {best['params'] / 1e6:.3f} M params, "
        f"score {best['score']:.4f}{extra}; {results['evaluated']} candidates evaluated; outputs in {args.output}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-search", build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
