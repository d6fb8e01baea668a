"""Train the supernet of the default OneShot space on Fashion-MNIST (32x32) and record its accuracy.

The documented command behind it (README, "Train"):

    spos-train supernet --input-size 32 --num-classes 10 --epochs 4 --train-limit 48000 --cs-start-epoch 1 \
        --cs-pace 1 --batch-size 128 --lr 0.1 --eval-paths 2 --val-limit 5000 -o runs/supernet-fmnist

(the same command is step 1 of benchmarks/end_to_end_fashion_mnist.py; ``--out runs/e2e/supernet`` records
that run: a finished run is resumed, which trains nothing, and its metrics are recorded).

Validation accuracy is that of random paths (of the final allowed channel choices) after BN recalibration
on training batches, as the seed project reported its supernets.

    python benchmarks/supernet_fashion_mnist.py [--epochs 4] [--train-limit 48000] [--out runs/supernet-fmnist]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos_deploy.atomic import write_json, write_text  # noqa: E402
from spos_deploy.machine import machine_record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-limit", type=int, default=48000, help="first N training images (0: all 60,000)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "supernet-fmnist"))
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    cmd = [
        "spos-train",
        "supernet",
        "--input-size",
        "32",
        "--num-classes",
        "10",
        "--epochs",
        str(args.epochs),
        "--cs-start-epoch",
        "1",
        "--cs-pace",
        "1",
        "--batch-size",
        "128",
        "--lr",
        "0.1",
        "--eval-paths",
        "2",
        "--val-limit",
        "5000",
        "-o",
        args.out,
    ]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    if args.resume:
        cmd.append("--resume")
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "spos_deploy.training.cli", *cmd[1:]], cwd=ROOT, check=True)
    history = json.loads((Path(args.out) / "metrics.json").read_text())["history"]
    hours = max(time.time() - t0, sum(h["seconds"] for h in history)) / 3600
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
    text = tabulate(
        rows,
        headers=[
            "epoch",
            "train loss",
            "train acc (sampled paths)",
            "val acc (2 random paths)",
            "images/s",
            "allowed channel choices",
        ],
        tablefmt="github",
        disable_numparse=True,
    )
    print(text)
    m = machine_record()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    out = ROOT / "benchmarks" / "results"
    write_json(
        out / "supernet_fashion_mnist.json",
        {
            "benchmark": "supernet_fashion_mnist",
            "date": date,
            "machine": m,
            "command": " ".join(cmd),
            "hours": hours,
            "history": [{k: v for k, v in h.items() if k != "sampled"} for h in history],
        },
    )
    write_text(
        out / "supernet_fashion_mnist.md",
        f"# Supernet on Fashion-MNIST (default OneShot space, 32x32, 10 classes)\n\n{date} on {m['cpu']} "
        f"({m['usable_cores']} cores), {hours * 60:.0f} minutes.\n\n    {' '.join(cmd)}\n\n{text}\n\n"
        "Validation accuracy: 2 random paths drawn from the last epoch's allowed channel choices, each after "
        "BN recalibration on 20 training batches, on the first 5,000 test images.\n",
    )


if __name__ == "__main__":
    main()
