"""The generation loop shared by evolutionary and random search: budget, phases, checkpoints, resume.

One generation: evaluate the population's new members (cache hits are free and do not count against
``budget``), record the generation in the history, then either end the phase or let the strategy draw the
next population, and save the state. All randomness comes from one numpy generator whose state is saved
with every generation, and accuracies depend only on the architecture, so the same seed gives the same
search and a resumed search ends exactly where an uninterrupted one ends.

Phases (``--mode blocks-first``): the first half of the generations (and of the budget) searches blocks
with every channel fixed to the widest uniform choice the constraints allow; the rest searches channels
with the first phase's best blocks fixed. ``joint`` is one phase searching both; ``blocks`` is the first
phase of ``blocks-first`` alone.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from spos_deploy.errors import BadInputError

from .feasible import ConstrainedSampler
from .genes import MODES, GeneSpace, Phase, arch_keys, parse_key
from .state import ResultCache, SearchState, Store

log = logging.getLogger(__name__)

METHODS = ("evolution", "random")
EvaluateFn = Callable[[list[str]], Iterator[float]]


@dataclass(frozen=True)
class SearchConfig:
    """The settings that decide a search's outcome (with the evaluation and constraint settings)."""

    method: str = "evolution"
    mode: str = "joint"
    population: int = 50
    parents: int | None = None  # None: a fifth of the population (10 of 50, as in SPOS)
    mutation: float = 0.1
    channel_mutation: float | None = None  # None: same as mutation
    crossover: int | None = None  # None: half the population
    generations: int = 20
    budget: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise BadInputError(f"--method {self.method}: use one of {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise BadInputError(f"--mode {self.mode}: use one of {', '.join(MODES)}")
        if self.population < 1 or self.generations < 1:
            raise BadInputError("--population and --generations must be >= 1")
        if self.mode == "blocks-first" and self.generations < 2:
            raise BadInputError("--mode blocks-first needs --generations >= 2 (one phase for blocks, one for channels)")
        if self.parents is not None and not 1 <= self.parents <= self.population:
            raise BadInputError(f"--parents {self.parents}: must be in 1..--population ({self.population})")
        for name, p in (("--mutation", self.mutation), ("--channel-mutation", self.channel_mutation)):
            if p is not None and not 0.0 <= p <= 1.0:
                raise BadInputError(f"{name} {p}: a per-gene probability must be in [0, 1]")
        if self.crossover is not None and not 0 <= self.crossover <= self.population:
            raise BadInputError(f"--crossover {self.crossover}: must be in 0..--population ({self.population})")
        if self.budget is not None and self.budget < 1:
            raise BadInputError(f"--budget {self.budget}: must be >= 1")

    @property
    def n_parents(self) -> int:
        return max(1, self.population // 5) if self.parents is None else self.parents

    @property
    def n_crossover(self) -> int:
        return self.population // 2 if self.crossover is None else self.crossover

    @property
    def p_channel(self) -> float:
        return self.mutation if self.channel_mutation is None else self.channel_mutation

    def phases(self) -> list[tuple[int, int | None]]:
        """(generations, cumulative budget cap) of each phase."""
        if self.mode in ("joint", "blocks"):
            return [(self.generations, self.budget)]
        g0 = math.ceil(self.generations / 2)
        b0 = None if self.budget is None else math.ceil(self.budget / 2)
        return [(g0, b0), (self.generations - g0, self.budget)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Strategy(Protocol):
    def initial(self, rng: np.random.Generator, phase: Phase, cache: ResultCache) -> tuple[np.ndarray, np.ndarray]:
        """The first population of a phase."""

    def next(
        self, rng: np.random.Generator, phase: Phase, phase_index: int, cache: ResultCache
    ) -> tuple[np.ndarray, np.ndarray]:
        """The population after a generation of ``phase`` was evaluated into ``cache``."""


def first_phase(cfg: SearchConfig, gs: GeneSpace, sampler: ConstrainedSampler, scales: tuple[float, ...]) -> Phase:
    """``joint``: everything free. ``blocks-first``: channels fixed at the widest uniform choice that can meet
    the constraints (the widest scale when they allow it)."""
    if cfg.mode == "joint":
        sampler.check_bounds(Phase())
        return Phase("joint")
    probe = np.random.default_rng([cfg.seed, 1])
    for c in np.argsort(-np.asarray(scales), kind="stable"):
        if not gs.valid_channels[:, c].all():
            continue
        phase = Phase("blocks", fixed_channels=np.full(gs.num_positions, int(c), np.int64))
        try:
            b, _ = sampler.sample(probe, 1, phase)
        except BadInputError:
            continue
        if len(b):
            if c != int(np.argmax(scales)):
                log.info(cfg.mode + ": channels fixed at scale %s (the widest that meets the constraints)", scales[c])
            return phase
    sampler.check_bounds(Phase())
    raise BadInputError(f"--mode {cfg.mode}: no uniform channel choice meets the constraints; use --mode joint")


def best_key(cache: ResultCache, phase_index: int | None = None) -> str | None:
    """Most accurate evaluated architecture (of a phase); ties go to the earlier evaluated one."""
    best, best_acc = None, -math.inf
    for key, e in cache.entries.items():
        if (phase_index is None or e.phase == phase_index) and e.accuracy > best_acc:
            best, best_acc = key, e.accuracy
    return best


def run_search(
    cfg: SearchConfig,
    strategy: Strategy,
    gs: GeneSpace,
    sampler: ConstrainedSampler,
    scales: tuple[float, ...],
    evaluate: EvaluateFn,
    store: Store | None = None,
    resume: bool = False,
    on_generation: Callable[[SearchState, ResultCache], None] | None = None,
    progress: bool = True,
) -> tuple[SearchState, ResultCache]:
    """Run (or continue) the search; returns the final state and every evaluated architecture."""
    state, cache, rng = _start(cfg, strategy, gs, sampler, scales, store, resume)
    plan = cfg.phases()
    total = cfg.budget if cfg.budget is not None else cfg.population * cfg.generations
    bar = tqdm(total=total, initial=min(len(cache), total), desc="evaluations", unit="arch", disable=not progress)
    started = time.perf_counter()
    try:
        while not state.done:
            t0 = time.perf_counter()
            keys, todo, misses = _evaluate_generation(state, cache, plan, evaluate, bar, store)
            _record(state, cache, keys, todo, t0)
            _advance(state, cache, plan, strategy, rng, keys, phase_over=_phase_over(state, cache, plan, todo, misses))
            state.rng_state = rng.bit_generator.state
            if store is not None:
                store.save_cache(cache)
                state.seconds += time.perf_counter() - started
                started = time.perf_counter()
                store.save_state(state)
            if on_generation is not None:
                on_generation(state, cache)
    finally:
        bar.close()
        if store is not None and len(cache):  # keep what was evaluated; write nothing if nothing was
            store.save_cache(cache)
    return state, cache


def _start(
    cfg: SearchConfig,
    strategy: Strategy,
    gs: GeneSpace,
    sampler: ConstrainedSampler,
    scales: tuple[float, ...],
    store: Store | None,
    resume: bool,
) -> tuple[SearchState, ResultCache, np.random.Generator]:
    """The saved search (``resume``) or generation 0 of a new one."""
    loaded = store.load() if (store is not None and resume) else None
    if loaded is not None:
        state, cache = loaded
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng_state
        if not state.done:
            log.info("resuming at generation %d (%d architectures evaluated)", state.generation, len(cache))
        return state, cache, rng
    # an interruption during generation 0 leaves results but no state: they are reused, not redone
    cache = store.load_cache() if (store is not None and resume) else ResultCache()
    rng = np.random.default_rng(cfg.seed)
    phase = first_phase(cfg, gs, sampler, scales)
    blocks, channels = strategy.initial(rng, phase, ResultCache())  # never depends on reused results
    return SearchState(0, 0, phase, blocks, channels, rng.bit_generator.state), cache, rng


def _evaluate_generation(
    state: SearchState, cache: ResultCache, plan: list, evaluate: EvaluateFn, bar: Any, store: Store | None
) -> tuple[list[str], list[str], list[str]]:
    """Evaluate the population's new members within the phase's budget; returns (keys, evaluated, new)."""
    _, cap = plan[state.phase_index]
    keys = arch_keys(state.blocks, state.channels)
    misses = list(dict.fromkeys(k for k in keys if k not in cache))
    room = len(misses) if cap is None else max(0, cap - len(cache))
    todo = misses[:room]
    for key, acc in zip(todo, evaluate(todo)):
        cache.add(key, acc, state.generation, state.phase_index)
        bar.update(1)
        if store is not None:
            store.save_cache(cache, force=False)
    return keys, todo, misses


def _record(state: SearchState, cache: ResultCache, keys: list[str], todo: list[str], t0: float) -> None:
    """Append the generation to the history (counted from the cache: results reused after a crash count
    where they belong)."""
    accs = [cache.entries[k].accuracy for k in keys if k in cache]
    best = best_key(cache)
    new = [k for k in dict.fromkeys(keys) if k in cache and cache.entries[k].generation == state.generation]
    state.history.append(
        {
            "generation": state.generation,
            "phase": state.phase.name,
            "population": len(keys),
            "evaluated": len(new),
            "cache_hits": sum(1 for k in keys if k in cache and cache.entries[k].generation < state.generation),
            "total_evaluated": len(cache),
            "generation_best": max(accs) if accs else None,
            "generation_mean": float(np.mean(accs)) if accs else None,
            "best_accuracy": cache.entries[best].accuracy if best else None,
            "best": best,
            "seconds": time.perf_counter() - t0,
        }
    )
    log.info(
        "generation %d (%s): %d evaluated, best %.4f, %d in all",
        state.generation,
        state.phase.name,
        len(todo),
        state.history[-1]["best_accuracy"] or float("nan"),
        len(cache),
    )
    state.generation += 1


def _phase_over(state: SearchState, cache: ResultCache, plan: list, todo: list[str], misses: list[str]) -> bool:
    gens, cap = plan[state.phase_index]
    return (
        state.generation - state.phase_start >= gens
        or (cap is not None and len(cache) >= cap)
        or len(todo) < len(misses)
    )


def _advance(
    state: SearchState,
    cache: ResultCache,
    plan: list,
    strategy: Strategy,
    rng: np.random.Generator,
    keys: list[str],
    phase_over: bool,
) -> None:
    """The next population: the next phase's first, the strategy's next, or the end of the search."""
    if phase_over and state.phase_index + 1 < len(plan) and plan[state.phase_index + 1][0] > 0:
        best_blocks = parse_key(best_key(cache, state.phase_index) or keys[0])[0]
        state.phase_index += 1
        state.phase = Phase("channels", fixed_blocks=best_blocks)
        state.phase_start = state.generation
        state.blocks, state.channels = strategy.initial(rng, state.phase, cache)
    elif phase_over:
        state.done = True
    else:
        state.blocks, state.channels = strategy.next(rng, state.phase, state.phase_index, cache)
    if len(state.blocks) == 0 and not state.done:
        log.info("no new architecture meets the constraints: the search space is exhausted")
        state.done = True
