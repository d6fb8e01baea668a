"""Does the supernet of the small-image space learn? Random-path accuracy after a 20-minute run, and the ablation.

Two questions, one script (issue 10, items 1-2):

* ``recipe`` (default): train the supernet of ``--space small`` on all 60,000 Fashion-MNIST images with
  the recipe ``spos-train supernet`` documents for it, then evaluate ``--paths`` random paths (full
  width, blocks uniform) with exact per-path BN on the whole test set. Target: mean >= 85 % after at most
  20 minutes of training on 2 cores.
* ``ablation``: short runs (200 steps, 25,600 images, seed 0, same batches) of one change at a time
  against the recipe: head variant (last conv after / before pooling), positions per stage, learning rate
  and batch, label smoothing, channel search from the start, the 224-px geometry at 32 px. Each run's loss
  over its last 50 steps and the accuracy of the same 10 random paths (exact BN, 2,000 test images).

Runs live under ``--out`` (default runs/supernet-small-bench) and are resumed: a finished run is only
evaluated again. Results: ``benchmarks/results/supernet_small/supernet_small[_TAG].{md,json}`` and
``benchmarks/results/supernet_small/supernet_ablation.{md,json}``.

    python -m benchmarks.supernet_small [recipe|ablation] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from spos_deploy.training.recipes import SUPERNET_RECIPES
from tabulate import tabulate

from benchmarks.record import ROOT, write_record
from spos_deploy.cli.common import run_script

STUDY = "supernet_small"
SMALL = ["--space", "small"]
RECIPE = ["--batch-size", "128", "--lr", "0.1", "--warmup-epochs", "0.1", "--label-smoothing", "0"]
"""The base of the ablation: NAG, cosine after a 0.1-epoch warm-up, no label smoothing, full width only
(``--cs-start-epoch`` beyond the last epoch), random crop + flip."""
SMALL_RECIPE = SUPERNET_RECIPES["small"]
"""The recipe ``spos-train supernet --space small`` trains with by default (training/recipes.py); the recipe runs
spell it out, so that their recorded command says what was trained."""

SHORT = ["--epochs", "1", "--train-limit", "25600", "--val-data", "none", "--cs-start-epoch", "5"]
GEOMETRY = ["--input-size", "32", "--num-classes", "10", "--no-se", "--stage-out-channels", "32", "64", "128", "256"]
GEOMETRY += ["--stage-repeats", "1", "1", "2", "1"]
GEOMETRY += ["--last-conv-channels", "512", "--first-conv-channels", "16"]
SMALL_MAPS = ["--stage-strides", "1", "2", "2", "1"]
LR01 = ["--batch-size", "128", "--lr", "0.1", "--warmup-epochs", "0.1", "--label-smoothing", "0"]
ABLATION: list[tuple[str, str, list[str]]] = [
    ("recipe (5 positions, last conv before pooling, no label smoothing)", "recipe", SMALL + RECIPE),
    ("label smoothing 0.1", "ls01", SMALL + LR01 + ["--label-smoothing", "0.1"]),
    ("last conv after pooling (the 224-px default head)", "lcap", GEOMETRY + SMALL_MAPS + ["--lcap"] + LR01),
    ("224-px geometry at 32 px (maps 16-8-4-2-1)", "geom224", GEOMETRY + ["--no-lcap"] + LR01),
    (
        "10 positions (2 2 4 2)",
        "pos10",
        GEOMETRY + SMALL_MAPS + ["--no-lcap", "--stage-repeats", "2", "2", "4", "2"] + LR01,
    ),
    ("lr 0.05", "lr005", SMALL + [*LR01, "--lr", "0.05"]),
    ("lr 0.3", "lr03", SMALL + [*LR01, "--lr", "0.3"]),
    (
        "lr 0.6, batch 256, warm-up 0.2",
        "lr06b256",
        SMALL + [*LR01, "--batch-size", "256", "--lr", "0.6", "--warmup-epochs", "0.2"],
    ),
    ("channel search from the first step", "cs0", SMALL + LR01 + ["--cs-start-epoch", "0", "--no-cs-warmup"]),
    ("augmentation: flip only (no random crop)", "flip", SMALL + LR01 + ["--augment", "flip"]),
    ("augmentation: none", "noaug", SMALL + LR01 + ["--augment", "none"]),
]


def train(out: Path, args: list[str]) -> float:
    """``spos-train supernet ARGS -o OUT`` (resumed if the folder exists); returns the wall seconds spent."""
    exe = Path(sys.executable).parent / "spos-train"
    cmd = [str(exe), "supernet", *args, "--no-progress", "-o", str(out)] + (["--resume"] if out.exists() else [])
    t0 = time.perf_counter()
    print(" ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def evaluate_paths(run: Path, n: int, val_limit: int | None, bn_images: int = 2048) -> dict:
    """Top-1 of ``n`` fixed random full-width paths (seed 0), each with its own exact BN statistics."""
    import mxnet as mx
    from spos_deploy.search.evaluator import PathEvaluator, prepare_data, resolve_supernet
    from spos_deploy.search.sampling import UniformSampler

    sn = resolve_supernet(str(run), None)
    data = prepare_data(sn.space, "fashion-mnist:train", "fashion-mnist:test", bn_images, 128, val_limit=val_limit)
    ev = PathEvaluator(sn, data, 256, mx.cpu())
    blocks, channels = UniformSampler(sn.space).draw(
        np.random.default_rng([0, 12345]), n, np.array([sn.space.widest_choice])
    )
    accs = [float(ev(b, c)) for b, c in zip(blocks, channels)]
    return {
        "paths": n,
        "test_images": len(data.val_labels),
        "mean": float(np.mean(accs)),
        "min": min(accs),
        "max": max(accs),
        "accuracies": accs,
    }


def losses(run: Path) -> list[float]:
    with (run / "steps.csv").open() as f:
        return [float(row[3]) for row in csv.reader(f) if row and row[0].isdigit()]


def _record(name: str, payload: dict, md: str, argv: list[str] | None) -> None:
    write_record(STUDY, name, payload, md, argv)
    print(md)


def recipe(
    out: Path,
    epochs: int,
    paths: int,
    wd: float | None = None,
    workers: int = 1,
    tag: str = "",
    teacher: str | None = None,
    kd_weight: float = 0.5,
    block_weights: list[float] | None = None,
    overrides: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> None:
    overrides = overrides or {}
    run = out / (
        f"recipe-{SMALL_RECIPE['augment']}"
        + ("".join(f"-{k.strip('-')}{v}" for k, v in overrides.items()) + f"-e{epochs}" if overrides else "")
        + ("" if wd is None else f"-wd{wd:g}")
        + (f"-w{workers}-e{epochs}" if workers > 1 else "")
        + (f"-kd{kd_weight:g}-{Path(teacher).name}-e{epochs}" if teacher else "")
        + ("-bw" + "_".join(f"{w:g}" for w in block_weights) + f"-e{epochs}" if block_weights else "")
    )
    fixed = [(k, v) for k, v in SMALL_RECIPE.items() if k not in ("epochs", "cs_start_epoch")]
    args = SMALL + [
        x for k, v in fixed for x in (f"--{k.replace('_', '-')}", f"{v:g}" if isinstance(v, float) else str(v))
    ]
    args += ["--epochs", str(epochs), "--cs-start-epoch", str(epochs + 1)]
    args += [] if wd is None else ["--wd", f"{wd:g}"]
    args += ["--teacher", teacher, "--kd-weight", f"{kd_weight:g}"] if teacher else []
    args += ["--block-weights", *(f"{w:g}" for w in block_weights)] if block_weights else []
    args += [x for kv in overrides.items() for x in kv]  # the last occurrence of an option wins
    if workers > 1:  # the same global batch of 128, shared by data-parallel workers on this machine's cores
        args += ["--batch-size", str(128 // workers), "--launch-local", str(workers)]
    args += ["--eval-paths", "2", "--val-limit", "1000"]
    seconds = train(run, args)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    result = evaluate_paths(run, paths, None)
    train_s = sum(e.get("seconds", 0) for e in metrics.get("history", [])) or seconds
    rows = [
        [
            e["epoch"],
            f"{e['loss']:.3f}",
            f"{e.get('val_acc', float('nan')):.3f}",
            f"{e['images_per_second'] * workers:.0f}",
        ]
        for e in metrics.get("history", [])
    ]
    taught = _teacher_accuracy(teacher)
    md = (
        f"# Supernet of the small-image space on Fashion-MNIST\n\n`spos-train supernet {' '.join(args)}`\n\n"
        + (
            f"Teacher: {teacher}, stand-alone top-1 {'?' if taught is None else f'{taught:.4f}'} "
            "(trained before, not in the time below).\n\n"
            if teacher
            else ""
        )
        + f"{epochs} epochs x 60,000 images: {train_s / 60:.1f} min of training, the sum of the run's epochs "
        f"(per-epoch validation included; this invocation took {seconds / 60:.1f} min, a finished run is only "
        "evaluated again).\n\n"
        f"**Random paths (full width, {paths} paths, exact per-path BN, {result['test_images']:,} test images): "
        f"mean {result['mean']:.4f}, min {result['min']:.4f}, max {result['max']:.4f}** (target: mean >= 0.85).\n\n"
        + tabulate(rows, ["epoch", "train loss", "val acc (2 paths, 1,000 images)", "img/s"], tablefmt="github")
    )
    _record(
        "supernet_small" + (f"_{tag}" if tag else ""),
        {
            "workers": workers,
            "args": args,
            "teacher": None if teacher is None else {"run": teacher, "standalone_acc": taught},
            "train_seconds": train_s,
            "wall_seconds": seconds,
            "paths": result,
            "history": metrics.get("history", []),
        },
        md,
        argv,
    )


def _teacher_accuracy(teacher: str | None) -> float | None:
    """The teacher's stand-alone top-1 as its benchmark run recorded it (``result.json``, from ``_subnets``)."""
    if not teacher or not (Path(teacher) / "result.json").exists():
        return None
    result = json.loads((Path(teacher) / "result.json").read_text())
    return result.get("standalone_acc", result.get("val_acc"))  # older runs, and spos-train subnets' result.json


def ablation(out: Path, argv: list[str] | None = None) -> None:
    rows, records = [], []
    for label, key, args in ABLATION:
        run = out / f"ablation-{key}"
        seconds = train(run, [*SHORT, *args])  # the variant's options win
        loss = losses(run)
        acc = evaluate_paths(run, 10, 2000)
        records.append(
            {
                "variant": label,
                "key": key,
                "args": SHORT + args,
                "steps": len(loss),
                "seconds": seconds,
                "loss_first50": float(np.mean(loss[:50])),
                "loss_last50": float(np.mean(loss[-50:])),
                "paths": acc,
            }
        )
        rows.append(
            [
                label,
                len(loss),
                f"{np.mean(loss[:50]):.3f}",
                f"{np.mean(loss[-50:]):.3f}",
                f"{acc['mean']:.3f} ({acc['min']:.3f}-{acc['max']:.3f})",
                f"{seconds:.0f}",
            ]
        )
    md = (
        "# Supernet ablation, small-image space, Fashion-MNIST\n\nEach run: 25,600 training images (200 steps "
        "of 128, 100 of 256), seed 0, full width; accuracy of the same 10 random paths with exact per-path BN on "
        "2,000 test images. One change at a time against the recipe.\n\n"
        + tabulate(
            rows, ["variant", "steps", "loss first 50", "loss last 50", "random-path acc", "wall s"], tablefmt="github"
        )
    )
    _record("supernet_ablation", {"runs": records}, md, argv)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="?", choices=["recipe", "ablation"], default="recipe")
    ap.add_argument("--out", default=str(ROOT / "runs" / "supernet-small-bench"))
    ap.add_argument("--epochs", type=int, default=13, help="recipe: epochs of 60,000 images (13: ~20 min here)")
    ap.add_argument("--paths", type=int, default=10)
    ap.add_argument("--wd", type=float, help="recipe: weight decay (default: spos-train's, 4e-5)")
    ap.add_argument("--workers", type=int, default=1, help="recipe: data-parallel workers (dist_sync on loopback)")
    ap.add_argument("--tag", default="", help="recipe: suffix of the result files (supernet_small_TAG.md)")
    ap.add_argument("--teacher", help="recipe: distil from this trained subnet (a spos-train subnet run folder)")
    ap.add_argument("--kd-weight", type=float, default=0.5, help="recipe: the teacher's share of the targets")
    ap.add_argument("--block-weights", type=float, nargs="+", help="recipe: relative sampling weights of the blocks")
    ap.add_argument("--augment", choices=["crop-flip", "flip", "none"], help="recipe: instead of the recipe's")
    ap.add_argument("--batch-size", type=int, help="recipe: instead of the recipe's")
    ap.add_argument("--lr", type=float, help="recipe: instead of the recipe's")
    ap.add_argument("--warmup-epochs", type=float, help="recipe: instead of the recipe's")
    ap.add_argument("--seed", type=int, help="recipe: training seed instead of 0 (the evaluated paths stay the same)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    changed = {"augment": args.augment, "batch-size": args.batch_size, "lr": args.lr}
    changed |= {"warmup-epochs": args.warmup_epochs, "seed": args.seed}
    overrides = {f"--{k}": f"{v:g}" if isinstance(v, float) else str(v) for k, v in changed.items() if v is not None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "ablation":
        ablation(out, argv)
        return
    recipe(
        out,
        args.epochs,
        args.paths,
        args.wd,
        args.workers,
        args.tag,
        args.teacher,
        args.kd_weight,
        args.block_weights,
        overrides,
        argv,
    )


if __name__ == "__main__":
    run_script("supernet_small", main)
