"""Many architectures trained from scratch: ``spos-train subnets``, the ranking and search-quality benchmarks.

Every architecture trains into its own run folder (``OUT/<name>/``) with the one-architecture trainer
(:func:`spos_deploy.training.trainer.train`, which checkpoints every epoch and resumes); a finished folder
holds ``result.json`` and is never trained again. So a job list can be stopped and started again, and the
same code path runs

* here, one architecture after the other (no Ray needed), or
* as Ray tasks (``--ray [ADDRESS]``, :mod:`spos_deploy.cluster`): one task per architecture, as many at a
  time as the cluster has CPUs for. A task whose worker dies (a killed process, a lost node) is retried by
  Ray, and the retry resumes from that run's last checkpoint: finished epochs and finished runs are never
  lost. Run folders must be on storage every node sees (the data path too, on each node).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.nets import engine

from .trainer import SubnetConfig

log = logging.getLogger(__name__)

RESULT = "result.json"
RETRIES = 3
"""How often one architecture's task is retried after its worker died (each retry resumes its checkpoint)."""


@dataclass(frozen=True)
class SubnetRun:
    """One architecture of the list: its run folder's name and its training settings."""

    name: str
    cfg: SubnetConfig


def plan_runs(base: SubnetConfig, specs: Sequence[Any], out: str | Path) -> list[SubnetRun]:
    """One run per model spec into ``out/<spec name>`` with ``base``'s settings (names must differ)."""
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInputError(f"two models are named {dupes[0]!r}: each trains into OUT/<name>; rename one")
    return [SubnetRun(s.name, replace(base, spec=s, out=str(Path(out) / s.name), resume=True)) for s in specs]


def train_one(run: SubnetRun) -> dict[str, Any]:
    """Train (or resume, or read back) one run; its ``result.json``. Safe to call again after any crash."""
    engine.start_serial()  # a Ray task's worker: the engine its runtime_env chose, without MXNet's notice
    from spos_deploy.training.checkpoint import checkpoints
    from spos_deploy.training.trainer import train

    folder = Path(run.cfg.out)
    done = folder / RESULT
    if done.exists():
        return json.loads(done.read_text())
    found = checkpoints(folder)
    resumed = json.loads((found[-1] / "state.json").read_text()).get("epoch") if found else None
    t0 = time.time()
    result = train(run.cfg)
    history = result["history"]
    record = {
        "name": run.name,
        "model": run.cfg.spec.to_json(),
        "val_acc": history[-1].get("val_acc") if history else None,
        "epochs": len(history),
        "train_seconds": float(sum(h.get("seconds", 0.0) for h in history)),
        "resumed_from_epoch": resumed,  # where this (last) attempt started; None: from scratch
        "wall_seconds": time.time() - t0,
        "host": os.uname().nodename,
        "run": str(folder),
    }
    write_json(done, record)
    return record


def train_runs(
    runs: Sequence[SubnetRun], ray: str | None = None, retries: int = RETRIES, progress: bool = True
) -> list[dict[str, Any]]:
    """Every run's result, in the order given: here one after the other, or as retried Ray tasks."""
    bar = tqdm(total=len(runs), desc="architectures", unit="arch", disable=not progress)
    try:
        if ray is None:
            results = []
            for r in runs:
                results.append(train_one(r))
                bar.update(1)
            return results
        return _on_ray(runs, ray, retries, bar)
    finally:
        bar.close()


def _on_ray(runs: Sequence[SubnetRun], address: str, retries: int, bar: tqdm) -> list[dict[str, Any]]:
    from spos_deploy.cluster import ray_cluster

    with ray_cluster(address) as ray:
        task = ray.remote(
            num_cpus=1,
            max_retries=retries,
            retry_exceptions=False,
            runtime_env={"env_vars": engine.training_env()},  # chosen before the worker loads MXNet
        )(train_one)
        refs = [task.remote(r) for r in runs]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[dict[str, Any] | None] = [None] * len(refs)
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                i = index[ready[0]]
                try:
                    results[i] = ray.get(ready[0])
                except ray.exceptions.RayTaskError as e:  # the training itself failed: its own error, one line
                    cause = e.as_instanceof_cause()
                    if isinstance(cause, BadInputError):
                        raise BadInputError(f"{runs[i].name}: {cause}") from None
                    raise
                except ray.exceptions.WorkerCrashedError:
                    raise BadInputError(
                        f"{runs[i].name}: its worker died {retries + 1} times; rerun to resume it from its checkpoint"
                    ) from None
                bar.update(1)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return [r for r in results if r is not None]
