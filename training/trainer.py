"""Supernet and subnet training: one loop, checkpointed, resumable bit for bit, on one or many devices.

Determinism: the epoch order and augmentation come from (seed, epoch, step), MXNet's generator (dropout)
is re-seeded from (seed, global step) before every step, paths come from (seed, global step) or from the
strolling-evolution sampler whose state is checkpointed. A run resumed from a checkpoint therefore
repeats exactly the steps an uninterrupted run takes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from tqdm import tqdm

from search.bn_recalibration import batchnorms, bn_batches, evaluate, precise_bn
from search.constraints import Constraint, metric_functions
from spos_deploy.atomic import write_json
from spos_deploy.data.batches import load_dataset, steps_per_epoch, train_batches
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import build_subnet
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.space import SearchSpace

from .checkpoint import checkpoints, load_checkpoint, save_checkpoint
from .sampling import RejectionSampler, StrollingEvolution, UniformSampler, warmup_for

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    mode: str  # "supernet" or "subnet"
    out: str
    spec: ModelSpec | None = None  # subnet
    space: SearchSpace | None = None  # supernet
    data: str = "fashion-mnist:train"
    val_data: str | None = "fashion-mnist:test"
    train_limit: int | None = None
    val_limit: int | None = None
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    wd: float = 4e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cs_start_epoch: int = 0
    cs_warmup: bool = True
    cs_pace: int | None = None
    constraint: str = "none"  # none | random | evolution
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # flops, params, latency_ms, score
    flops_table: str | None = None
    latency_table: str | None = None
    eval_paths: int = 2
    bn_batches: int = 20
    checkpoint_every: int = 0  # steps; 0: end of every epoch only
    keep: int = 3
    resume: bool = False
    seed: int = 0
    gpus: list[int] = field(default_factory=list)
    kvstore: str = "device"
    hybridize: bool = True
    max_steps: int | None = None  # stop after this global step (smoke runs and tests)
    progress: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_json() if self.spec else None
        d["space"] = self.space.to_config() if self.space else None
        return d


def lr_at(cfg: TrainConfig, step: int, steps_epoch: int) -> float:
    """Linear warm-up then cosine decay to 0, per step."""
    total = cfg.epochs * steps_epoch
    warm = int(cfg.warmup_epochs * steps_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def _contexts(cfg: TrainConfig) -> list[mx.Context]:
    if cfg.gpus:
        if mx.context.num_gpus() < max(cfg.gpus) + 1:
            raise BadInputError(f"--gpus {cfg.gpus}: this MXNet build sees {mx.context.num_gpus()} GPU(s)")
        return [mx.gpu(i) for i in cfg.gpus]
    return [mx.cpu()]


def _soft_targets(labels: np.ndarray, classes: int, smoothing: float) -> np.ndarray:
    t = np.full((len(labels), classes), smoothing / classes, np.float32)
    t[np.arange(len(labels)), labels] += 1.0 - smoothing
    return t


class PathSampler:
    """Paths for supernet steps: uniform, or constrained (rejection / strolling evolution), warm-up aware."""

    def __init__(self, cfg: TrainConfig, space: SearchSpace):
        self.cfg, self.space = cfg, space
        self.schedule = warmup_for(space, cfg.cs_start_epoch, cfg.cs_warmup, cfg.cs_pace)
        self.metrics = metric_functions(space, cfg.flops_table, cfg.latency_table)
        self.evolution: StrollingEvolution | None = None
        if cfg.constraint != "none":
            if not cfg.bounds:
                raise BadInputError(f"--constraint {cfg.constraint} needs bounds (e.g. --flops-range)")
            missing = [k for k in cfg.bounds if k not in self.metrics]
            if missing:
                raise BadInputError(f"no table for constraint(s) {missing}: pass --latency-table for latency_ms")
            self.constraint = Constraint(self.metrics, cfg.bounds)
        if cfg.constraint == "evolution":
            if len(cfg.bounds) != 2:
                raise BadInputError("--constraint evolution needs exactly two bounded metrics (e.g. FLOPs and params)")
            self.evo_rng = np.random.default_rng([cfg.seed, 7])
            self.evolution = StrollingEvolution(UniformSampler(space, self.evo_rng), self.constraint)

    def sample(self, epoch: int, global_step: int) -> tuple[np.ndarray, np.ndarray]:
        allowed = self.schedule.allowed(epoch)
        if self.evolution is not None:
            b, c = self.evolution.sample_one(allowed)
            return b, c
        base = UniformSampler(self.space, np.random.default_rng([self.cfg.seed, global_step]))
        if self.cfg.constraint == "random":
            b, c = RejectionSampler(base, self.constraint).sample(1, allowed)
        else:
            b, c = base.sample(1, allowed)
        return b[0], c[0]

    def state(self) -> dict[str, Any]:
        if self.evolution is None:
            return {}
        ev = self.evolution
        return {
            "step": ev.state["step"],
            "dead": ev.state["dead"],
            "rng": self.evo_rng.bit_generator.state,
            "pool_b": None if ev.pool_b is None else ev.pool_b.tolist(),
            "pool_c": None if ev.pool_c is None else ev.pool_c.tolist(),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if self.evolution is None or not st:
            return
        ev = self.evolution
        ev.state["step"], ev.state["dead"] = st["step"], st["dead"]
        self.evo_rng.bit_generator.state = st["rng"]
        ev.pool_b = None if st["pool_b"] is None else np.array(st["pool_b"])
        ev.pool_c = None if st["pool_c"] is None else np.array(st["pool_c"])

    def describe(self, blocks: np.ndarray, channels: np.ndarray) -> dict[str, float]:
        return {k: float(f(blocks[None], channels[None])[0]) for k, f in self.metrics.items()}


def _no_wd_on_bn_and_bias(net) -> None:
    for name, p in net.collect_params().items():
        if name.endswith(("gamma", "beta", "bias")):
            p.wd_mult = 0.0


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training job; returns the final metrics."""
    out = Path(cfg.out)
    ctxs = _contexts(cfg)
    kv = mx.kv.create(cfg.kvstore) if cfg.kvstore.startswith("dist") else cfg.kvstore
    rank, workers = (kv.rank, kv.num_workers) if not isinstance(kv, str) else (0, 1)
    if rank == 0:
        if out.exists() and not cfg.resume and checkpoints(out):
            raise BadInputError(f"{out}: holds checkpoints; pass --resume to continue or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
    space = cfg.spec.space if cfg.mode == "subnet" else cfg.space
    assert space is not None
    train_ds = load_dataset(cfg.data, space.input_size, train=True, limit=cfg.train_limit)
    val_ds = load_dataset(cfg.val_data, space.input_size, train=False, limit=cfg.val_limit) if cfg.val_data else None
    if train_ds.num_classes > space.num_classes:
        raise BadInputError(f"{cfg.data}: {train_ds.num_classes} classes but the model has {space.num_classes}")

    sampler = None
    if cfg.mode == "supernet":
        net = build_supernet(space, seed=cfg.seed, ctx=ctxs)
        if cfg.hybridize:
            net.hybridize_blocks(static_alloc=True, static_shape=True)
        sampler = PathSampler(cfg, space)
    else:
        net = build_subnet(cfg.spec, seed=cfg.seed, ctx=ctxs, crop=True)
        if cfg.hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
    _no_wd_on_bn_and_bias(net)
    # Distributed: servers only add gradients; every worker applies the same update to the same sum, so the
    # per-step learning rate set here reaches the optimizer (it would not on the servers).
    trainer = mx.gluon.Trainer(
        net.collect_params(),
        "nag",
        {"learning_rate": cfg.lr, "momentum": cfg.momentum, "wd": cfg.wd},
        kvstore=kv,
        update_on_kvstore=False if workers > 1 else None,
    )
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    per_worker_batch = cfg.batch_size
    steps_epoch = steps_per_epoch(len(train_ds) // workers, per_worker_batch)

    state: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "sampler": {}}
    found = checkpoints(out)
    if cfg.resume and found:
        state = load_checkpoint(found[-1], net, trainer, ctxs)
        if sampler is not None:
            sampler.load_state(state.get("sampler", {}))
        log.info("resumed from %s (epoch %d, step %d)", found[-1].name, state["epoch"], state["step"])
    elif cfg.resume:
        log.info("nothing to resume in %s: starting", out)
    if workers > 1:
        _sync_initial_weights(trainer, kv)
    if rank == 0:
        write_json(out / "config.json", cfg.to_json())
        _truncate_steps(out / "steps.csv", state["global_step"])

    history: list[dict[str, Any]] = state["history"]
    done = False
    for epoch in range(state["epoch"], cfg.epochs):
        start = state["step"] if epoch == state["epoch"] else 0
        t0 = time.time()
        losses, correct, seen, sampled = [], 0, 0, []
        bar = tqdm(
            total=steps_epoch,
            initial=start,
            desc=f"{cfg.mode} epoch {epoch}",
            unit="step",
            disable=not cfg.progress or rank != 0,
        )
        for step, x, y in train_batches(train_ds, per_worker_batch, epoch, cfg.seed, start, rank, workers):
            g = epoch * steps_epoch + step
            if cfg.max_steps is not None and g >= cfg.max_steps:
                done = True
                break
            mx.random.seed(cfg.seed * 1_000_003 + g)
            trainer.set_learning_rate(lr_at(cfg, g, steps_epoch))
            targets = _soft_targets(y, space.num_classes, cfg.label_smoothing)
            if cfg.mixup > 0:
                rng_mix = np.random.default_rng([cfg.seed, g, 99])
                lam = rng_mix.beta(cfg.mixup, cfg.mixup)
                perm = rng_mix.permutation(len(y))
                x = lam * x + (1 - lam) * x[perm]
                targets = lam * targets + (1 - lam) * targets[perm]
            if sampler is not None:
                blocks, channels = sampler.sample(epoch, g)
                sampled.append(sampler.describe(blocks, channels))
                forward = lambda a, b=blocks, c=channels: net(a, b, c)  # noqa: E731
            else:
                forward = net
            xs = mx.gluon.utils.split_and_load(x, ctxs, even_split=False)
            ts = mx.gluon.utils.split_and_load(targets, ctxs, even_split=False)
            with mx.autograd.record():
                outs = [forward(a) for a in xs]
                ls = [loss_fn(o, t) for o, t in zip(outs, ts)]
            for ll in ls:
                ll.backward()
            trainer.step(len(y), ignore_stale_grad=sampler is not None)
            loss = float(sum(ll.sum().asscalar() for ll in ls) / len(y))
            pred = np.concatenate([o.argmax(axis=1).asnumpy() for o in outs])
            correct += int((pred == y).sum())
            seen += len(y)
            losses.append(loss)
            if rank == 0:
                with (out / "steps.csv").open("a", newline="") as f:
                    csv.writer(f).writerow([g, epoch, step, f"{loss:.8f}"])
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            state.update(epoch=epoch, step=step + 1, global_step=g + 1)
            if cfg.checkpoint_every and (g + 1) % cfg.checkpoint_every == 0 and rank == 0:
                _save(out, net, trainer, state, sampler, cfg)
        bar.close()
        if done:
            break
        entry = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else None,
            "train_acc": correct / max(seen, 1),
            "lr": lr_at(cfg, (epoch + 1) * steps_epoch - 1, steps_epoch),
            "seconds": time.time() - t0,
            "images_per_second": seen / max(time.time() - t0, 1e-9),
        }
        if sampled:
            entry["sampled"] = {k: [s[k] for s in sampled] for k in sampled[0]}
            entry["allowed_channels"] = sampler.schedule.allowed(epoch).tolist()
        if val_ds is not None and rank == 0:
            entry["val_acc"] = _validate(cfg, net, sampler, space, train_ds, val_ds, ctxs[0])
        history.append(entry)
        state.update(epoch=epoch + 1, step=0, history=history)
        if rank == 0:
            _save(out, net, trainer, state, sampler, cfg)
            write_json(out / "metrics.json", {"history": _summary(history)})
            if sampler is not None:
                from .plots import run_distribution

                run_distribution(_summary(history), out / "sampled.png")
            log.info(
                "epoch %d: loss %.4f train %.4f val %s",
                epoch,
                entry["loss"] or float("nan"),
                entry["train_acc"],
                entry.get("val_acc"),
            )
    if workers > 1:
        out.mkdir(parents=True, exist_ok=True)
        net.save_parameters(str(out / f"final.rank{rank}.params"))  # evidence that workers agree
    if rank == 0:
        net.save_parameters(str(out / ("supernet.params" if cfg.mode == "supernet" else "model.params")))
        if cfg.mode == "subnet":
            (out / "model.json").write_text(json.dumps(cfg.spec.to_json(), indent=1) + "\n")
    return {"history": _summary(history), "global_step": state["global_step"], "rank": rank}


def _sync_initial_weights(trainer: mx.gluon.Trainer, kv) -> None:
    """Broadcast the initial weights and wait for every worker before the first gradient is pushed.

    Gluon's Trainer does this broadcast lazily in its first step, then all-reduces gradients on the same
    keys. Nothing orders a worker's broadcast pull before its first gradient push, so a server could answer
    the pull with the summed gradient: about one run in four, one worker's stem weights were replaced by it.
    """
    trainer._init_kvstore()  # noqa: SLF001 - MXNet has no public way to initialise the kvstore early
    trainer._init_params()  # noqa: SLF001
    mx.nd.waitall()
    kv._barrier()  # noqa: SLF001 - the 1.x kvstore exposes its barrier only so


def _validate(cfg, net, sampler, space, train_ds, val_ds, ctx) -> float:
    """Mean top-1 of ``eval_paths`` random paths, each with its BN statistics computed exactly for it.

    Precise BN needs forward hooks, which fire only in imperative blocks: the choice blocks are un-hybridized
    for the evaluation and hybridized again afterwards (the graphs are rebuilt at the next step).
    """
    if sampler is None:
        return evaluate(net, val_ds, 256, ctx)
    rng = np.random.default_rng([cfg.seed, 12345])
    bn = bn_batches(train_ds, cfg.bn_batches * cfg.batch_size, cfg.batch_size, cfg.seed + 1)
    accs = []
    allowed = sampler.schedule.allowed(cfg.epochs - 1)
    if cfg.hybridize:
        net.hybridize_blocks(False)
    try:
        for _ in range(cfg.eval_paths):
            blocks = rng.integers(0, space.num_blocks, space.num_positions)
            channels = allowed[rng.integers(0, len(allowed), space.num_positions)]
            fwd = lambda a, b=blocks, c=channels: net(a, b, c)  # noqa: E731
            path = [net.choice_block(i, int(b)) for i, b in enumerate(blocks)]
            precise_bn(fwd, batchnorms(net.stem, *path, net.head), bn, ctx)
            accs.append(evaluate(fwd, val_ds, 256, ctx))
    finally:
        if cfg.hybridize:
            net.hybridize_blocks(True, static_alloc=True, static_shape=True)
    return float(np.mean(accs))


def _save(out: Path, net, trainer, state: dict[str, Any], sampler, cfg: TrainConfig) -> None:
    st = dict(state)
    st["sampler"] = sampler.state() if sampler is not None else {}
    save_checkpoint(out, net, trainer, st, cfg.keep)


def _summary(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History with the per-step samples reduced to statistics (the raw values stay in the checkpoint)."""
    out = []
    for h in history:
        h = dict(h)
        if "sampled" in h:
            h["sampled"] = {
                k: {
                    "mean": float(np.mean(v)),
                    "std": float(np.std(v)),
                    "min": float(np.min(v)),
                    "max": float(np.max(v)),
                    "values": v,
                }
                for k, v in h["sampled"].items()
            }
        out.append(h)
    return out


def _truncate_steps(path: Path, global_step: int) -> None:
    """Drop step lines after the checkpoint a run resumes from (those steps are taken again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and int(line.split(",")[0]) < global_step]
    path.write_text("".join(line + "\n" for line in keep))
