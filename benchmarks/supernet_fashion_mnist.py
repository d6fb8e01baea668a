"""Train the supernet of the default OneShot space on Fashion-MNIST (32x32) and record its accuracy.

The documented command behind it (README, "Train"):

    spos-train supernet --input-size 32 --num-classes 10 --epochs 4 --train-limit 48000 --cs-start-epoch 1 \
        --cs-pace 1 --batch-size 128 --lr 0.1 --eval-paths 2 --val-limit 5000 -o runs/supernet-fmnist

(the same command is step 1 of ``benchmarks.end_to_end_fashion_mnist``; ``--out runs/e2e/supernet`` records
that run: a finished run is resumed, which trains nothing, and its metrics are recorded).

Validation accuracy is that of random paths (of the final allowed channel choices) after BN recalibration
on training batches, as the seed project reported its supernets.

    python -m benchmarks.supernet_fashion_mnist [--epochs 4] [--train-limit 48000] [--out runs/supernet-fmnist]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchmarks.record import ROOT, provenance, write_record
from spos_deploy.cli.common import run_script

STUDY = "supernet_fashion_mnist"
HEADERS = [
    "epoch",
    "train loss",
    "train acc (sampled paths)",
    "val acc (2 random paths)",
    "images/s",
    "allowed channel choices",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-limit", type=int, default=48000, help="first N training images (0: all 60,000)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "supernet-fmnist"))
    ap.add_argument("--resume", action="store_true")
    return ap.parse_args(argv)


def train_command(args: argparse.Namespace) -> list[str]:
    """The documented ``spos-train supernet`` command this benchmark runs."""
    cmd = ["spos-train", "supernet", "--input-size", "32", "--num-classes", "10", "--epochs", str(args.epochs)]
    cmd += ["--cs-start-epoch", "1", "--cs-pace", "1", "--batch-size", "128", "--lr", "0.1", "--eval-paths", "2"]
    cmd += ["--val-limit", "5000", "-o", args.out]
    cmd += ["--train-limit", str(args.train_limit)] if args.train_limit else []
    return cmd + (["--resume"] if args.resume else [])


def history_table(history: list[dict[str, Any]]) -> str:
    rows = [
        [
            h["epoch"],
            f"{h['loss']:.4f}",
            f"{h['train_acc']:.4f}",
            f"{h.get('val_acc', float('nan')):.4f}",
            f"{h['images_per_second']:.0f}",
            ",".join(map(str, h.get("allowed_channels", []))),
        ]
        for h in history
    ]
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cmd = train_command(args)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "spos_deploy.training.cli", *cmd[1:]], cwd=ROOT, check=True)
    history = json.loads((Path(args.out) / "metrics.json").read_text())["history"]
    hours = max(time.time() - t0, sum(h["seconds"] for h in history)) / 3600
    text = history_table(history)
    print(text)
    prov = provenance(STUDY, argv)
    result = {
        "benchmark": "supernet_fashion_mnist",
        "train_command": " ".join(cmd),
        "hours": hours,
        "history": [{k: v for k, v in h.items() if k != "sampled"} for h in history],
    }
    md = (
        f"# Supernet on Fashion-MNIST (default OneShot space, 32x32, 10 classes)\n\n{prov.where}, "
        f"{hours * 60:.0f} minutes.\n\n    {' '.join(cmd)}\n\n{text}\n\n"
        "Validation accuracy: 2 random paths drawn from the last epoch's allowed channel choices, each after "
        "BN recalibration on 20 training batches, on the first 5,000 test images.\n"
    )
    write_record(STUDY, STUDY, result, md, prov=prov)


if __name__ == "__main__":
    run_script("supernet_fashion_mnist", main)
