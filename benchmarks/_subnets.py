"""What ``supernet_ranking`` and ``search_quality`` share: the small space, the one stand-alone training
recipe with its run-folder cache, the supernet and latency table they start from, and small utilities.

The stand-alone cache is keyed by recipe and architecture (``runs/subnets/<recipe>/<arch>/``), so an
architecture trained by one benchmark is not trained again by the other, and a smoke run (``--quick``, another
recipe) never mixes with a full one. The trainings go through :func:`spos_deploy.training.subnets.train_runs`
(what ``spos-train subnets`` runs): here one after the other, or with ``--ray [ADDRESS]`` as retried Ray tasks
on a local instance or a cluster. Every step resumes: a finished run folder holds ``result.json``, a partial one
is continued from its last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.record import ROOT
from spos_deploy.atomic import write_json
from spos_deploy.cluster import LOCAL
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import SPACES

SPACE = SPACES["small"]
RUNS = ROOT / "runs"
SUBNET_CACHE = RUNS / "subnets"
TABLE_NAME = "latency_small_int8.json"

log = logging.getLogger("benchmarks")


# ---- logging, command line, errors -------------------------------------------------------------------------
def setup_logging() -> None:
    """Progress (ours and the trainer's) on stderr with a time stamp, so a long run can be followed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(lambda r: "already been marked for quantization" not in r.getMessage())  # int8 export noise
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def fail(message: str) -> None:
    """One clear line and exit status 2, like the spos-* commands."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_data() -> None:
    """Fail at once (not after an hour of training) when Fashion-MNIST is not installed."""
    from spos_deploy.data.images import fashion_mnist

    try:
        for split in ("train", "test"):
            fashion_mnist(split, SPACE.input_size, limit=1)
    except BadInputError as e:
        fail(f"Fashion-MNIST is needed (train and test splits): {e}")


def tool(name: str) -> str:
    """The console script installed next to this interpreter (the project's venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def run_tool(cmd: list[str]) -> None:
    """A spos-* command as a subprocess (its output passes through to our stderr); a failure ends the run."""
    log.info("running %s", shlex.join(cmd))
    res = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
    if res.returncode != 0:
        fail(f"{Path(cmd[0]).name} failed (exit {res.returncode}): {shlex.join(cmd)}")


def finite_or_none(v: float | None) -> float | None:
    """JSON has no NaN: undefined statistics (ties, too few points) are recorded as null."""
    return None if v is None or not np.isfinite(v) else float(v)


class StepTimes:
    """Seconds spent per step, accumulated over resumed sessions in ``OUT/step_times.json``."""

    def __init__(self, out: Path):
        self.path = out / "step_times.json"
        self.times: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("== %s", name)
        t0 = time.time()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.time() - t0
            write_json(self.path, self.times)


# ---- architectures -----------------------------------------------------------------------------------------
def arch_key(blocks: Sequence[int], channels: Sequence[int]) -> str:
    """A readable file-name-safe key: block ids (0-3) then channel ids (0-9), one digit per position."""
    return "b" + "".join(str(int(b)) for b in blocks) + "_c" + "".join(str(int(c)) for c in channels)


def spec_of(blocks: Sequence[int], channels: Sequence[int], name: str | None = None) -> ModelSpec:
    blocks, channels = tuple(int(b) for b in blocks), tuple(int(c) for c in channels)
    return ModelSpec(SPACE, blocks, channels, name=name or arch_key(blocks, channels))


def flops_table() -> Any:
    """Exact FLOPs/params of the small space (counted from real graphs in a few seconds)."""
    from spos_deploy.tables.flops.build import build_flops_table

    return build_flops_table(SPACE, progress=False)


def describe_archs(table: Any, counts: Any, blocks: np.ndarray, channels: np.ndarray) -> list[dict[str, Any]]:
    """Key, choices, predicted latency, FLOPs and params of each architecture (the report's table columns)."""
    pred = table.predict(blocks, channels)
    flops, params = counts.count(blocks, channels)
    return [
        {
            "key": arch_key(b, c),
            "blocks": [int(v) for v in b],
            "channels": [int(v) for v in c],
            "predicted_ms": float(p),
            "flops": int(f),
            "params": int(n),
        }
        for b, c, p, f, n in zip(blocks, channels, pred, flops, params)
    ]


# ---- the stand-alone recipe ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """The one short from-scratch schedule every compared architecture gets (validated on the test set)."""

    epochs: int = 2
    train_limit: int = 20000
    val_limit: int = 10000
    batch_size: int = 128
    lr: float = 0.1
    warmup_epochs: float = 0.2
    seed: int = 0

    @property
    def tag(self) -> str:
        """The cache folder name: another recipe never reuses (or resumes) this one's runs."""
        return (
            f"e{self.epochs}_n{self.train_limit}_v{self.val_limit}_b{self.batch_size}_lr{self.lr:g}"
            f"_w{self.warmup_epochs:g}_s{self.seed}"
        )


QUICK_RECIPE = Recipe(epochs=1, train_limit=512, val_limit=256)


def add_recipe_args(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("stand-alone training (the same recipe in both benchmarks)")
    g.add_argument("--epochs", type=int, help=f"default {Recipe.epochs} ({QUICK_RECIPE.epochs} with --quick)")
    g.add_argument(
        "--train-limit",
        type=int,
        help=f"training images (default {Recipe.train_limit}, --quick {QUICK_RECIPE.train_limit})",
    )
    g.add_argument(
        "--val-limit", type=int, help=f"test images (default {Recipe.val_limit}, --quick {QUICK_RECIPE.val_limit})"
    )
    g.add_argument(
        "--train-seed",
        type=int,
        help=f"seed of the stand-alone trainings (default {Recipe.seed})",
    )
    g.add_argument("--subnet-cache", default=str(SUBNET_CACHE), help="run folders of stand-alone trainings")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    base = QUICK_RECIPE if args.quick else Recipe()
    given = {k: getattr(args, k) for k in ("epochs", "train_limit", "val_limit") if getattr(args, k) is not None}
    if args.train_seed is not None:
        given["seed"] = args.train_seed
    return Recipe(**{**asdict(base), **given})


def add_ray_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help="train the stand-alone runs as Ray tasks: a local instance sized to this machine, or the cluster at\n"
        "ADDRESS (docs/distributed.md)",
    )


def check_ray(args: argparse.Namespace) -> None:
    """``--ray`` without Ray installed fails at once, not after the steps that come before the trainings."""
    from spos_deploy.cluster import require_ray

    if args.ray is not None:
        try:
            require_ray()
        except BadInputError as e:
            fail(str(e))


def subnet_run(arch: dict[str, Any], recipe: Recipe, cache: Path) -> Any:
    """The :class:`~spos_deploy.training.subnets.SubnetRun` of one architecture: its folder in the cache."""
    from spos_deploy.training.subnets import SubnetRun
    from spos_deploy.training.trainer import SubnetConfig

    cfg = SubnetConfig(
        out=str(cache / recipe.tag / arch["key"]),
        spec=spec_of(arch["blocks"], arch["channels"]),
        epochs=recipe.epochs,
        train_limit=recipe.train_limit,
        val_limit=recipe.val_limit,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        warmup_epochs=recipe.warmup_epochs,
        seed=recipe.seed,
        keep=1,
        progress=False,
        resume=True,
    )
    return SubnetRun(arch["key"], cfg)


def standalone_result(arch: dict[str, Any], recipe: Recipe, r: dict[str, Any]) -> dict[str, Any]:
    """What the benchmarks read of a run's ``result.json``, in either shape: the one the benchmarks wrote before
    (``standalone_acc``) or :func:`~spos_deploy.training.subnets.train_one`'s (``val_acc``)."""
    return {
        "key": arch["key"],
        "recipe": asdict(recipe),
        "standalone_acc": r.get("standalone_acc", r.get("val_acc")),
        "train_seconds": r["train_seconds"],  # the optimizer steps, over all sessions
        "wall_seconds": r["wall_seconds"],  # the last session: setup, steps and per-epoch validation
        "run": r["run"],
    }


def train_all(
    archs: list[dict[str, Any]], recipe: Recipe, cache: Path, ray: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every architecture's stand-alone result by key: finished runs read back, the others trained (or resumed)
    one after the other, or with ``ray`` (``"local"`` or a cluster's address) as retried Ray tasks."""
    from spos_deploy.training.subnets import RESULT, train_one, train_runs

    runs = [subnet_run(a, recipe, cache) for a in archs]
    unfinished = {r.name: r for r in runs if not (Path(r.cfg.out) / RESULT).exists()}  # an arch listed twice: once
    todo = list(unfinished.values())  # none: no Ray started
    if todo:
        where = "one after the other" if ray is None else f"as Ray tasks ({ray})"
        log.info("stand-alone: %d of %d architectures to train %s (%s)", len(todo), len(runs), where, recipe.tag)
    try:
        fresh = dict(zip((r.name for r in todo), train_runs(todo, ray=ray))) if todo else {}
    except BadInputError as e:
        fail(str(e))
    out: dict[str, dict[str, Any]] = {}
    for i, (arch, run) in enumerate(zip(archs, runs)):
        res = fresh[run.name] if run.name in fresh else train_one(run)  # a finished folder: read back
        out[arch["key"]] = standalone_result(arch, recipe, res)
        note = "" if run.name in fresh else ", cached"
        acc = out[arch["key"]]["standalone_acc"]
        log.info(
            "stand-alone %d/%d %s: top-1 %.4f (%.0f s%s)",
            i + 1,
            len(archs),
            arch["key"],
            acc,
            res["wall_seconds"],
            note,
        )
    return out


def train_standalone(arch: dict[str, Any], recipe: Recipe, cache: Path) -> dict[str, Any]:
    """Stand-alone top-1 of one architecture: from ``result.json`` when done, else trained (or resumed)."""
    return train_all([arch], recipe, cache)[arch["key"]]


def separability_text(sep: dict[str, float] | None, seeds: int) -> str:
    if sep is None:
        return ""
    return (
        f" Beyond that noise the architectures' own top-1 spread is {100 * sep['architecture_std']:.2f} points (std; "
        f"the variance of the {seeds}-seed means is {sep['f_ratio']:.2f} times what the noise alone gives), so even "
        f"a perfect ranking could show a Kendall tau of at most about {sep['tau_ceiling']:.2f} against them."
    )


# ---- the supernet -----------------------------------------------------------------------------------------
SUPERNET_DEFAULTS = {"supernet_train_limit": None, "supernet_max_steps": None}
SUPERNET_QUICK = {"supernet_epochs": 1, "supernet_train_limit": 5120, "supernet_max_steps": 20}


def add_supernet_args(ap: argparse.ArgumentParser, default_help: str) -> None:
    g = ap.add_argument_group(
        "supernet (trained here when --supernet has no supernet.params; options not given: spos-train's recipe"
        " of the small space)"
    )
    g.add_argument("--supernet", help=f"spos-train supernet run folder of the small space (default: {default_help})")
    g.add_argument("--supernet-epochs", type=int, help="default: the recipe's (--quick: 1)")
    g.add_argument("--supernet-train-limit", type=int, help="training images (default: all 60,000; --quick: 5120)")
    g.add_argument("--supernet-lr", "--lr", dest="supernet_lr", type=float)
    g.add_argument("--supernet-batch-size", "--batch-size", dest="supernet_batch_size", type=int)
    g.add_argument("--supernet-warmup-epochs", type=float)
    g.add_argument("--cs-start-epoch", type=int, help="channel-selection warm-up starts here (default: never)")
    g.add_argument("--cs-pace", type=int, default=1, help="epochs per warm-up step (10 epochs reach every width)")
    g.add_argument("--supernet-max-steps", type=int, help="stop after this many steps (--quick: 20)")


def resolve_supernet_args(args: argparse.Namespace) -> None:
    """Fill the supernet options left unset with the full-size or the ``--quick`` defaults."""
    for k, v in (SUPERNET_QUICK if args.quick else SUPERNET_DEFAULTS).items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def ensure_supernet(path: Path, args: argparse.Namespace) -> Path:
    """``path`` if it holds a finished supernet, else train (or resume) one there with the options given."""
    from spos_deploy.training.recipes import resolve_supernet_options
    from spos_deploy.training.trainer import SupernetConfig, train

    if (path / "supernet.params").exists():
        log.info("supernet: %s", path)
        return path
    given = {"epochs": args.supernet_epochs, "batch_size": args.supernet_batch_size, "lr": args.supernet_lr}
    given |= {"warmup_epochs": args.supernet_warmup_epochs, "cs_start_epoch": args.cs_start_epoch}
    cfg = SupernetConfig(
        out=str(path),
        space=SPACE,
        **resolve_supernet_options(given, SPACE),
        train_limit=args.supernet_train_limit,
        cs_pace=args.cs_pace,
        eval_paths=2,
        val_limit=2000,
        max_steps=args.supernet_max_steps,
        keep=2,
        progress=False,
        resume=True,
    )
    log.info("training the supernet into %s (%d epochs)", path, cfg.epochs)
    train(cfg)
    return path


SUPERNET_TRAINING_KEYS = (
    "epochs", "train_limit", "batch_size", "lr", "warmup_epochs", "label_smoothing", "augment", "seed",
    "path_rule", "sandwich_random", "inplace_distill", "cs_start_epoch", "cs_warmup", "cs_pace", "constraint",
    "bounds", "block_weights", "init_from", "teacher", "kd_weight", "max_steps",
)  # fmt: skip
"""The options of a supernet's training that decide what it learned (its config.json holds them all)."""


def supernet_training(path: Path) -> dict[str, Any]:
    """The training options of the supernet in ``path`` (:data:`SUPERNET_TRAINING_KEYS` of its config.json):
    a ranking record names the recipe of the supernet it ranked, which the run folder may not outlive."""
    cfg = json.loads((path / "config.json").read_text())
    return {k: cfg[k] for k in SUPERNET_TRAINING_KEYS if k in cfg}


def supernet_training_text(training: dict[str, Any]) -> str:
    """One line of :func:`supernet_training`'s options: the schedule's always, the others where they differ from
    the training configuration's defaults."""
    from spos_deploy.training.trainer import SupernetConfig

    defaults = SupernetConfig(out="").to_json()
    always = ("epochs", "train_limit", "batch_size", "lr", "seed")
    shown = {k: v for k, v in training.items() if k in always or v != defaults.get(k)}
    return ", ".join(f"{k} {v}" for k, v in shown.items())


def supernet_channels(path: Path) -> list[int]:
    """Channel choices the supernet trained in its last epoch (a path narrower than these was never trained)."""
    from spos_deploy.training.sampling import warmup_for

    cfg = json.loads((path / "config.json").read_text())
    schedule = warmup_for(SPACE, cfg["cs_start_epoch"], cfg["cs_warmup"], cfg["cs_pace"])
    return [int(c) for c in schedule.allowed(cfg["epochs"] - 1)]


# ---- the latency table ------------------------------------------------------------------------------------
def ensure_table(lut: str | None, default: Path, quick: bool) -> Path:
    """``--lut``, or this machine's int8 table (onnxruntime, batch 1, 2 threads) built at ``default``."""
    if lut:
        return Path(lut)
    if not default.exists():
        cmd = [tool("spos-lut"), "build", "--kind", "latency", "--space", "small", "--runtime", "onnxruntime"]
        cmd += ["--precision", "int8", "--batch", "1", "--threads", "2", "-o", str(default), "--resume"]
        quick_args = ["--repeats", "5", "--calibration-networks", "3", "--fit-networks", "0"]  # additive: minutes
        cmd += ["--no-progress"] + (quick_args if quick else [])
        run_tool(cmd)
    return default


def load_table(path: Path) -> Any:
    """The table, refused (one line) when made for another space or measured on other hardware/settings."""
    from spos_deploy.tables.latency.build import fingerprint
    from spos_deploy.tables.latency.table import LatencyTable, check_fingerprint
    from spos_deploy.tables.latency.validate import setup_of

    try:
        table = LatencyTable.load(path, expect_space=SPACE)
        here = fingerprint(setup_of(table), SPACE)
        check_fingerprint(table.fingerprint, here, str(path), hint="omit --lut to build one here")
    except BadInputError as e:
        fail(str(e))
    return table


def table_record(path: Path, table: Any) -> dict[str, Any]:
    """What the results say about the table: where, how measured, and on what."""
    fp = table.fingerprint
    keys = ("runtime", "precision", "batch", "threads", "cpu", "date")
    return {"path": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), **{k: fp.get(k) for k in keys}}


# ---- zero-cost proxies of untrained architectures ------------------------------------------------------------
ZERO_COST = ("synflow", "naswot", "jacob_cov")
ZERO_COST_IMAGES = 64
ZERO_COST_SEEDS = (0, 1, 2)


def zero_cost_settings() -> dict[str, Any]:
    return {
        "proxies": list(ZERO_COST),
        "images": f"the first {ZERO_COST_IMAGES} of fashion-mnist:train",
        "seeds": list(ZERO_COST_SEEDS),
    }


def zero_cost_proxies(archs: list[dict[str, Any]], out: Path | None) -> dict[str, dict[str, Any]]:
    """SynFlow, NASWOT and jacob_cov of every architecture by key (:func:`spos_deploy.search.proxies.proxy_scores`:
    untrained networks, the mean over 3 inits), with the seconds they took; cached in OUT/proxies.json under
    those settings when ``out`` is given. Raises BadInputError when Fashion-MNIST is missing."""
    path = out / "proxies.json" if out is not None else None
    cache = json.loads(path.read_text()) if path is not None and path.exists() else {}
    if cache.get("settings") != zero_cost_settings():
        cache = {"settings": zero_cost_settings(), "scores": {}}
    todo = [a for a in archs if a["key"] not in cache["scores"]]
    if todo:
        from spos_deploy.search.proxies import proxy_scores

        from spos_deploy.data.images import fashion_mnist

        images = fashion_mnist("train", SPACE.input_size, limit=ZERO_COST_IMAGES).images
    for i, a in enumerate(todo):
        t0 = time.time()
        scores = proxy_scores(SPACE, a["blocks"], a["channels"], images, ZERO_COST, ZERO_COST_SEEDS)
        cache["scores"][a["key"]] = {k: finite_or_none(v) for k, v in scores.items()} | {"seconds": time.time() - t0}
        if path is not None:
            write_json(path, cache)
        log.info("zero-cost proxies %d/%d %s (%.1f s)", i + 1, len(todo), a["key"], time.time() - t0)
    return {a["key"]: cache["scores"][a["key"]] for a in archs}
