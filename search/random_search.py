"""Random search: every generation is a fresh batch of new constrained random candidates.

Kept generation-shaped (``population`` candidates per generation) so that it shares the driver, the
budget accounting (only real evaluations count), checkpoints and resume with evolutionary search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .feasible import ConstrainedSampler
from .genes import Phase
from .state import ResultCache


@dataclass
class RandomSearch:
    sampler: ConstrainedSampler
    population: int

    def initial(self, rng: np.random.Generator, phase: Phase, cache: ResultCache) -> tuple[np.ndarray, np.ndarray]:
        return self.sampler.sample(rng, self.population, phase, exclude=set(cache.keys()))

    def next(
        self, rng: np.random.Generator, phase: Phase, phase_index: int, cache: ResultCache
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.initial(rng, phase, cache)
