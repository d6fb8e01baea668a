"""``spos-search --ray [ADDRESS]``: a generation's candidates evaluated by Ray actors, on one machine or many.

Each actor loads the supernet and the evaluation data once (both travel through Ray's object store, so a
node needs neither the weights file nor the dataset) and then evaluates candidates one call each: BN
recalibration and validation on the supernet, exactly :class:`~spos_deploy.search.evaluator.PathEvaluator`
as the single-process search runs it. The search's state, checkpointing and resume stay in the driver
(:mod:`spos_deploy.search.driver`); only the evaluation calls travel.

Results come back in the order the candidates were given, whichever actor finished first (each actor takes
the next candidate as soon as it is free), so the same seed draws the same generations as the
single-process search. An actor whose process dies is restarted by Ray (its supernet loaded again) and the
call it held is retried there: a lost worker costs the evaluations it was running, never the search. A
node added to the cluster while a search runs gets actors from the next generation on (without
``--workers``, their number follows the cluster's CPUs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.cluster import cluster_cpus, ray_cluster

from .evaluator import EvalData, PathEvaluator, SupernetRun

log = logging.getLogger(__name__)

RESTARTS = 3
"""How often one actor may be restarted after its process died (and each of its calls retried)."""


class EvalActor:
    """One supernet copy on one Ray worker (a Ray actor class once wrapped by :class:`RayEvaluator`).

    The weights and data come with the calls, as references (a list, which Ray does not resolve for us), and
    are loaded on the first one: an actor restarted after its process died loads them again on its next
    call, while the driver holds the references for the whole search.
    """

    def __init__(self, run: SupernetRun, batch_size: int, threads: int, gpu: bool):
        # MXNet reads its thread count when it loads: before the first import in this worker process
        os.environ["OMP_NUM_THREADS"] = os.environ["MXNET_OMP_MAX_THREADS"] = str(threads)
        self.run, self.batch_size, self.gpu = run, batch_size, gpu
        self.path: PathEvaluator | None = None

    def _load(self, shared: list[Any]) -> PathEvaluator:
        if self.path is None:
            import mxnet as mx
            import ray

            params, data = ray.get(shared)
            self._folder = tempfile.TemporaryDirectory(prefix="spos-search-actor-")
            path = Path(self._folder.name) / "supernet.params"
            path.write_bytes(params)
            ctx = mx.gpu(0) if self.gpu else mx.cpu()  # Ray makes a GPU actor's device the only one visible
            self.path = PathEvaluator(replace(self.run, params=path), data, self.batch_size, ctx)
        return self.path

    def warm(self, shared: list[Any]) -> int:
        """Load now (before the first generation); the process id."""
        self._load(shared)
        return os.getpid()

    def evaluate(self, shared: list[Any], blocks: Sequence[int], channels: Sequence[int]) -> float:
        return self._load(shared)(blocks, channels)


class RayEvaluator:
    """The search's evaluator on Ray: ``workers`` actors, or (``workers`` None) one per CPU of the cluster over
    ``threads``, re-counted before every generation so that a node that joins mid-search gets actors too."""

    def __init__(
        self,
        run: SupernetRun,
        data: EvalData,
        batch_size: int,
        address: str,
        workers: int | None = None,
        threads: int = 1,
        gpus: bool = False,
    ):
        self._stack = contextlib.ExitStack()
        ray = self._stack.enter_context(ray_cluster(address))
        try:
            self._ray, self._workers, self._threads = ray, workers, threads
            self._shared = [ray.put(Path(run.params).read_bytes()), ray.put(data)]
            self._actor = ray.remote(EvalActor).options(
                num_cpus=threads,
                num_gpus=1 if gpus else 0,
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
            )
            self._args = (run, batch_size, threads, gpus)
            self.actors: list[Any] = []
            self.pids: list[int] = []
            self._grow()
        except BaseException:
            self._stack.close()
            raise

    def _wanted(self) -> int:
        return self._workers or max(1, cluster_cpus(self._ray) // self._threads)

    def _grow(self) -> None:
        """Start the actors still missing (all of them at first), each up before it gets a candidate."""
        new = [self._actor.remote(*self._args) for _ in range(self._wanted() - len(self.actors))]
        if not new:
            return
        self.pids += self._ray.get([a.warm.remote(self._shared) for a in new])
        self.actors += new
        log.info("ray: %d evaluation actors (%d thread(s) each)", len(self.actors), self._threads)

    def evaluate(self, blocks: np.ndarray, channels: np.ndarray) -> Iterator[float]:
        """Accuracies in the order of the candidates. Each actor gets the next candidate as soon as it is
        free (not when the results before its last one are in: evaluations differ in length), and results
        are handed on as soon as every earlier one is in."""
        self._grow()
        ray = self._ray
        todo = list(enumerate(zip(blocks, channels)))[::-1]
        idle, running, done, nxt = list(self.actors), {}, {}, 0
        try:
            while nxt < len(blocks):
                while idle and todo:
                    i, (b, c) = todo.pop()
                    actor = idle.pop()
                    ref = actor.evaluate.remote(self._shared, [int(v) for v in b], [int(v) for v in c])
                    running[ref] = (i, actor)
                ready, _ = ray.wait(list(running), num_returns=1)
                i, actor = running.pop(ready[0])
                done[i] = ray.get(ready[0])
                idle.append(actor)
                while nxt in done:
                    yield done.pop(nxt)
                    nxt += 1
        except ray.exceptions.RayActorError:
            from spos_deploy.errors import SposError

            raise SposError(
                f"a Ray evaluation actor died more than {RESTARTS} times (out of memory?); rerun with --resume"
            ) from None
        finally:
            for ref in running:
                ray.cancel(ref, force=False)

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            with contextlib.suppress(Exception):
                self._ray.kill(a)
        self._stack.close()


def ray_evaluator(
    run: SupernetRun, data: EvalData, batch_size: int, address: str, workers: int | None, gpus: list[int]
) -> Any:
    """The evaluator ``--ray`` asks for (a GPU per actor with ``--gpus``; Ray assigns which)."""
    return RayEvaluator(run, data, batch_size, address, workers, threads=1, gpus=bool(gpus))
