"""MicroNet lookup tables: per (position, block, channel) MicroNet params and ops, and a vectorized score.

The MicroNet score (``params / 6.9e6 + ops / 1170e6``, :mod:`spos_deploy.counting.micronet`) is a sum over ops,
and every op of an SPOS network belongs to the stem, one searchable position or the head; a position's
ops depend only on its own block and channel choice. So, like FLOPs, the score of any architecture is
stem + sum of its positions' entries + head, and a search can check millions of architectures per second
against a score budget without building a graph.

Entries are kept split into quantizable and other ops at full precision: at ``bits`` < 32 only the
quantizable part shrinks (by bits/32), so one table gives the exact score at every precision, not only the
32- and 8-bit scores the file also records for reading.

Building (:mod:`spos_deploy.tables.micronet.build`) walks one uniform network per (block, channel), exactly
like the FLOPs table; checking against graphs is :mod:`spos_deploy.tables.micronet.validate`; everything here
is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.counting.micronet import REF_OPS, REF_PARAMS
from spos_deploy.errors import BadInputError
from spos_deploy.space import BLOCK_NAMES, SearchSpace
from spos_deploy.tables.core import (
    LAYOUT_NOTE,
    EntrySum,
    check_config,
    check_header,
    entry_array,
    field_of,
    nested_json,
    number,
    one_or_many,
    read_table,
    table_space,
)

FORMAT_VERSION = 1
KIND = "micronet"
# The four quantities kept per entry (full precision); at `bits` the *_quant ones scale by bits/32.
FIELDS = ("params_quant", "params_other", "ops_quant", "ops_other")


def bits_factor(bits: int) -> float:
    """How much a quantizable op's params and ops shrink at ``bits`` (the rule of :func:`micronet.at_bits`)."""
    if not 1 <= int(bits) <= 32:
        raise BadInputError(f"bits must be in 1..32, got {bits}")
    return bits / 32 if bits < 32 else 1.0


@dataclass
class MicroNetTable:
    """MicroNet counts of one configuration.

    ``entries`` is ``[position, block, channel, field]`` (float64, NaN where a choice gives 0 mid channels),
    fields as in :data:`FIELDS`; ``stem`` and ``head`` are ``[field]``.
    """

    space: SearchSpace
    stem: np.ndarray
    head: np.ndarray
    entries: np.ndarray

    def __post_init__(self) -> None:
        self._sum = EntrySum(self.entries)

    @property
    def valid(self) -> np.ndarray:
        """Which (position, block, channel) entries exist."""
        return ~np.isnan(self.entries[..., 0])

    # ---- counting -------------------------------------------------------------------------------------
    def _sums(self, blocks: Any, channels: Any) -> np.ndarray:
        """``[N, field]`` totals (stem + positions + head) at full precision."""
        return self._sum(blocks, channels) + (self.stem + self.head)

    def counts(self, blocks: Any, channels: Any, bits: int = 32) -> dict[str, np.ndarray]:
        """MicroNet ``params``, ``ops`` and ``score`` at ``bits`` of one (``[L]``) or many (``[N, L]``) archs."""
        f = bits_factor(bits)
        s = self._sums(blocks, channels)
        params = s[:, 1] + f * s[:, 0]
        ops = s[:, 3] + f * s[:, 2]
        out = {"params": params, "ops": ops, "score": params / REF_PARAMS + ops / REF_OPS}
        return {k: one_or_many(blocks, v) for k, v in out.items()}

    def score(self, blocks: Any, channels: Any, bits: int = 32) -> np.ndarray:
        """MicroNet score at ``bits`` (vectorized like :meth:`counts`)."""
        return self.counts(blocks, channels, bits)["score"]

    def score_entries(self, bits: int) -> np.ndarray:
        """Per-entry scores ``[L, B, S]`` at ``bits`` (NaN where invalid); stem and head not included."""
        f = bits_factor(bits)
        e = self.entries
        return (e[..., 1] + f * e[..., 0]) / REF_PARAMS + (e[..., 3] + f * e[..., 2]) / REF_OPS

    # ---- files ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def part(v: np.ndarray) -> dict[str, float]:
            return {k: float(x) for k, x in zip(FIELDS, v)}

        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "config": self.space.to_config(),
            "units": {
                "params": "MicroNet parameters at 32 bits (mask bits count 1/16)",
                "ops": "MicroNet mults + adds at 32 bits",
                "quant/other": "at b < 32 bits the *_quant values scale by b/32, the *_other values do not",
                "score": f"params / {REF_PARAMS:g} + ops / {REF_OPS:g} (stem and head not included per entry)",
            },
            "layout": LAYOUT_NOTE,
            "stem": part(self.stem),
            "head": part(self.head),
            **{k: nested_json(self.entries[..., i]) for i, k in enumerate(FIELDS)},
            "score": {str(bits): nested_json(self.score_entries(bits)) for bits in (32, 8)},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> MicroNetTable:
        """Check every field (one line naming it and ``source`` on the first problem) and build the table.

        The recorded ``score`` entries are derived (for reading only) and not read back.
        """
        check_header(d, KIND, FORMAT_VERSION, source)
        space = table_space(d, source)
        entries = np.stack([entry_array(d, k, space, source) for k in FIELDS], axis=-1)

        def part(key: str) -> np.ndarray:
            p = field_of(d, key, source, dict)
            return np.array([number(p, k, f"{source}: {key}") for k in FIELDS])

        return cls(space, part("stem"), part("head"), entries)

    @classmethod
    def load(cls, path: str | Path, expect: SearchSpace | None = None) -> MicroNetTable:
        """Read a table; with ``expect``, refuse one made for another configuration."""
        table = cls.from_json(read_table(path), str(path))
        check_config(table.space, expect, str(path))
        return table

    # ---- reading ----------------------------------------------------------------------------------------
    def describe(self, source: str, bits: int = 32) -> tuple[list[str], list[str], list[list[Any]]]:
        """What ``spos-lut show`` prints: heading lines, then per (position, block) the score range over channels."""
        stem, head = self.counts_of(self.stem, bits), self.counts_of(self.head, bits)
        lines = [
            f"{source}: MicroNet table, {self.space.describe()} (scores at {bits} bits)",
            f"stem {stem[0] / 1e6:.3f} M params, {stem[1] / 1e6:.3f} M ops; "
            f"head {head[0] / 1e6:.3f} M params, {head[1] / 1e6:.3f} M ops",
        ]
        scores = self.score_entries(bits)
        rows = []
        for pos in self.space.positions():
            for b, name in enumerate(BLOCK_NAMES):
                s = scores[pos.index, b]
                rows.append([pos.index, name, pos.stride, pos.in_size, f"{np.nanmin(s):.5f}", f"{np.nanmax(s):.5f}"])
        return lines, ["pos", "block", "stride", "inp_size", "min score", "max score"], rows

    @staticmethod
    def counts_of(fields: np.ndarray, bits: int = 32) -> tuple[float, float]:
        """(params, ops) at ``bits`` of one ``[field]`` vector (the stem, the head or one entry)."""
        f = bits_factor(bits)
        return float(fields[1] + f * fields[0]), float(fields[3] + f * fields[2])


def default_micronet_name(space: SearchSpace) -> str:
    return f"micronet_{space.describe()}.json"
