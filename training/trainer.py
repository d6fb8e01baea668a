"""Supernet and subnet training: one loop, checkpointed, resumable bit for bit, on one or many devices.

Determinism: the epoch order and augmentation come from (seed, epoch, step), MXNet's generator (dropout)
is re-seeded from (seed, global step) before every step, paths come from (seed, global step) or from the
strolling-evolution sampler whose state is checkpointed. A run resumed from a checkpoint therefore
repeats exactly the steps an uninterrupted run takes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import mxnet as mx
import numpy as np
from spos_deploy.search.bn_recalibration import batchnorms, bn_batches, evaluate, precise_bn
from spos_deploy.search.run_folder import check_output_folder, clean_stale, locked_output
from tqdm import tqdm

from spos_deploy.atomic import write_json, write_text
from spos_deploy.data.batches import load_dataset, steps_per_epoch, train_batches
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets import dwconv
from spos_deploy.nets.network import build_subnet
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.nets.weights import save_subnet
from spos_deploy.space import SearchSpace

from .checkpoint import check_same_run, checkpoints, load_checkpoint, save_checkpoint
from .distill import load_teacher, mix_targets
from .sampling import PathSampler, warmup_for

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TrainConfig:
    """What every training job takes; :class:`SupernetConfig` and :class:`SubnetConfig` add their own."""

    mode: ClassVar[str] = ""
    out: str
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
    augment: str = "crop-flip"
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
        return {"mode": self.mode, **asdict(self)}


@dataclass(kw_only=True)
class SupernetConfig(TrainConfig):
    """A supernet: block selection, channel-selection warm-up, optionally constrained paths."""

    mode: ClassVar[str] = "supernet"
    space: SearchSpace = field(default_factory=SearchSpace)
    cs_start_epoch: int = 0
    cs_warmup: bool = True
    cs_pace: int | None = None
    constraint: str = "none"  # none | random | evolution
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # flops, params, latency_ms, score
    flops_table: str | None = None
    latency_table: str | None = None
    eval_paths: int = 2
    bn_batches: int = 20
    block_weights: tuple[float, ...] | None = None  # relative sampling weights of the block types (None: uniform)
    path_rule: str = "uniform"  # uniform | sandwich: which paths one step trains (training.sampling.PATH_RULES)
    sandwich_random: int = 1  # uniform paths per sandwich step, beside the widest and the narrowest
    inplace_distill: bool = True  # sandwich: the other paths learn the widest path's probabilities
    init_from: str | None = None  # a trained supernet's run folder: its weights are the starting point
    teacher: str | None = None  # a trained subnet's run folder: its probabilities join the labels as targets
    kd_weight: float = 0.5  # the teacher's share of the targets

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["space"] = self.space.to_config()
        return d


@dataclass(kw_only=True)
class SubnetConfig(TrainConfig):
    """A fixed architecture from scratch (optionally with mixup)."""

    mode: ClassVar[str] = "subnet"
    spec: ModelSpec
    mixup: float = 0.0

    @property
    def space(self) -> SearchSpace:
        return self.spec.space

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["spec"] = self.spec.to_json()
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


def _no_wd_on_bn_and_bias(net) -> None:
    for name, p in net.collect_params().items():
        if name.endswith(("gamma", "beta", "bias")):
            p.wd_mult = 0.0


@dataclass
class _Job:
    """A training job once set up: data, network, optimizer, sampler and the position to continue from."""

    cfg: TrainConfig
    out: Path
    ctxs: list[mx.Context]
    kv: Any
    rank: int
    workers: int
    space: SearchSpace
    train_ds: Any
    val_ds: Any
    net: Any
    trainer: Any
    sampler: PathSampler | None
    steps_epoch: int
    state: dict[str, Any]
    teacher: Any = None
    loss_fn: Any = field(default_factory=lambda: mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False))


@dataclass
class _Tally:
    """One epoch's running numbers."""

    losses: list[float] = field(default_factory=list)
    correct: int = 0
    seen: int = 0
    sampled: list[dict[str, float]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training job; returns the final metrics.

    Everything the user gave is checked (the output path, the data, the constraints) before the run folder
    is created; the folder is locked for the whole run, so a second job into it is refused.
    """
    out = Path(cfg.out)
    check_output_folder(out)
    ctxs = _contexts(cfg)
    kv = mx.kv.create(cfg.kvstore) if cfg.kvstore.startswith("dist") else cfg.kvstore
    rank, workers = (kv.rank, kv.num_workers) if not isinstance(kv, str) else (0, 1)
    if rank == 0 and not cfg.resume and checkpoints(out):
        raise BadInputError(f"{out}: holds checkpoints; pass --resume to continue or choose another --out")
    lock = locked_output(out, "spos-train") if rank == 0 else contextlib.nullcontext()
    job = _setup(cfg, out, ctxs, kv, rank, workers)
    with lock:
        _resume(job)
        for epoch in range(job.state["epoch"], cfg.epochs):
            if not _run_epoch(job, epoch):
                break
        return _finish(job)


def _load_data(cfg: TrainConfig, space: SearchSpace) -> tuple[Any, Any]:
    train_ds = load_dataset(cfg.data, space.input_size, train=True, limit=cfg.train_limit, augment=cfg.augment)
    val_ds = load_dataset(cfg.val_data, space.input_size, train=False, limit=cfg.val_limit) if cfg.val_data else None
    if train_ds.num_classes > space.num_classes:
        raise BadInputError(f"{cfg.data}: {train_ds.num_classes} classes but the model has {space.num_classes}")
    return train_ds, val_ds


def _setup(cfg: TrainConfig, out: Path, ctxs: list[mx.Context], kv: Any, rank: int, workers: int) -> _Job:
    """Data, network, optimizer and sampler; nothing is written yet."""
    space = cfg.space
    train_ds, val_ds = _load_data(cfg, space)
    sampler = teacher = None
    if isinstance(cfg, SupernetConfig):
        teacher = load_teacher(cfg.teacher, space, ctxs[0]) if cfg.teacher else None
        if teacher is not None and val_ds is not None and rank == 0:
            log.info(
                "teacher %s: top-1 %.4f on the validation images",
                cfg.teacher,
                evaluate(teacher.net, val_ds, 256, ctxs[0]),
            )
        net = build_supernet(space, seed=cfg.seed, ctx=ctxs)
        if cfg.init_from:
            _start_from(net, cfg.init_from, space, ctxs)
        if cfg.hybridize:
            net.hybridize_blocks(static_alloc=True, static_shape=True)
        schedule = warmup_for(space, cfg.cs_start_epoch, cfg.cs_warmup, cfg.cs_pace)
        sampler = PathSampler(
            space,
            schedule,
            cfg.seed,
            cfg.constraint,
            cfg.bounds,
            cfg.flops_table,
            cfg.latency_table,
            tuple(cfg.block_weights) if cfg.block_weights else None,
            cfg.path_rule,
            cfg.sandwich_random,
        )
    else:
        net = build_subnet(cfg.spec, seed=cfg.seed, ctx=ctxs, crop=True)
        if cfg.hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
    _no_wd_on_bn_and_bias(net)
    if isinstance(cfg, SupernetConfig) and cfg.path_rule == "sandwich":
        net.collect_params().setattr("grad_req", "add")  # a step's paths add their gradients; zeroed after it
    # Distributed: servers only add gradients; every worker applies the same update to the same sum, so the
    # per-step learning rate set here reaches the optimizer (it would not on the servers).
    trainer = mx.gluon.Trainer(
        net.collect_params(),
        "nag",
        {"learning_rate": cfg.lr, "momentum": cfg.momentum, "wd": cfg.wd},
        kvstore=kv,
        update_on_kvstore=False if workers > 1 else None,
    )
    steps_epoch = steps_per_epoch(len(train_ds) // workers, cfg.batch_size)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "global_step": 0, "history": [], "sampler": {}}
    return _Job(
        cfg, out, ctxs, kv, rank, workers, space, train_ds, val_ds, net, trainer, sampler, steps_epoch, state, teacher
    )


def _start_from(net: Any, ref: str, space: SearchSpace, ctxs: list[mx.Context]) -> None:
    """The weights of the trained supernet ``ref`` (its space checked) as ``net``'s starting point: few-shot NAS
    splits a trained one-shot supernet into sub-supernets, each trained on with paths of its own region only."""
    from spos_deploy.search.evaluator import load_supernet, resolve_supernet

    try:
        run = resolve_supernet(ref, space)
        load_supernet(run)  # one line for weights of another space, before ours are touched
    except BadInputError as e:
        raise BadInputError(str(e).replace("--supernet", "--init-from", 1)) from None
    net.load_parameters(str(run.params), ctx=ctxs)


def _resume(job: _Job) -> None:
    """Continue from the last checkpoint (with ``--resume``), then write the run's config and step log."""
    cfg, out = job.cfg, job.out
    if cfg.resume and job.rank == 0:
        clean_stale(out)  # staging folders of a killed run: partial checkpoints, weights
        check_same_run(out, cfg.to_json())
    found = checkpoints(out)
    if cfg.resume and found:
        job.state = load_checkpoint(found[-1], job.net, job.trainer, job.ctxs)
        if job.sampler is not None:
            job.sampler.load_state(job.state.get("sampler", {}))
        log.info("resumed from %s (epoch %d, step %d)", found[-1].name, job.state["epoch"], job.state["step"])
    elif cfg.resume:
        log.info("nothing to resume in %s: starting", out)
    if job.workers > 1:
        _sync_initial_weights(job.trainer, job.kv)
    if job.rank == 0:
        write_json(out / "config.json", cfg.to_json())
        _truncate_steps(out / "steps.csv", job.state["global_step"])


def _run_epoch(job: _Job, epoch: int) -> bool:
    """One epoch (or its rest, after a resume); False when ``max_steps`` ended the run inside it."""
    cfg, state = job.cfg, job.state
    start = state["step"] if epoch == state["epoch"] else 0
    tally = _Tally()
    bar = tqdm(
        total=job.steps_epoch,
        initial=start,
        desc=f"{cfg.mode} epoch {epoch}",
        unit="step",
        disable=not cfg.progress or job.rank != 0,
    )
    try:
        for step, x, y in train_batches(job.train_ds, cfg.batch_size, epoch, cfg.seed, start, job.rank, job.workers):
            g = epoch * job.steps_epoch + step
            if cfg.max_steps is not None and g >= cfg.max_steps:
                return False
            _step(job, epoch, step, g, x, y, tally)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(tally.losses[-20:]):.3f}")
    finally:
        bar.close()
    _end_epoch(job, epoch, tally)
    return True


def _step(job: _Job, epoch: int, step: int, g: int, x: np.ndarray, y: np.ndarray, tally: _Tally) -> None:
    """One optimizer step on global step ``g`` (seeded by it, so a resumed run repeats it exactly)."""
    cfg, sampler = job.cfg, job.sampler
    mx.random.seed(cfg.seed * 1_000_003 + g)
    job.trainer.set_learning_rate(lr_at(cfg, g, job.steps_epoch))
    targets = _soft_targets(y, job.space.num_classes, cfg.label_smoothing)
    if job.teacher is not None:
        targets = mix_targets(targets, job.teacher.probabilities(x), cfg.kd_weight)
    mixup = cfg.mixup if isinstance(cfg, SubnetConfig) else 0.0
    if mixup > 0:
        rng_mix = np.random.default_rng([cfg.seed, g, 99])
        lam = rng_mix.beta(mixup, mixup)
        perm = rng_mix.permutation(len(y))
        x = lam * x + (1 - lam) * x[perm]
        targets = lam * targets + (1 - lam) * targets[perm]
    paths = sampler.step_paths(epoch, g) if sampler is not None else [None]
    if sampler is not None:
        tally.sampled.extend(sampler.describe(b, c) for b, c in paths)
    xs = mx.gluon.utils.split_and_load(x, job.ctxs, even_split=False)
    ts = mx.gluon.utils.split_and_load(targets, job.ctxs, even_split=False)
    distill = isinstance(cfg, SupernetConfig) and cfg.path_rule == "sandwich" and cfg.inplace_distill
    outs, loss_sum = _train_paths(job, paths, xs, ts, distill)
    # dist_sync sums the workers' gradients: normalised by the global batch, ``--lr`` means what it means for
    # one process with ``batch_size * workers`` images per step. A sandwich step sums its paths' gradients
    # (BigNAS): each path moves the weights as far as a uniform step would.
    job.trainer.step(len(y) * job.workers, ignore_stale_grad=sampler is not None)
    if len(paths) > 1:
        job.net.collect_params().zero_grad()  # the sandwich's gradients add up over its paths (grad_req "add")
    loss = loss_sum / (len(y) * len(paths))
    pred = np.concatenate([o.argmax(axis=1).asnumpy() for o in outs])
    tally.correct += int((pred == y).sum())
    tally.seen += len(y)
    tally.losses.append(loss)
    if job.rank == 0:
        with (job.out / "steps.csv").open("a", newline="") as f:
            f.write(_step_line(g, epoch, step, loss))
    job.state.update(epoch=epoch, step=step + 1, global_step=g + 1)
    if cfg.checkpoint_every and (g + 1) % cfg.checkpoint_every == 0 and job.rank == 0:
        _save(job)


def _train_paths(job: _Job, paths: list[Any], xs: list[Any], ts: list[Any], distill: bool) -> tuple[list[Any], float]:
    """Forward and backward every path on every device slice, one path at a time (a hybridized block with
    static memory must not run forward twice before its backward); returns the last path's outputs (a uniform
    path unless ``--sandwich-random 0``: the training accuracy the epoch reports) and the summed loss against the
    labels.

    With in-place distillation (BigNAS) the first path, the widest, learns the targets and every other path
    learns its probabilities, held constant: narrow paths are pulled towards what the wide one predicts
    instead of towards one-hot labels they cannot fit as well.
    """
    total = 0.0
    teacher: list[Any] | None = None
    outs: list[Any] = []
    for i, path in enumerate(paths):
        targets = teacher if (distill and i > 0) else ts
        with mx.autograd.record():
            outs = [job.net(a) if path is None else job.net(a, path[0], path[1]) for a in xs]
            ls = [job.loss_fn(o, t) for o, t in zip(outs, targets)]
        for ll in ls:
            ll.backward()
        if targets is not ts:  # the record reports every path's loss against the labels, whatever it learned
            ls = [job.loss_fn(o, t) for o, t in zip(outs, ts)]
        total += sum(float(ll.sum().asscalar()) for ll in ls)
        if distill and i == 0:
            teacher = [mx.nd.softmax(o, axis=1).copy() for o in outs]
    return outs, total


def _step_line(g: int, epoch: int, step: int, loss: float) -> str:
    """One row of ``steps.csv``; always LF, so appended and rewritten rows end alike."""
    return f"{g},{epoch},{step},{loss:.8f}\n"


def _end_epoch(job: _Job, epoch: int, tally: _Tally) -> None:
    """Epoch metrics, validation, checkpoint, metrics.json and the sampled-paths plot."""
    cfg, sampler, state = job.cfg, job.sampler, job.state
    entry = {
        "epoch": epoch,
        "loss": float(np.mean(tally.losses)) if tally.losses else None,
        "train_acc": tally.correct / max(tally.seen, 1),
        "lr": lr_at(cfg, (epoch + 1) * job.steps_epoch - 1, job.steps_epoch),
        "seconds": time.time() - tally.t0,
        "images_per_second": tally.seen / max(time.time() - tally.t0, 1e-9),
        "depthwise_backward": "rewritten" if dwconv.rewrite_enabled() else "mxnet",  # the engine: nets.engine
    }
    if tally.sampled:
        entry["sampled"] = {k: [s[k] for s in tally.sampled] for k in tally.sampled[0]}
        entry["allowed_channels"] = sampler.schedule.allowed(epoch).tolist()
    if job.val_ds is not None and job.rank == 0:
        entry["val_acc"] = _validate(job)
    history = state["history"]
    history.append(entry)
    state.update(epoch=epoch + 1, step=0, history=history)
    if job.rank != 0:
        return
    _save(job)
    write_json(job.out / "metrics.json", {"history": _summary(history)})
    if sampler is not None:
        from .plots import run_distribution

        run_distribution(_summary(history), job.out / "sampled.png")
    val = entry.get("val_acc")
    log.info(
        "epoch %d: loss %.4f train %.4f val %s",
        epoch,
        entry["loss"] or float("nan"),
        entry["train_acc"],
        "none" if val is None else f"{val:.4f}",
    )


def _finish(job: _Job) -> dict[str, Any]:
    """Final weights (and model.json of a subnet), each written atomically."""
    out, cfg = job.out, job.cfg
    if job.workers > 1:
        save_subnet(job.net, out / f"final.rank{job.rank}.params")  # evidence that workers agree
    if job.rank == 0:
        save_subnet(job.net, out / ("supernet.params" if isinstance(cfg, SupernetConfig) else "model.params"))
        if isinstance(cfg, SubnetConfig):
            write_json(out / "model.json", cfg.spec.to_json())
    history = job.state["history"]
    return {"history": _summary(history), "global_step": job.state["global_step"], "rank": job.rank}


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


def _validate(job: _Job) -> float:
    """Mean top-1 of ``eval_paths`` random paths, each with its BN statistics computed exactly for it.

    Precise BN needs forward hooks, which fire only in imperative blocks: the choice blocks are un-hybridized
    for the evaluation and hybridized again afterwards (the graphs are rebuilt at the next step).
    """
    cfg, net, sampler, ctx = job.cfg, job.net, job.sampler, job.ctxs[0]
    if sampler is None:
        return evaluate(net, job.val_ds, 256, ctx)
    assert isinstance(cfg, SupernetConfig)
    rng = np.random.default_rng([cfg.seed, 12345])
    bn = bn_batches(job.train_ds, cfg.bn_batches * cfg.batch_size, cfg.batch_size, cfg.seed + 1)
    accs = []
    allowed = sampler.schedule.allowed(cfg.epochs - 1)
    if cfg.hybridize:
        net.hybridize_blocks(False)
    try:
        for _ in range(cfg.eval_paths):
            b, c = sampler.uniform.draw(rng, 1, allowed)
            blocks, channels = b[0], c[0]
            fwd = lambda a, b=blocks, c=channels: net(a, b, c)  # noqa: E731
            path = [net.choice_block(i, int(b)) for i, b in enumerate(blocks)]
            precise_bn(fwd, batchnorms(net.stem, *path, net.head), bn, ctx)
            accs.append(evaluate(fwd, job.val_ds, 256, ctx))
    finally:
        if cfg.hybridize:
            net.hybridize_blocks(True, static_alloc=True, static_shape=True)
    return float(np.mean(accs))


def _save(job: _Job) -> None:
    st = dict(job.state)
    st["sampler"] = job.sampler.state() if job.sampler is not None else {}
    save_checkpoint(job.out, job.net, job.trainer, st, job.cfg.keep)


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
    """Drop step lines after the checkpoint a run resumes from (those steps are taken again); the rewrite
    is atomic and normalises every line to LF."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and int(line.split(",")[0]) < global_step]
    write_text(path, "".join(line + "\n" for line in keep))
