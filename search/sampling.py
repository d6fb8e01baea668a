"""The two architecture samplers of the toolkit, shared by supernet training and search.

* :class:`UniformSampler`: every position draws a block uniformly and a channel id uniformly among the ids
  the space has there (:meth:`spos_deploy.space.SearchSpace.valid_channels`), optionally narrowed to the
  ``allowed`` ids of a channel-selection warm-up, with a search phase's fixed genes kept.
* :func:`reject` / :class:`RejectionSampler`: draw from a proposal in batches and keep the candidates an
  acceptance test passes, up to a cap of draws (search adds de-duplication and a guided fallback on top in
  :class:`search.feasible.ConstrainedSampler`).

Pure numpy. The random stream is part of the contract: training resumes bit for bit and search resumes to
the same result, so the draws made here (their order and shapes) must not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace

from .constraints import Constraint
from .genes import GeneSpace, Phase, arch_keys, random_channels

Genes = tuple[np.ndarray, np.ndarray]


def _gene_space(space: SearchSpace | GeneSpace) -> GeneSpace:
    return space if isinstance(space, GeneSpace) else GeneSpace.from_space(space)


class UniformSampler:
    """Uniform blocks and uniform valid (and allowed) channel ids; ``rng`` is the stream of :meth:`sample`."""

    def __init__(self, space: SearchSpace | GeneSpace, rng: np.random.Generator | None = None):
        self.gs = _gene_space(space)
        self.rng = rng

    def valid_mask(self, allowed: np.ndarray | None) -> np.ndarray:
        """``[L, S]``: valid ids, narrowed to ``allowed``; a position left with none keeps all its valid ids."""
        valid = self.gs.valid_channels
        if allowed is None:
            return valid
        mask = valid & np.isin(np.arange(self.gs.num_scales), np.asarray(allowed))[None, :]
        empty = ~mask.any(axis=1)
        mask[empty] = valid[empty]
        return mask

    def draw(
        self, rng: np.random.Generator, n: int, allowed: np.ndarray | None = None, phase: Phase = Phase()
    ) -> Genes:
        """``n`` candidates ``[n, L]`` from ``rng`` (blocks first, then channels), ``phase``'s fixed genes kept."""
        shape = (n, self.gs.num_positions)
        blocks = rng.integers(0, self.gs.num_blocks, size=shape)
        channels = random_channels(rng, self.gs, shape, self.valid_mask(allowed))
        return phase.apply(blocks, channels)

    def sample(self, n: int, allowed: np.ndarray | None = None, phase: Phase = Phase()) -> Genes:
        """:meth:`draw` from the sampler's own generator."""
        assert self.rng is not None, "UniformSampler.sample needs a generator (pass rng=)"
        return self.draw(self.rng, n, allowed, phase)


@dataclass
class Rejected:
    """What :func:`reject` kept (in draw order), how many it drew and whether any draw passed at all."""

    blocks: list[np.ndarray]
    channels: list[np.ndarray]
    drawn: int
    any_accepted: bool


def reject(
    propose: Callable[[int], Genes],
    accept: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int,
    batch: int,
    cap: int,
    seen: set[str] | None = None,
) -> Rejected:
    """Draw ``batch`` candidates at a time until ``n`` are accepted or ``cap`` have been drawn.

    With ``seen`` (a set of architecture keys, updated in place) only new, distinct candidates are kept;
    without it duplicates are kept as drawn (a training path may repeat).
    """
    kept_b: list[np.ndarray] = []
    kept_c: list[np.ndarray] = []
    drawn, any_accepted = 0, False
    while drawn < cap and len(kept_b) < n:
        b, c = propose(batch)
        drawn += batch
        ok = accept(b, c)
        any_accepted |= bool(ok.any())
        idx = np.flatnonzero(ok)
        keys = arch_keys(b[ok], c[ok]) if seen is not None else [None] * len(idx)
        for i, key in zip(idx, keys):
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            kept_b.append(b[i])
            kept_c.append(c[i])
            if len(kept_b) == n:
                break
    return Rejected(kept_b, kept_c, drawn, any_accepted)


class RejectionSampler:
    """Uniform paths kept when they are inside ``constraint`` (duplicates allowed): training's constrained
    sampling. Fails with a one-line error when the constraint is (nearly) impossible to meet."""

    def __init__(self, base: UniformSampler, constraint: Constraint, batch: int = 512, max_batches: int = 200):
        self.base, self.constraint, self.batch, self.max_batches = base, constraint, batch, max_batches

    def sample(self, n: int, allowed: np.ndarray | None = None) -> Genes:
        got = reject(
            lambda k: self.base.sample(k, allowed), self.constraint.inside, n, self.batch, self.batch * self.max_batches
        )
        if len(got.blocks) < n:
            raise BadInputError(
                f"constraints {self.constraint.bounds} are (nearly) impossible: {len(got.blocks)} of "
                f"{got.drawn} random paths met them"
            )
        return np.array(got.blocks), np.array(got.channels)
