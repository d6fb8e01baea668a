"""``spos-train supernet|subnet|sampling-plot``: training with checkpoints, resume and distributed runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import add_space_options, space_from_args
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import load_spec


def _range(name: str):
    def parse(values: list[float]) -> tuple[float, float]:
        lo, hi = values
        if lo > hi:
            raise BadInputError(f"--{name}-range: low {lo} is above high {hi}")
        return lo, hi

    return parse


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", required=True, help="run folder: checkpoints, metrics, final weights")
    p.add_argument(
        "--data",
        default="fashion-mnist:train",
        help="training images: fashion-mnist[:train], an image folder tree, a .rec, an .npz",
    )
    p.add_argument("--val-data", default="fashion-mnist:test", help="validation images ('none' to skip)")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--val-limit", type=int, help="use only the first N validation images")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="per worker")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum")
    p.add_argument("--wd", type=float, default=4e-5, help="weight decay (not on BN and biases)")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--gpus", type=int, nargs="*", default=[], help="GPU ids (default: CPU)")
    p.add_argument("--kvstore", default="device", help="device, local, dist_sync, dist_async")
    p.add_argument(
        "--launch-local",
        type=int,
        metavar="WORKERS",
        help="run as a dist_sync job with a scheduler, one server and this many workers on this machine",
    )
    p.add_argument("--no-hybridize", action="store_true")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all (smoke runs)")
    p.add_argument("--no-progress", action="store_true")
    add_common(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spos-train", description="Train SPOS supernets and subnets.")
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("supernet", help="train the supernet (block selection + channel selection)")
    _common(s)
    add_space_options(s)
    s.add_argument("--cs-start-epoch", type=int, default=0, help="epoch from which channel selection starts")
    s.add_argument("--no-cs-warmup", action="store_true", help="all channel choices from the start epoch on")
    s.add_argument("--cs-pace", type=int, help="epochs per warm-up step (default: the seed project's schedule)")
    s.add_argument(
        "--constraint",
        choices=["none", "random", "evolution"],
        default="none",
        help="keep sampled paths inside the ranges: by rejection or by strolling evolution",
    )
    s.add_argument("--flops-range", type=float, nargs=2, metavar=("LO", "HI"))
    s.add_argument("--params-range", type=float, nargs=2, metavar=("LO", "HI"))
    s.add_argument("--latency-range", type=float, nargs=2, metavar=("LO_MS", "HI_MS"))
    s.add_argument("--flops-table", help="FLOPs/params table of the space (default: built on the fly)")
    s.add_argument("--latency-table", help="latency table for --latency-range")
    s.add_argument("--eval-paths", type=int, default=2, help="random paths evaluated (after BN recalibration)")
    d = sub.add_parser("sampling-plot", help="compare samplers: none / random with constraint / strolling evolution")
    d.add_argument("-o", "--out", required=True, help="PNG file")
    d.add_argument("--samples", type=int, default=5000)
    d.add_argument("--flops-range", type=float, nargs=2, metavar=("LO", "HI"), required=True)
    d.add_argument("--params-range", type=float, nargs=2, metavar=("LO", "HI"), required=True)
    d.add_argument("--flops-table")
    d.add_argument("--seed", type=int, default=0)
    add_space_options(d)
    add_common(d)
    n = sub.add_parser("subnet", help="train a fixed architecture from scratch")
    n.add_argument("model", help="model.json or built-in name")
    _common(n)
    n.add_argument("--input-size", type=int)
    n.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    return p


def body(args: argparse.Namespace, argv: list[str]) -> int:
    from .trainer import TrainConfig, train

    if args.mode == "sampling-plot":
        return _sampling_plot(args)
    if args.launch_local:
        return _launch(args, argv)
    common = dict(
        out=args.out,
        data=args.data,
        val_data=None if args.val_data == "none" else args.val_data,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        wd=args.wd,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        keep=args.keep,
        gpus=args.gpus,
        kvstore=args.kvstore,
        hybridize=not args.no_hybridize,
        max_steps=args.max_steps,
        progress=not args.no_progress,
    )
    if args.epochs < 1 or args.batch_size < 1:
        raise BadInputError("--epochs and --batch-size must be >= 1")
    if args.mode == "supernet":
        bounds = {}
        for key, attr, scale in (
            ("flops", "flops_range", 1),
            ("params", "params_range", 1),
            ("latency_ms", "latency_range", 1),
        ):
            v = getattr(args, attr)
            if v is not None:
                bounds[key] = _range(key.split("_")[0])([x * scale for x in v])
        cfg = TrainConfig(
            mode="supernet",
            space=space_from_args(args),
            cs_start_epoch=args.cs_start_epoch,
            cs_warmup=not args.no_cs_warmup,
            cs_pace=args.cs_pace,
            constraint=args.constraint,
            bounds=bounds,
            flops_table=args.flops_table,
            latency_table=args.latency_table,
            eval_paths=args.eval_paths,
            **common,
        )
    else:
        cfg = TrainConfig(
            mode="subnet", spec=load_spec(args.model, input_size=args.input_size), mixup=args.mixup, **common
        )
    result = train(cfg)
    if args.json:
        print_json(result)
    else:
        last = result["history"][-1] if result["history"] else {}
        print(
            f"done: {result['global_step']} steps; last epoch loss {last.get('loss')}, "
            f"val acc {last.get('val_acc')}; outputs in {args.out}"
        )
    return 0


def _sampling_plot(args: argparse.Namespace) -> int:
    from search.constraints import Constraint, metric_functions

    from .plots import compare_samplers, three_panel

    space = space_from_args(args)
    metrics = metric_functions(space, args.flops_table, None)
    cons = Constraint(
        metrics, {"flops": _range("flops")(args.flops_range), "params": _range("params")(args.params_range)}
    )
    cvs = three_panel(compare_samplers(space, cons, args.samples, args.seed), cons, args.out)
    if args.json:
        print_json({"plot": args.out, "coverage_cv": cvs})
    else:
        print(
            f"wrote {args.out}; coverage CV (0 = even): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cvs.items() if v is not None)
        )
    return 0


def _launch(args: argparse.Namespace, argv: list[str]) -> int:
    from .distributed import launch_local

    argv = list(argv)
    i = argv.index("--launch-local")
    del argv[i : i + 2]
    if "--kvstore" not in argv:
        argv += ["--kvstore", "dist_sync"]
    codes = launch_local([sys.executable, "-m", "training.cli", *argv], workers=args.launch_local)
    if any(codes):
        raise BadInputError(f"distributed run failed: worker exit codes {codes}")
    print(f"dist_sync run with {args.launch_local} workers finished; outputs in {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(argv) if argv is not None else sys.argv[1:]
    return run("spos-train", build_parser(), lambda a: body(a, raw), argv)


if __name__ == "__main__":
    sys.exit(main())
