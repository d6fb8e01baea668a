"""Spreading evaluation over machines: ``--shard K/N --shared-dir DIR``.

Every machine runs the same command (same settings and seed) with its own ``-o`` folder and a folder
``DIR`` they all see (NFS, a synced mount). The driver hands each generation's new candidates, in order,
to :meth:`ShardExchange.evaluate`; machine ``K`` evaluates those whose key hashes to ``K``
(:func:`search.genes.shard_of`), publishes its results in ``DIR/shard-K-of-N.json`` (rewritten
atomically), and waits until the other shards' files hold the rest. Then every machine has the same
results in the same order, draws the same next generation, and ends with the same ``results.json``.

A machine that restarts with ``--resume`` reads its own shard file back, so nothing it published is
evaluated again; the files carry the search's fingerprint and a folder holding another search's files
is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError, SposError

from .driver import EvaluateFn
from .genes import shard_of
from .run_folder import expect_type, read_object

log = logging.getLogger(__name__)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BadInputError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise BadInputError(f"--shard {text}: need 0 <= K < N")
    return k, n


class ShardExchange:
    """This machine's share of the evaluations, and the others' results read from the shared folder."""

    def __init__(
        self,
        folder: str | Path,
        index: int,
        count: int,
        fingerprint: dict[str, Any],
        timeout_s: float = 24 * 3600,
        poll_s: float = 0.5,
    ):
        self.folder = Path(folder)
        self.index, self.count = index, count
        self.fingerprint = fingerprint
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mine: dict[str, float] = self._read(self._path(index)) or {}
        self.known: dict[str, float] = dict(self.mine)

    def _path(self, index: int) -> Path:
        return self.folder / f"shard-{index}-of-{self.count}.json"

    def _read(self, path: Path) -> dict[str, float] | None:
        if not path.exists():
            return None
        d = read_object(path, "shard results", ("fingerprint", "results"))
        if d["fingerprint"] != self.fingerprint:
            raise BadInputError(
                f"{path}: results of another search (other settings or supernet); use an empty --shared-dir"
            )
        results = expect_type(path, d, "results", dict)
        try:
            return {str(k): float(v) for k, v in results.items()}
        except (TypeError, ValueError):
            raise BadInputError(f"{path}: field 'results' must map architecture keys to accuracies") from None

    def _publish(self) -> None:
        write_json(self._path(self.index), {"fingerprint": self.fingerprint, "results": self.mine}, indent=None)

    def _gather(self, keys: list[str]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            missing = [k for k in keys if k not in self.known]
            if not missing:
                return
            for i in range(self.count):
                if i != self.index:
                    self.known.update(self._read(self._path(i)) or {})
            if all(k in self.known for k in keys):
                return
            if time.monotonic() > deadline:
                shards = sorted({shard_of(k, self.count) for k in missing})
                raise SposError(
                    f"waited {self.timeout_s:.0f} s for {len(missing)} results of shard(s) {shards} in {self.folder}"
                )
            time.sleep(self.poll_s)

    def evaluate(self, keys: list[str], evaluate_mine: EvaluateFn) -> Iterator[float]:
        """Evaluate this shard's part of ``keys``, wait for the rest, and yield all accuracies in order."""
        todo = [k for k in keys if shard_of(k, self.count) == self.index and k not in self.known]
        for key, acc in zip(todo, evaluate_mine(todo)):
            self.mine[key] = self.known[key] = acc
            self._publish()
        if not todo:
            self._publish()  # an empty file still tells the others this shard is alive and which search it runs
        self._gather(keys)
        for k in keys:
            yield self.known[k]
