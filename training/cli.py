"""``spos-train supernet|subnet|subnets|sampling-plot``: training with checkpoints, resume and distributed runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spos_deploy.cli.common import add_common, print_json, replacing, run
from spos_deploy.cli.options import (
    add_batch_size,
    add_data,
    add_force,
    add_gpus,
    add_input_size,
    add_output,
    add_progress,
    add_ranges,
    add_ray,
    add_resume,
    add_samples,
    add_seed,
    add_space_options,
    add_tables,
    check_range,
    config_from_args,
    float_range,
    fraction,
    gpu_ids,
    int_range,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    show_progress,
    space_from_args,
)
from spos_deploy.data.batches import AUGMENTATIONS
from spos_deploy.errors import BadInputError
from spos_deploy.nets import engine

from .recipes import RECIPE_KEYS, SUPERNET_RECIPES, resolve_supernet_options
from .sampling import PATH_RULES

KVSTORES = ("device", "local", "dist_sync", "dist_async", "dist_device_sync")


def _common(p: argparse.ArgumentParser) -> None:
    add_output(p, "run folder: checkpoints, metrics, final weights")
    add_data(p, "fashion-mnist:train", "fashion-mnist:test")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int, default=5)
    add_batch_size(t, "per worker")
    t.add_argument("--lr", type=positive_float, default=0.2)
    t.add_argument("--momentum", type=float_range(0.0, 0.999), default=0.9, help="Nesterov momentum")
    t.add_argument("--wd", type=nonneg_float, default=4e-5, help="weight decay (not on BN and biases)")
    t.add_argument("--warmup-epochs", type=nonneg_float, default=1.0)
    t.add_argument("--label-smoothing", type=float_range(0.0, 0.999), default=0.1)
    t.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="crop-flip",
        help="training augmentation: random crop (4-pixel padding for small images) and flip, flip only, or none",
    )
    add_seed(p)
    add_resume(p, "continue from the last checkpoint in the run folder (same settings)")
    add_force(
        p,
        "replace the run folder's earlier run: the new run is written beside it and takes its place only once "
        "complete (not with --resume)",
    )
    p.add_argument("--checkpoint-every", type=nonneg_int, default=0, help="also checkpoint every N steps")
    p.add_argument("--keep", type=positive_int, default=3, help="checkpoints kept")
    add_gpus(p)
    p.add_argument("--kvstore", choices=KVSTORES, default="device")
    p.add_argument(
        "--launch-local",
        type=int_range(1, 64),
        metavar="WORKERS",
        help="run as a dist_sync job with a scheduler, one server and this many workers on this machine",
    )
    p.add_argument("--no-hybridize", action="store_true")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many steps in all (smoke runs)")
    add_progress(p)
    add_common(p)


def _recipes_text() -> str:
    return "; ".join(
        f"{name}: "
        + ", ".join(f"--{k.replace('_', '-')} {v if v is not None else 'after the last epoch'}" for k, v in r.items())
        for name, r in SUPERNET_RECIPES.items()
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spos-train", description="Train SPOS supernets and subnets.")
    sub = p.add_subparsers(dest="mode", required=True)
    _supernet_parser(sub)
    _sampling_plot_parser(sub)
    _subnet_parsers(sub)
    return p


def _supernet_parser(sub: Any) -> None:
    """``spos-train supernet``: the recipe's options, path sampling, constraints and distillation."""
    s = sub.add_parser(
        "supernet",
        help="train the supernet (block selection + channel selection)",
        epilog="Options not given take the recipe of the space trained: " + _recipes_text(),
    )
    _common(s)
    add_space_options(s)
    s.add_argument("--cs-start-epoch", type=nonneg_int, help="epoch from which channel selection starts")
    s.set_defaults(**{k: None for k in RECIPE_KEYS})
    s.add_argument("--no-cs-warmup", action="store_true", help="all channel choices from the start epoch on")
    s.add_argument(
        "--cs-pace", type=positive_int, help="epochs per warm-up step (default: the seed project's schedule)"
    )
    s.add_argument(
        "--constraint",
        choices=["none", "random", "evolution"],
        default="none",
        help="keep sampled paths inside the ranges: by rejection or by strolling evolution",
    )
    s.add_argument(
        "--block-weights",
        type=nonneg_float,
        nargs="+",
        metavar="W",
        help="relative sampling weights of the block types, one per type (default: uniform; unconstrained only)",
    )
    s.add_argument(
        "--init-from",
        metavar="DIR",
        help="start from the weights of a trained supernet (run folder of the same space): few-shot sub-supernets",
    )
    r = s.add_argument_group("paths per step")
    r.add_argument(
        "--path-rule",
        choices=list(PATH_RULES),
        default="uniform",
        help="; ".join(f"{k}: {v}" for k, v in PATH_RULES.items()),
    )
    r.add_argument(
        "--sandwich-random",
        type=nonneg_int,
        help="uniform paths per sandwich step beside the widest and the narrowest (default 1)",
    )
    r.add_argument(
        "--no-inplace-distill",
        dest="inplace_distill",
        action="store_false",
        help="sandwich: every path learns the labels (default: the widest teaches the others its probabilities)",
    )
    add_ranges(s, ("flops", "params", "latency"))
    add_tables(s, ("flops", "latency"))
    s.add_argument("--eval-paths", type=positive_int, default=2, help="random paths evaluated (after BN recalibration)")
    k = s.add_argument_group("distillation")
    k.add_argument(
        "--teacher",
        metavar="DIR",
        help="a trained subnet (spos-train subnet run folder): its class probabilities join the labels as targets",
    )
    k.add_argument(
        "--kd-weight",
        type=fraction,
        help="the teacher's share of the targets (default 0.5; needs --teacher)",
    )


def _sampling_plot_parser(sub: Any) -> None:
    d = sub.add_parser("sampling-plot", help="compare samplers: none / random with constraint / strolling evolution")
    add_output(d, "PNG file", metavar="PNG")
    add_samples(d, 5000, "random architectures per sampler")
    add_ranges(d, ("flops", "params"), required=True)
    add_tables(d, ("flops",))
    add_seed(d)
    add_space_options(d)
    add_common(d)


def _subnet_parsers(sub: Any) -> None:
    """``spos-train subnet`` (one architecture) and ``subnets`` (many, here or as Ray tasks)."""
    n = sub.add_parser("subnet", help="train a fixed architecture from scratch")
    n.add_argument("model", help="model.json or built-in name")
    _common(n)
    add_input_size(n, help="override the model's input size")
    n.add_argument("--mixup", type=nonneg_float, default=0.0, help="mixup alpha (0: off)")
    m = sub.add_parser(
        "subnets",
        help="train many fixed architectures from scratch, each into OUT/<name> (a shortlist, a ranking set); "
        "with --ray as Ray tasks",
        description="Each model trains into OUT/<its name> with the same settings, checkpointed every epoch. "
        "Running the command again finishes only what is missing: finished runs are read back, interrupted ones "
        "resume from their checkpoint. With --ray, one task per model on a local Ray instance or a cluster; a "
        "task whose worker dies is retried and resumes from its checkpoint (docs/distributed.md).",
    )
    m.add_argument("models", nargs="+", metavar="MODEL", help="model.json files or built-in names (distinct names)")
    _common(m)
    add_input_size(m, help="override the models' input size")
    m.add_argument("--mixup", type=nonneg_float, default=0.0, help="mixup alpha (0: off)")
    add_ray(
        m,
        "train on Ray: a local instance sized to this machine, or the cluster at ADDRESS (HOST:PORT or auto); "
        "OUT and the data must be at the same path on every node",
    )


def _config(args: argparse.Namespace):
    """The library's config for the parsed command line (every value already checked by argparse)."""
    from spos_deploy.model_spec import load_spec

    from .trainer import SubnetConfig, SupernetConfig

    common = dict(
        out=args.output,
        val_data=None if args.val_data in (None, "none") else args.val_data,
        gpus=gpu_ids(args.gpus),
        hybridize=not args.no_hybridize,
        progress=show_progress(args),
    )
    if args.mode == "subnet":
        return config_from_args(SubnetConfig, args, spec=load_spec(args.model, input_size=args.input_size), **common)
    if args.mode == "subnets":
        specs = [load_spec(m, input_size=args.input_size) for m in args.models]
        return config_from_args(SubnetConfig, args, spec=specs[0], **{**common, "progress": False}), specs
    bounds = {}
    for key, attr in (("flops", "flops_range"), ("params", "params_range"), ("latency_ms", "latency_range")):
        rng = check_range(f"--{attr.replace('_', '-')}", getattr(args, attr))
        if rng is not None:
            bounds[key] = rng
    if args.kd_weight is not None and not args.teacher:
        raise BadInputError("--kd-weight weighs the teacher's targets: add --teacher DIR")
    if args.path_rule != "sandwich" and (args.sandwich_random is not None or not args.inplace_distill):
        raise BadInputError("--sandwich-random and --no-inplace-distill shape sandwich steps: add --path-rule sandwich")
    space = space_from_args(args)
    vars(args).update(resolve_supernet_options(vars(args), space))
    return config_from_args(
        SupernetConfig,
        args,
        space=space,
        cs_warmup=not args.no_cs_warmup,
        bounds=bounds,
        kd_weight=0.5 if args.kd_weight is None else args.kd_weight,
        sandwich_random=1 if args.sandwich_random is None else args.sandwich_random,
        **common,
    )


def body(args: argparse.Namespace, argv: list[str]) -> int:
    engine.start_serial()  # before anything here loads MXNet: the fast depthwise backward of the training form
    if args.mode == "sampling-plot":
        return _sampling_plot(args)
    if args.mode == "subnets":
        return _subnets(args)
    cfg = _config(args)
    if args.force and args.kvstore.startswith("dist") and not args.launch_local and Path(args.output).exists():
        raise BadInputError(
            f"--force: the workers of a distributed job write one run folder together; remove {args.output} "
            "first, or use --launch-local (which replaces it once the run is complete)"
        )
    with replacing(args.output, args.force, "spos-train", lock=True) as out:
        if args.launch_local:
            return _launch(args, argv, str(out))
        from .trainer import train

        cfg.out = str(out)
        result = train(cfg)
    if args.json:
        print_json(result)
    else:
        last = result["history"][-1] if result["history"] else {}
        print(
            f"done: {result['global_step']} steps; last epoch loss {last.get('loss')}, "
            f"val acc {last.get('val_acc')}; outputs in {args.output}"
        )
    return 0


def _subnets(args: argparse.Namespace) -> int:
    """``spos-train subnets``: every model trained (or resumed, or read back) into OUT/<name>, here or on Ray."""
    from spos_deploy.atomic import write_json

    if args.launch_local or args.kvstore.startswith("dist"):
        raise BadInputError("spos-train subnets trains each model on one worker: drop --launch-local/--kvstore dist_*")
    if args.ray is not None:
        from spos_deploy.cluster import LOCAL, check_address, require_ray

        require_ray()
        if args.ray != LOCAL:
            check_address(args.ray)
    base, specs = _config(args)
    from .subnets import plan_runs, train_runs

    with replacing(args.output, args.force, "spos-train", lock=False) as out:
        runs = plan_runs(base, specs, out)
        results = train_runs(runs, ray=args.ray, progress=show_progress(args))
        write_json(Path(out) / "subnets.json", {"runs": results})
    if args.json:
        print_json({"runs": results})
        return 0
    from tabulate import tabulate

    rows = [
        [r["name"], f"{r['val_acc']:.4f}" if r["val_acc"] is not None else "-", r["epochs"], r["resumed_from_epoch"]]
        for r in results
    ]
    print(tabulate(rows, headers=["model", "val acc", "epochs", "resumed from epoch"], tablefmt="github"))
    print(f"{len(results)} runs in {args.output} (summary: {Path(args.output) / 'subnets.json'})")
    return 0


def _sampling_plot(args: argparse.Namespace) -> int:
    from spos_deploy.search.constraints import Constraint, metric_functions

    from .plots import compare_samplers, three_panel

    bounds = {"flops": check_range("--flops-range", args.flops_range)}
    bounds["params"] = check_range("--params-range", args.params_range)
    space = space_from_args(args)
    cons = Constraint(metric_functions(space, args.flops_table, None), bounds)
    cvs = three_panel(compare_samplers(space, cons, args.samples, args.seed), cons, args.output)
    if args.json:
        print_json({"plot": args.output, "coverage_cv": cvs})
    else:
        print(
            f"wrote {args.output}; coverage CV (0 = even): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cvs.items() if v is not None)
        )
    return 0


def _launch(args: argparse.Namespace, argv: list[str], out: str) -> int:
    """``--launch-local``: this command again, as each process of a dist_sync job on this machine, writing
    ``out`` (with ``--force``, the new run folder beside the one it replaces)."""
    from .distributed import launch_local

    argv = list(argv)
    i = argv.index("--launch-local")
    del argv[i : i + 2]
    if "--kvstore" not in argv:
        argv += ["--kvstore", "dist_sync"]
    if args.force:  # the workers write the new folder; this process puts it in place once they are done
        argv = [a for a in argv if a != "--force"] + ["--output", out]
    codes = launch_local([sys.executable, "-m", "spos_deploy.training.cli", *argv], workers=args.launch_local)
    if any(codes):
        raise BadInputError(f"distributed run failed: worker exit codes {codes}")
    print(f"dist_sync run with {args.launch_local} workers finished; outputs in {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(argv) if argv is not None else sys.argv[1:]
    return run("spos-train", build_parser(), lambda a: body(a, raw), argv)


if __name__ == "__main__":
    sys.exit(main())
