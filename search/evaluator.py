"""Accuracy of candidates on a trained supernet: BN statistics recomputed for the path, then top-1.

The supernet run is loaded once (a ``spos-train supernet`` folder: ``config.json`` + ``supernet.params``, or a
bare ``.params`` file plus the space options) and checked against the search space before anything is
written. Evaluation data is prepared once in the main process (:func:`prepare_data`): a fixed list of
augmented training batches for BN (fixed seed) and the validation images. Every evaluation starts from
scratch for its path (:func:`search.bn_recalibration.precise_bn`), so an accuracy is a function of the
architecture alone: it does not depend on what a worker evaluated before, on the number of workers, or on
whether the search was resumed.

Evaluators yield accuracies in the order of the candidates they get:

* :class:`LocalEvaluator`: in this process, one context;
* :class:`PoolEvaluator`: ``workers`` processes started with the ``spawn`` method (MXNet does not survive
  ``fork``), each with its own supernet copy and context (a GPU each with ``gpus``), reading the prepared
  data from memory-mapped ``.npy`` files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.errors import BadInputError, SposError, short_message
from spos_deploy.machine import physical_cores
from spos_deploy.space import SearchSpace
from spos_deploy.tables.core import config_diff

from .run_folder import read_object, space_from_config

log = logging.getLogger(__name__)

BN_SEED = 0  # the BN images are the same for every search (and every seed), so accuracies compare


# ---- the supernet run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SupernetRun:
    """A trained supernet: its search space and weights file (with a content hash for resume checks)."""

    space: SearchSpace
    params: Path
    sha1: str


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_supernet(ref: str, space: SearchSpace | None) -> SupernetRun:
    """The run behind ``--supernet``: a training folder (its config decides the space) or a ``.params`` file.

    ``space`` is the configuration from the command line: for a bare ``.params`` file it defaults to the
    default space, and for a folder it must agree with the folder's config when given.
    """
    path = Path(ref)
    if not path.exists():
        raise BadInputError(f"--supernet {ref}: no such run folder or .params file")
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.exists():
            raise BadInputError(f"--supernet {ref}: no config.json (not a spos-train supernet run folder)")
        cfg = read_object(cfg_path, "spos-train run configuration", ("mode", "space"))
        if cfg["mode"] != "supernet":
            raise BadInputError(f"{cfg_path}: not a supernet run (field 'mode' is {cfg['mode']!r})")
        run_space = space_from_config(cfg["space"], f"{cfg_path} (field 'space')")
        if space is not None and space != run_space:
            diff = config_diff(run_space.to_config(), space.to_config())
            raise BadInputError(f"--supernet {ref}: trained for another configuration ({'; '.join(diff)})")
        params = path / "supernet.params"
        if not params.exists():
            raise BadInputError(f"--supernet {ref}: no supernet.params (training not finished?)")
        return SupernetRun(run_space, params, _sha1(params))
    return SupernetRun(space or SearchSpace(), path, _sha1(path))  # checked against the weights when loaded


def load_supernet(run: SupernetRun, ctx: Any = None) -> Any:
    """The supernet with the run's weights on ``ctx``; a file for another space is a one-line error."""
    import mxnet as mx

    from spos_deploy.nets.supernet import build_supernet

    ctx = ctx or mx.cpu()
    try:
        saved = mx.nd.load(str(run.params))
    except Exception as e:  # noqa: BLE001 - MXNet raises MXNetError with a C++ backtrace
        raise BadInputError(f"{run.params}: not a readable MXNet .params file ({short_message(e)})") from None
    if not isinstance(saved, dict):
        raise BadInputError(f"{run.params}: holds unnamed arrays, not Gluon parameters")
    net = build_supernet(run.space, seed=0, ctx=ctx)
    have = {k: v.shape for k, v in net._collect_params_with_prefix().items()}
    missing = sorted(set(have) - set(saved))
    wrong = sorted(k for k in have if k in saved and tuple(saved[k].shape) != tuple(have[k]))
    if missing or wrong or len(saved) != len(have):
        what = f"{len(missing)} missing" if missing else f"{len(wrong)} of another shape" if wrong else "extra"
        example = (missing or wrong or sorted(set(saved) - set(have)))[:1]
        raise BadInputError(
            f"{run.params}: weights do not fit the search space {run.space.describe()} "
            f"({what} parameters, e.g. {example[0] if example else '?'}); pass the space the supernet was trained for"
        )
    net.load_parameters(str(run.params), ctx=ctx)
    return net


# ---- evaluation data --------------------------------------------------------------------------------------
@dataclass
class EvalData:
    """What every evaluation uses: BN batches ``[n, batch, 3, H, W]`` and validation images and labels."""

    bn: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray

    def save(self, folder: Path) -> None:
        for name in ("bn", "val_images", "val_labels"):
            np.save(folder / f"{name}.npy", getattr(self, name))

    @classmethod
    def open(cls, folder: Path) -> EvalData:
        """Memory-mapped: worker processes share the pages instead of holding copies."""
        return cls(*(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("bn", "val_images", "val_labels")))


def prepare_data(
    space: SearchSpace,
    data: str,
    val_data: str,
    bn_images: int,
    batch_size: int,
    val_limit: int | None = None,
    data_limit: int | None = None,
) -> EvalData:
    """Load the BN batches (``bn_images`` rounded up to whole batches, seed :data:`BN_SEED`) and validation set."""
    from spos_deploy.data.batches import load_dataset

    from .bn_recalibration import bn_batches

    if bn_images < 1 or batch_size < 1:
        raise BadInputError("--bn-images and --batch-size must be >= 1")
    train = load_dataset(data, space.input_size, train=True, limit=data_limit)
    if train.num_classes > space.num_classes:
        raise BadInputError(f"{data}: {train.num_classes} classes but the supernet has {space.num_classes}")
    if len(train) < batch_size:
        raise BadInputError(f"{data}: {len(train)} images, fewer than one batch of {batch_size}")
    bn = np.stack(bn_batches(train, bn_images, batch_size, BN_SEED)).astype(np.float32)
    del train
    val = load_dataset(val_data, space.input_size, train=False, limit=val_limit)
    if val.num_classes > space.num_classes:
        raise BadInputError(f"{val_data}: {val.num_classes} classes but the supernet has {space.num_classes}")
    off = (val.images.shape[2] - space.input_size) // 2
    images = val.images[:, :, off : off + space.input_size, off : off + space.input_size]
    return EvalData(bn, np.ascontiguousarray(images, dtype=np.float32), val.labels.astype(np.int64))


# ---- one process ------------------------------------------------------------------------------------------
class PathEvaluator:
    """Evaluates paths of one supernet copy on one context (imperative: BN hooks need it, and it costs ~2%)."""

    def __init__(self, run: SupernetRun, data: EvalData, batch_size: int, ctx: Any = None, net: Any = None):
        import mxnet as mx

        self.ctx = ctx or mx.cpu()
        self.net = net if net is not None else load_supernet(run, self.ctx)
        self.data, self.batch_size = data, batch_size

    def __call__(self, blocks: Sequence[int], channels: Sequence[int]) -> float:
        from spos_deploy.nets.evaluate import accuracy

        from .bn_recalibration import batchnorms, precise_bn

        net = self.net
        blocks, channels = [int(v) for v in blocks], [int(v) for v in channels]

        def forward(x):
            return net(x, blocks, channels)

        path = [net.choice_block(i, b) for i, b in enumerate(blocks)]
        precise_bn(forward, batchnorms(net.stem, *path, net.head), self.data.bn, self.ctx)
        return accuracy(forward, self.data.val_images, self.data.val_labels, self.batch_size, self.ctx)


# ---- evaluators used by the search -------------------------------------------------------------------------
class LocalEvaluator:
    """In this process (``net``: the supernet already loaded on that context, if at hand)."""

    def __init__(self, run: SupernetRun, data: EvalData, batch_size: int, gpu: int | None = None, net: Any = None):
        import mxnet as mx

        self.path = PathEvaluator(run, data, batch_size, mx.gpu(gpu) if gpu is not None else mx.cpu(), net=net)

    def evaluate(self, blocks: np.ndarray, channels: np.ndarray) -> Iterator[float]:
        for b, c in zip(blocks, channels):
            yield self.path(b, c)

    def close(self) -> None:
        pass


_WORKER: PathEvaluator | None = None


def _init_worker(run: SupernetRun, folder: str, batch_size: int, gpus: list[int], counter: Any) -> None:
    """Runs once in each worker: pick a context, load the supernet and the prepared data."""
    import mxnet as mx

    global _WORKER
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    ctx = mx.gpu(gpus[index % len(gpus)]) if gpus else mx.cpu()
    _WORKER = PathEvaluator(run, EvalData.open(Path(folder)), batch_size, ctx)


def _evaluate_in_worker(arch: tuple[list[int], list[int]]) -> float:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(*arch)


class PoolEvaluator:
    """``workers`` spawned processes; results come back in the order the candidates were given."""

    def __init__(self, run: SupernetRun, data: EvalData, batch_size: int, workers: int, gpus: list[int]):
        import multiprocessing as mp

        self._tmp = tempfile.TemporaryDirectory(prefix="spos-search-data-")
        data.save(Path(self._tmp.name))
        spawn = mp.get_context("spawn")
        counter = spawn.Value("i", 0)
        # CPU workers share the cores: each gets its share of OpenMP threads (read when MXNet loads).
        self._env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")}
        if not gpus:
            threads = str(max(1, physical_cores() // workers))  # as a single process gets (mxnet_import)
            os.environ["OMP_NUM_THREADS"] = os.environ["MXNET_OMP_MAX_THREADS"] = threads
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=spawn,
            initializer=_init_worker,
            initargs=(run, self._tmp.name, batch_size, list(gpus), counter),
        )

    def evaluate(self, blocks: np.ndarray, channels: np.ndarray) -> Iterator[float]:
        archs = [([int(v) for v in b], [int(v) for v in c]) for b, c in zip(blocks, channels)]
        try:
            yield from self.pool.map(_evaluate_in_worker, archs)
        except BrokenProcessPool:
            raise SposError("an evaluation worker died (out of memory?); rerun with --resume") from None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._tmp.cleanup()


def check_gpus(gpus: list[int]) -> None:
    """Refuse GPU ids this MXNet build cannot use, with a one-line hint."""
    if not gpus:
        return
    import mxnet as mx

    try:
        have = mx.context.num_gpus()
    except Exception:  # noqa: BLE001 - a CPU build raises instead of returning 0 on some versions
        have = 0
    if have < max(gpus) + 1:
        raise BadInputError(
            f"--gpus {','.join(map(str, gpus))}: this MXNet build sees {have} GPU(s) "
            "(install a GPU build, e.g. pip install 'spos-deploy[gpu-cu112]')"
        )


def make_evaluator(
    run: SupernetRun,
    data: EvalData,
    batch_size: int,
    workers: int | None,
    gpus: list[int],
    net: Any = None,
    ray: str | None = None,
) -> Any:
    """Ray actors with ``ray`` (an address, or ``local``; ``workers`` None: one per CPU of the cluster);
    else in-process for one worker (reusing ``net``, a CPU copy loaded to check the weights), else a pool."""
    if ray is not None:
        from .ray_evaluator import ray_evaluator

        return ray_evaluator(run, data, batch_size, ray, workers, gpus)
    check_gpus(gpus)
    workers = workers or 1
    if workers <= 1:
        return LocalEvaluator(run, data, batch_size, gpus[0] if gpus else None, net=None if gpus else net)
    return PoolEvaluator(run, data, batch_size, workers, gpus)
