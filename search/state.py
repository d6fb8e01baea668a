"""What a search keeps on disk so that ``--resume`` ends exactly where an uninterrupted run ends.

Two files in the output folder, each written atomically (complete or absent):

* ``state.json``, written after every generation: the settings, the generation about to be evaluated, the
  phase, that generation's population, the random generator's state and the history so far.
* ``cache.json``: every evaluated architecture with its accuracy, in evaluation order, written during a
  generation too (at most every few seconds) so an interruption loses little work.

Resuming loads both and repeats the loop from the saved generation. Results of the interrupted generation
that reached the cache are reused; that does not change the outcome because an accuracy depends only on
the architecture, and the budget counts distinct architectures in the cache, not evaluations made by
this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError, short_message

from .genes import Phase
from .run_folder import expect_type, read_object

STATE_VERSION = 1


@dataclass
class Evaluated:
    """One evaluated architecture."""

    accuracy: float
    generation: int
    phase: int


class ResultCache:
    """Accuracy by architecture key, in evaluation order (insertion order of the dict)."""

    def __init__(self, entries: dict[str, Evaluated] | None = None):
        self.entries: dict[str, Evaluated] = dict(entries or {})

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, key: str, accuracy: float, generation: int, phase: int) -> None:
        if key not in self.entries:
            self.entries[key] = Evaluated(float(accuracy), generation, phase)

    def keys(self) -> list[str]:
        return list(self.entries)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"key": k, "accuracy": e.accuracy, "generation": e.generation, "phase": e.phase}
            for k, e in self.entries.items()
        ]

    @classmethod
    def from_json(cls, rows: list[dict[str, Any]]) -> ResultCache:
        return cls({r["key"]: Evaluated(float(r["accuracy"]), int(r["generation"]), int(r["phase"])) for r in rows})


@dataclass
class SearchState:
    """The loop's position: generation ``generation`` is next, with ``population`` as its candidates."""

    generation: int
    phase_index: int
    phase: Phase
    blocks: np.ndarray  # [P, L] population
    channels: np.ndarray
    rng_state: dict[str, Any]
    phase_start: int = 0  # generation at which the current phase began
    history: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    seconds: float = 0.0  # time spent in earlier sessions of this search

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "phase_index": self.phase_index,
            "phase": self.phase.to_json(),
            "phase_start": self.phase_start,
            "num_positions": int(self.blocks.shape[1]),
            "population": {"blocks": self.blocks.tolist(), "channels": self.channels.tolist()},
            "rng": self.rng_state,
            "history": self.history,
            "done": self.done,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SearchState:
        L = int(d["num_positions"])
        pop_b = np.array(d["population"]["blocks"], dtype=np.int64).reshape(-1, L)
        pop_c = np.array(d["population"]["channels"], dtype=np.int64).reshape(-1, L)
        return cls(
            generation=int(d["generation"]),
            phase_index=int(d["phase_index"]),
            phase=Phase.from_json(d["phase"]),
            blocks=pop_b,
            channels=pop_c,
            rng_state=d["rng"],
            phase_start=int(d["phase_start"]),
            history=list(d["history"]),
            done=bool(d["done"]),
            seconds=float(d.get("seconds", 0.0)),
        )


class Store:
    """``state.json`` and ``cache.json`` of one output folder."""

    def __init__(self, out: Path, settings: dict[str, Any], cache_every_s: float = 5.0):
        self.out, self.settings, self.cache_every_s = out, settings, cache_every_s
        self._last_cache_write = 0.0

    @property
    def state_path(self) -> Path:
        return self.out / "state.json"

    @property
    def cache_path(self) -> Path:
        return self.out / "cache.json"

    def load_cache(self) -> ResultCache:
        """Results saved before the first generation ended (no state yet); settings that differ are refused."""
        if not self.cache_path.exists():
            return ResultCache()
        d = read_object(self.cache_path, "search results cache", ("settings", "results"))
        expect_type(self.cache_path, d, "settings", dict)
        rows = expect_type(self.cache_path, d, "results", list)
        self._check(d["settings"])
        return _parsed(self.cache_path, "results", lambda: ResultCache.from_json(rows))

    def _check(self, saved: dict[str, Any]) -> None:
        diff = settings_diff(saved, self.settings)
        if diff:
            raise BadInputError(
                f"--resume: {self.out} was searched with other settings ({'; '.join(diff)}); "
                "use the same settings or another --out"
            )

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings of the search this folder holds (from its state or cache file), if any."""
        for path, what in ((self.state_path, "search state"), (self.cache_path, "search results cache")):
            if path.exists():
                return expect_type(path, read_object(path, what, ("settings",)), "settings", dict)
        return None

    def load(self) -> tuple[SearchState, ResultCache] | None:
        """The saved search, or None when the folder holds none; settings that differ are refused."""
        if not self.state_path.exists():
            return None
        path = self.state_path
        d = read_object(path, "search state", ("version", "settings", "state"))
        if d["version"] != STATE_VERSION:
            raise BadInputError(f"{path}: state version {d['version']!r}, expected {STATE_VERSION}")
        expect_type(path, d, "settings", dict)
        saved = expect_type(path, d, "state", dict)
        self._check(d["settings"])
        return _parsed(path, "state", lambda: SearchState.from_json(saved)), self.load_cache()

    def save_state(self, state: SearchState) -> None:
        write_json(self.state_path, {"version": STATE_VERSION, "settings": self.settings, "state": state.to_json()})

    def save_cache(self, cache: ResultCache, force: bool = True) -> None:
        """Write the cache (when ``force``, or when the last write is ``cache_every_s`` seconds old)."""
        now = time.monotonic()
        if force or now - self._last_cache_write >= self.cache_every_s:
            write_json(self.cache_path, {"settings": self.settings, "results": cache.to_json()}, indent=None)
            self._last_cache_write = now


def settings_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    keys = sorted(set(have) | set(want))
    return [f"{k}: saved {have.get(k)!r}, now {want.get(k)!r}" for k in keys if have.get(k) != want.get(k)]


def _parsed(path: Path, field: str, parse: Callable[[], Any]) -> Any:
    """``parse()``, with any malformed content reported as one line naming the file and the field."""
    try:
        return parse()
    except KeyError as e:
        raise BadInputError(f"{path}: field '{field}' lacks '{e.args[0]}'") from None
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise BadInputError(f"{path}: field '{field}' is malformed ({type(e).__name__}: {short_message(e)})") from None
