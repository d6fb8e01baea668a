"""Genes of the search: one block id and one channel id per searchable position, and how they vary.

Pure numpy, vectorized over candidates: ``blocks`` and ``channels`` are ``[N, L]`` integer arrays. A channel
id is only ever drawn where the space has it (a small scale can give 0 mid channels in a custom space), so
every sampled, mutated or crossed-over candidate is a valid architecture without a repair step.

Uniform and constrained sampling of whole candidates live in :mod:`search.sampling`.

A :class:`Phase` says which genes are searched: ``joint`` searches both; ``blocks-first`` first searches
blocks with every channel fixed (at the widest choice the constraints allow), then channels with the best
blocks fixed; ``blocks`` is that first phase alone (for a supernet trained at full width only, whose
narrower channel choices were never trained). Fixed genes are never sampled or mutated, so a phase never
leaves its slice of the space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spos_deploy.space import SearchSpace

MODES = ("joint", "blocks-first", "blocks")


@dataclass(frozen=True, eq=False)
class GeneSpace:
    """Which gene values exist: ``num_blocks`` block ids everywhere, and the valid channel ids per position."""

    num_blocks: int
    valid_channels: np.ndarray  # [L, S] bool

    @classmethod
    def from_valid(cls, valid: np.ndarray) -> GeneSpace:
        """From a table's ``valid`` mask ``[L, B, S]`` (a channel id is valid where every block has it)."""
        return cls(num_blocks=valid.shape[1], valid_channels=np.asarray(valid).all(axis=1))

    @classmethod
    def from_space(cls, space: SearchSpace) -> GeneSpace:
        """Channel ids that give at least one mid channel at each position (the rule every table uses)."""
        valid = np.array(space.valid_channels())
        return cls(num_blocks=space.num_blocks, valid_channels=valid)

    @property
    def num_positions(self) -> int:
        return self.valid_channels.shape[0]

    @property
    def num_scales(self) -> int:
        return self.valid_channels.shape[1]

    def channel_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """``[L, S]`` table of the valid ids of each position (left-aligned) and ``[L]`` how many there are."""
        counts = self.valid_channels.sum(axis=1)
        ids = np.zeros(self.valid_channels.shape, dtype=np.int64)
        for pos, row in enumerate(self.valid_channels):
            ok = np.flatnonzero(row)
            ids[pos, : len(ok)] = ok
        return ids, counts

    def is_valid(self, blocks: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """``[N]``: ids in range and every channel id valid at its position."""
        b, c = np.atleast_2d(blocks), np.atleast_2d(channels)
        in_range = ((b >= 0) & (b < self.num_blocks)).all(axis=1) & ((c >= 0) & (c < self.num_scales)).all(axis=1)
        cc = np.clip(c, 0, self.num_scales - 1)
        return in_range & self.valid_channels[np.arange(self.num_positions)[None, :], cc].all(axis=1)


@dataclass(frozen=True, eq=False)
class Phase:
    """Which genes a search phase varies; ``fixed_*`` hold the values of the genes it does not."""

    name: str = "joint"
    fixed_blocks: np.ndarray | None = None  # [L] or None (searched)
    fixed_channels: np.ndarray | None = None

    def apply(self, blocks: np.ndarray, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Overwrite the fixed genes (broadcast over candidates)."""
        if self.fixed_blocks is not None:
            blocks = np.broadcast_to(np.asarray(self.fixed_blocks, np.int64), blocks.shape).copy()
        if self.fixed_channels is not None:
            channels = np.broadcast_to(np.asarray(self.fixed_channels, np.int64), channels.shape).copy()
        return blocks, channels

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "fixed_blocks": None if self.fixed_blocks is None else [int(v) for v in self.fixed_blocks],
            "fixed_channels": None if self.fixed_channels is None else [int(v) for v in self.fixed_channels],
        }

    @classmethod
    def from_json(cls, d: dict) -> Phase:
        def arr(v: list | None) -> np.ndarray | None:
            return None if v is None else np.array(v, dtype=np.int64)

        return cls(d["name"], arr(d["fixed_blocks"]), arr(d["fixed_channels"]))


def random_channels(
    rng: np.random.Generator, gs: GeneSpace, shape: tuple[int, int], valid: np.ndarray | None = None
) -> np.ndarray:
    """Uniform channel ids among each position's valid ones (``valid``: a narrower ``[L, S]`` mask)."""
    ids, counts = gs.channel_ids() if valid is None else GeneSpace(gs.num_blocks, valid).channel_ids()
    pick = rng.integers(0, counts[None, :], size=shape)
    return ids[np.arange(gs.num_positions)[None, :], pick]


def mutate(
    rng: np.random.Generator,
    gs: GeneSpace,
    blocks: np.ndarray,
    channels: np.ndarray,
    p_block: float,
    p_channel: float,
    phase: Phase = Phase(),
) -> tuple[np.ndarray, np.ndarray]:
    """Each block gene with probability ``p_block`` and each channel gene with ``p_channel`` redrawn uniformly.

    Draws happen for every gene whether it changes or not, so the random stream does not depend on the
    population's values (a resumed search draws exactly what an uninterrupted one does).
    """
    blocks, channels = np.array(blocks, dtype=np.int64), np.array(channels, dtype=np.int64)
    shape = blocks.shape
    mb = rng.random(shape) < p_block
    mc = rng.random(shape) < p_channel
    new_b = rng.integers(0, gs.num_blocks, size=shape)
    new_c = random_channels(rng, gs, shape)
    return phase.apply(np.where(mb, new_b, blocks), np.where(mc, new_c, channels))


def crossover(
    rng: np.random.Generator,
    blocks_a: np.ndarray,
    channels_a: np.ndarray,
    blocks_b: np.ndarray,
    channels_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform crossover: every block gene and every channel gene comes from parent a or b with equal chance.

    A gene is taken from a parent at the same position, so a child of two valid parents is valid.
    """
    take_b = rng.random(np.shape(blocks_a)) < 0.5
    take_c = rng.random(np.shape(channels_a)) < 0.5
    return np.where(take_b, blocks_b, blocks_a), np.where(take_c, channels_b, channels_a)


# ---- identity of an architecture ----------------------------------------------------------------------
def arch_key(blocks: np.ndarray, channels: np.ndarray) -> str:
    """A readable, stable key: ``"0,3,1|9,4,2"`` (blocks | channels)."""
    return ",".join(str(int(v)) for v in blocks) + "|" + ",".join(str(int(v)) for v in channels)


def arch_keys(blocks: np.ndarray, channels: np.ndarray) -> list[str]:
    return [arch_key(b, c) for b, c in zip(np.atleast_2d(blocks), np.atleast_2d(channels))]


def parse_key(key: str) -> tuple[np.ndarray, np.ndarray]:
    b, c = key.split("|")
    return np.array([int(v) for v in b.split(",")], np.int64), np.array([int(v) for v in c.split(",")], np.int64)
