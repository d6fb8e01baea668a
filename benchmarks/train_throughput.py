"""Training speed: spos-train's supernet and stand-alone steps against the forms they replaced, side by side.

Every form runs in a fresh process of its own (MXNet fixes its engine when it loads), on the same Fashion-MNIST
batches and the same paths; the forms take turns over ``--rounds`` rounds (the order reversed every other
round) and the record keeps each form's median and range. The forms:

* ``imperative``: the supernet as a plain imperative per-path loop, channel masks multiplied onto activated
  outputs, full kernels, no hybridize (a direct port of the seed project's NasBlock design);
* ``hybrid-plain``: the same, each choice block a static graph;
* ``supernet-threaded``: hybridized, channel masks folded into BN gamma/beta, large kernels cropped to the taps
  a tiny input can reach, MXNet's threaded engine and its own depthwise backward (spos-train until 2026-12-07);
* ``supernet``: the same under the serial engine with the rewritten 5x5/7x7 depthwise backward
  (:mod:`spos_deploy.nets.dwconv`), opt-in since it was found to train wrongly (docs/training.md);
* ``small-supernet-threaded`` / ``small-supernet``: the same two for the small-image space's supernet (the one
  the rankings train);
* ``subnet-threaded`` / ``subnet``: one stand-alone training step of the small space's subnets (the rankings'
  ground truth), a fixed set of random architectures in turn, before and after the same change;
* ``supernet-half-cores`` / ``small-supernet-half-cores`` / ``subnet-half-cores``: ``supernet``, ``small-supernet``
  and ``subnet`` on the OpenMP threads MXNet chooses by itself on x86 (half the logical CPUs), which spos-train
  ran on until 2026-12-07; the forms without the suffix run on every physical core
  (:mod:`spos_deploy.mxnet_import`). On a machine without hyperthreads the suffix means half the cores.

The forms without ``-half-cores`` run on every physical core (what spos-train does now); the forms measured
before 2026-12-07 ran on half the logical CPUs, so their older records compare within that setting only.

    python -m benchmarks.train_throughput [--rounds 3] [--steps 30] [--batch-size 128]
    python -m benchmarks.train_throughput --tag threads --forms supernet supernet-half-cores small-supernet \\
        small-supernet-half-cores subnet subnet-half-cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from tabulate import tabulate

from benchmarks.record import ROOT, provenance, write_record
from spos_deploy import mxnet_import
from spos_deploy.cli.common import run_script
from spos_deploy.nets import engine

STUDY = "train_throughput"

#: form -> (description, the engine its process runs)
FORMS: dict[str, tuple[str, str]] = {
    "imperative": ("supernet, imperative per-path loop (output masks, full kernels)", "ThreadedEnginePerDevice"),
    "hybrid-plain": ("supernet, hybridized choice blocks, same ops", "ThreadedEnginePerDevice"),
    "supernet-threaded": (
        "supernet, spos-train until 2026-12-07: hybridized, BN masks, cropped kernels",
        "ThreadedEnginePerDevice",
    ),
    "supernet": ("supernet: the same + serial engine, rewritten depthwise backward (opt-in)", engine.SERIAL),
    "small-supernet-threaded": (
        "small-space supernet, threaded engine, MXNet's depthwise backward",
        "ThreadedEnginePerDevice",
    ),
    "small-supernet": ("small-space supernet, serial engine, rewritten backward (opt-in)", engine.SERIAL),
    "subnet-threaded": ("stand-alone small-space subnets, MXNet's depthwise backward", "ThreadedEnginePerDevice"),
    "subnet": ("stand-alone small-space subnets, serial engine, rewritten backward", engine.SERIAL),
    "supernet-half-cores": ("supernet, serial engine, rewritten backward, on MXNet's own thread count", engine.SERIAL),
    "small-supernet-half-cores": (
        "small-space supernet, serial engine, rewritten backward, MXNet's own thread count",
        engine.SERIAL,
    ),
    "subnet-half-cores": (
        "stand-alone small-space subnets, serial, rewritten backward, MXNet's own thread count",
        engine.SERIAL,
    ),
}
HALF_CORES = "-half-cores"
"""The suffix of the forms that run on the OpenMP threads MXNet 1.9 picks on x86 when nothing sets them."""
#: (form, the form it is compared with) for the record's "speed-up" column: a form may have several
COMPARISONS: list[tuple[str, str]] = [
    ("hybrid-plain", "imperative"),
    ("supernet-threaded", "imperative"),
    ("supernet", "supernet-threaded"),
    ("small-supernet", "small-supernet-threaded"),
    ("subnet", "subnet-threaded"),
    ("supernet", "supernet-half-cores"),
    ("small-supernet", "small-supernet-half-cores"),
    ("subnet", "subnet-half-cores"),
]
SUBNET_ARCHS = 4


def _one_form(form: str, steps: int, warmup: int, batch_size: int) -> float:
    """Images per second of ``form`` in this process (its engine was chosen by the parent)."""
    if form.endswith(HALF_CORES):  # MXNet loads as it does by itself: no thread count set before it loads
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, mxnet_import.MXNetImportHook)]
    import mxnet as mx
    import numpy as np
    from spos_deploy.search.sampling import UniformSampler

    from spos_deploy.data.batches import load_dataset, train_batches
    from spos_deploy.model_spec import ModelSpec
    from spos_deploy.nets.network import build_subnet
    from spos_deploy.nets.supernet import build_supernet
    from spos_deploy.space import SPACES, SearchSpace

    form = form.removesuffix(HALF_CORES)  # the same step; only the thread count differs
    supernet = form not in ("subnet", "subnet-threaded")
    space = SearchSpace(input_size=32, num_classes=10) if supernet and "small" not in form else SPACES["small"]
    ds = load_dataset("fashion-mnist:train", 32, train=True, limit=batch_size * (steps + warmup))
    batches = [(mx.nd.array(x), mx.nd.array(y)) for _, x, y in train_batches(ds, batch_size, 0, seed=0)]
    sampler = UniformSampler(space, np.random.default_rng(0))
    if supernet:
        if form in ("imperative", "hybrid-plain"):
            net = build_supernet(space, seed=0, mask_mode="multiply", crop=False)
        else:
            net = build_supernet(space, seed=0)
        if form != "imperative":
            net.hybridize_blocks(static_alloc=True, static_shape=True)
        b, c = sampler.sample(len(batches), np.arange(space.num_scales))
        nets = [lambda x, i=i: net(x, b[i].tolist(), c[i].tolist()) for i in range(len(batches))]
        params = [net.collect_params()]
    else:  # SUBNET_ARCHS networks, each trained for a share of the steps in turn (their own trainers)
        b, c = sampler.sample(SUBNET_ARCHS, np.arange(space.num_scales))
        subnets = [
            build_subnet(ModelSpec(space, b[k].tolist(), c[k].tolist()), seed=0, crop=True) for k in range(SUBNET_ARCHS)
        ]
        for s in subnets:
            s.hybridize(static_alloc=True, static_shape=True)
        nets = [subnets[i % SUBNET_ARCHS] for i in range(len(batches))]
        params = [s.collect_params() for s in subnets]
    trainers = [mx.gluon.Trainer(p, "nag", {"learning_rate": 0.05, "momentum": 0.9}) for p in params]
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    t0, images = 0.0, 0
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            mx.nd.waitall()
            t0 = time.perf_counter()
        with mx.autograd.record():
            loss = loss_fn(nets[i](x), y)
        loss.backward()
        trainers[0 if supernet else i % SUBNET_ARCHS].step(len(y), ignore_stale_grad=True)
        loss.wait_to_read()
        if i >= warmup:
            images += len(y)
    mx.nd.waitall()
    return images / (time.perf_counter() - t0)


def _measure(form: str, args: argparse.Namespace) -> float:
    env = dict(os.environ, **{engine.VARIABLE: FORMS[form][1]})
    if FORMS[form][1] == engine.SERIAL:  # the serial forms measure the rewritten backward, opt-in since 2026-12-07
        env[engine.REWRITE_VARIABLE] = "rewritten"
    if form.endswith(HALF_CORES):  # nothing set: what MXNet 1.9 does on x86 then (see _one_form)
        env.pop("MXNET_OMP_MAX_THREADS", None)
        env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--form", form]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"train_throughput: error: form {form} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="turns of every form (order reversed every other round)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per form and round")
    ap.add_argument("--warmup", type=int, default=8, help="untimed steps first (graph building, allocation)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--forms", nargs="+", choices=list(FORMS), default=list(FORMS))
    ap.add_argument("--tag", default="", help="suffix of the record's name (a run of some forms keeps its own)")
    ap.add_argument("--form", choices=list(FORMS), help=argparse.SUPPRESS)  # a child process: one measurement
    args = ap.parse_args(argv)
    if min(args.rounds, args.steps, args.batch_size) < 1 or args.warmup < 1:
        ap.error("--rounds, --steps, --warmup and --batch-size must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.form:
        print(json.dumps({"images_per_s": _one_form(args.form, args.steps, args.warmup, args.batch_size)}))
        return
    from spos_deploy.runtime import load

    runs: dict[str, list[float]] = {f: [] for f in args.forms}
    with load.probe(children=True) as probe:  # the forms' processes are this run's own work, not other load
        for r in range(args.rounds):
            for form in args.forms if r % 2 == 0 else reversed(args.forms):
                runs[form].append(_measure(form, args))
                print(f"round {r + 1}: {form} {runs[form][-1]:.1f} images/s", file=sys.stderr)
    median = {f: statistics.median(v) for f, v in runs.items()}
    # each round runs a form and its baseline minutes apart: the ratio within a round is what the VM's drift
    # between rounds (up to a third here) leaves intact
    paired = {
        f"{f} vs {base}": [a / b for a, b in zip(runs[f], runs[base])]
        for f, base in COMPARISONS
        if f in runs and base in runs
    }
    rows = []
    for f in args.forms:
        ratios = [
            f"{statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f}) vs {pair.split(' vs ')[1]}"
            for pair, r in paired.items()
            if pair.split(" vs ")[0] == f
        ]
        rows.append([f, FORMS[f][0], f"{median[f]:.1f}", f"{min(runs[f]):.1f}-{max(runs[f]):.1f}", "; ".join(ratios)])
    text = tabulate(
        rows,
        headers=["form", "training step", "images / s (median)", "range", "speed-up within a round: median (range)"],
        tablefmt="github",
        disable_numparse=True,
    )
    print(text)
    prov = provenance(STUDY, argv)
    result = {
        "benchmark": STUDY,
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "rounds": args.rounds,
        "images_per_s": runs,
        "median_images_per_s": median,
        "speedup_per_round": paired,
        "speedup": {f: statistics.median(r) for f, r in paired.items()},
    }
    md = (
        f"# Training throughput (Fashion-MNIST at 32 x 32, batch {args.batch_size})\n\n"
        f"{prov.where}, MXNet {prov.machine.get('mxnet')}. Supernet rows: the default OneShot space at 32 px (the "
        f"small-space rows: the small-image space) with uniformly sampled paths; subnet rows: {SUBNET_ARCHS} random "
        f"architectures of the small space, trained in turn. Each form in a fresh process, {args.steps} timed "
        f"steps after {args.warmup} warm-up steps, {args.rounds} interleaved rounds (order reversed every other "
        f"round); medians and ranges over rounds. A speed-up is a form's ratio to the form it is compared with within "
        f"each round (the pairs run one after the other), its median and range over rounds.\n\n"
        f"{text}\n"
    )
    write_record(STUDY, STUDY + (f"_{args.tag}" if args.tag else ""), result, md, prov=prov, load=probe.record())


if __name__ == "__main__":
    run_script("train_throughput", main)
