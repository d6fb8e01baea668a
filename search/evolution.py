"""Evolutionary search (the SPOS recipe): top-k parents, mutation children and uniform-crossover children.

Each generation after the first is built from the ``parents`` most accurate architectures evaluated so far
in the current phase: ``population - crossover`` children are a random parent mutated gene by gene (block
genes with probability ``mutation``, channel genes with ``channel_mutation``), and ``crossover`` children
mix two random distinct parents gene by gene. A child joins only if it meets every constraint (checked on
the lookup tables) and is new (not evaluated before, not already in the generation); children are drawn in
vectorized rounds until the generation is full, and if a capped number of rounds cannot fill it, fresh
constrained random candidates fill the rest. Pure numpy: evaluation happens in :mod:`search.driver`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .feasible import ConstrainedSampler
from .genes import GeneSpace, Phase, arch_keys, crossover, mutate, parse_key
from .random_search import RandomSearch
from .state import ResultCache

MAX_ROUNDS = 50


def top_parents(cache: ResultCache, phase_index: int, k: int) -> list[str]:
    """Keys of the ``k`` most accurate architectures of a phase; ties go to the earlier evaluated one."""
    rows = [(key, e.accuracy) for key, e in cache.entries.items() if e.phase == phase_index]
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][1], i))
    return [rows[i][0] for i in order[:k]]


@dataclass
class Evolution:
    """Children of the top-k parents; :meth:`initial` is a constrained random population."""

    gs: GeneSpace
    sampler: ConstrainedSampler
    population: int
    parents: int
    mutation: float
    channel_mutation: float
    crossover: int

    def initial(self, rng: np.random.Generator, phase: Phase, cache: ResultCache) -> tuple[np.ndarray, np.ndarray]:
        return RandomSearch(self.sampler, self.population).initial(rng, phase, cache)

    def next(
        self, rng: np.random.Generator, phase: Phase, phase_index: int, cache: ResultCache
    ) -> tuple[np.ndarray, np.ndarray]:
        keys = top_parents(cache, phase_index, self.parents)
        if not keys:
            return self.initial(rng, phase, cache)
        pb = np.array([parse_key(k)[0] for k in keys])
        pc = np.array([parse_key(k)[1] for k in keys])
        n_cross = min(self.crossover, self.population) if len(keys) >= 2 else 0
        want = {"mutation": self.population - n_cross, "crossover": n_cross}
        got: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"mutation": [], "crossover": []}
        seen = set(cache.keys())
        for _ in range(MAX_ROUNDS):
            if all(len(got[k]) >= want[k] for k in want):
                break
            for kind in ("mutation", "crossover"):
                need = want[kind] - len(got[kind])
                if need <= 0:
                    continue
                m = max(64, 4 * need)
                if kind == "mutation":
                    idx = rng.integers(0, len(keys), m)
                    cb, cc = mutate(rng, self.gs, pb[idx], pc[idx], self.mutation, self.channel_mutation, phase)
                else:
                    a = rng.integers(0, len(keys), m)
                    b = (a + rng.integers(1, len(keys), m)) % len(keys)  # a different parent
                    cb, cc = crossover(rng, pb[a], pc[a], pb[b], pc[b])
                    cb, cc = phase.apply(cb, cc)
                ok = self.sampler.inside(cb, cc)
                for i, key in zip(np.flatnonzero(ok), arch_keys(cb[ok], cc[ok])):
                    if key in seen:
                        continue
                    seen.add(key)
                    got[kind].append((cb[i], cc[i]))
                    if len(got[kind]) == want[kind]:
                        break
        children = got["mutation"] + got["crossover"]
        short = self.population - len(children)
        L = self.gs.num_positions
        blocks = np.array([b for b, _ in children], dtype=np.int64).reshape(-1, L)
        channels = np.array([c for _, c in children], dtype=np.int64).reshape(-1, L)
        if short > 0:
            fb, fc = self.sampler.sample(rng, short, phase, exclude=seen)
            blocks, channels = np.concatenate([blocks, fb]), np.concatenate([channels, fc])
        return blocks, channels
