"""MicroNet lookup tables: per (position, block, channel) MicroNet params and ops, and a vectorized score.

The MicroNet score (``params / 6.9e6 + ops / 1170e6``, :mod:`spos_deploy.counting.micronet`) is a sum over ops,
and every op of an SPOS network belongs to the stem, one searchable position or the head; a position's
ops depend only on its own block and channel choice. So, like FLOPs, the score of any architecture is
stem + sum of its positions' entries + head, and a search can check millions of architectures per second
against a score budget without building a graph.

Entries are kept split into quantizable and other ops at full precision: at ``bits`` < 32 only the
quantizable part shrinks (by bits/32), so one table gives the exact score at every precision, not only the
32- and 8-bit scores the file also records for reading.

Building (:func:`build_micronet_table`) walks one uniform network per (block, channel), exactly like
:func:`spos_deploy.tables.flops.build.build_flops_table`; everything else here is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.counting.micronet import REF_OPS, REF_PARAMS
from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace, part_key
from spos_deploy.tables.flops.table import check_config, check_header, nested_array, read_table_json

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
        L, B, S, F = self.entries.shape
        self._flat = np.where(np.isnan(self.entries), 0.0, self.entries).reshape(L * B * S, F)
        self._offsets = (np.arange(L, dtype=np.int64) * B * S)[None, :]
        self._bstride = S

    @property
    def valid(self) -> np.ndarray:
        """Which (position, block, channel) entries exist."""
        return ~np.isnan(self.entries[..., 0])

    # ---- counting -------------------------------------------------------------------------------------
    def _sums(self, blocks: Any, channels: Any) -> np.ndarray:
        """``[N, field]`` totals (stem + positions + head) at full precision."""
        b = np.atleast_2d(np.asarray(blocks, dtype=np.int64))
        c = np.atleast_2d(np.asarray(channels, dtype=np.int64))
        idx = self._offsets[:, : b.shape[1]] + b * self._bstride + c
        return self._flat[idx].sum(axis=1) + (self.stem + self.head)

    def counts(self, blocks: Any, channels: Any, bits: int = 32) -> dict[str, np.ndarray]:
        """MicroNet ``params``, ``ops`` and ``score`` at ``bits`` of one (``[L]``) or many (``[N, L]``) archs."""
        f = bits_factor(bits)
        s = self._sums(blocks, channels)
        params = s[:, 1] + f * s[:, 0]
        ops = s[:, 3] + f * s[:, 2]
        out = {"params": params, "ops": ops, "score": params / REF_PARAMS + ops / REF_OPS}
        if np.ndim(blocks) == 1:
            return {k: v[0] for k, v in out.items()}
        return out

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
        def nested(a: np.ndarray) -> list:
            return [[[None if np.isnan(v) else float(v) for v in row] for row in pos] for pos in a]

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
            "layout": "[position][block choice][channel choice]; null where the choice gives 0 mid channels",
            "stem": part(self.stem),
            "head": part(self.head),
            **{k: nested(self.entries[..., i]) for i, k in enumerate(FIELDS)},
            "score": {str(bits): nested(self.score_entries(bits)) for bits in (32, 8)},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> MicroNetTable:
        check_header(d, KIND, FORMAT_VERSION, "MicroNet", source)
        try:
            space = SearchSpace.from_config(d["config"])

            arr = nested_array

            entries = np.stack([arr(d[k]) for k in FIELDS], axis=-1)
            stem = np.array([float(d["stem"][k]) for k in FIELDS])
            head = np.array([float(d["head"][k]) for k in FIELDS])
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{source}: malformed MicroNet table ({type(e).__name__}: {e})") from None
        want = (space.num_positions, space.num_blocks, space.num_scales, len(FIELDS))
        if entries.shape != want:
            raise BadInputError(f"{source}: table shape {entries.shape} does not match its config {want}")
        return cls(space, stem, head, entries)

    @classmethod
    def load(cls, path: str | Path, expect: SearchSpace | None = None) -> MicroNetTable:
        """Read a table; with ``expect``, refuse one made for another configuration."""
        table = cls.from_json(read_table_json(path), str(path))
        check_config(table.space, expect, str(path))
        return table


def _part_fields(rows: list) -> dict[str, np.ndarray]:
    """Sum MicroNet rows per owner into the four :data:`FIELDS`."""
    out: dict[str, np.ndarray] = {}
    for r in rows:
        v = out.setdefault(r.block, np.zeros(len(FIELDS)))
        if r.quantizable:
            v[0] += r.params
            v[2] += r.mults + r.adds
        else:
            v[1] += r.params
            v[3] += r.mults + r.adds
    return out


def build_micronet_table(space: SearchSpace, progress: bool = True) -> MicroNetTable:
    """Profile one uniform network per (block, channel) choice and split its MicroNet rows by owner."""
    from spos_deploy.counting.graph import graph_ops, symbol_from_block
    from spos_deploy.counting.micronet import micronet_rows
    from spos_deploy.nets.network import SposNet
    from spos_deploy.tables.flops.build import uniform_networks

    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    entries = np.full((L, B, S, len(FIELDS)), np.nan)
    stem = head = None
    size = space.input_size
    for b, c, spec, valid in uniform_networks(space, "micronet table", progress):
        rows, _ = micronet_rows(graph_ops(symbol_from_block(SposNet(spec)), (1, 3, size, size)))
        parts = _part_fields(rows)
        if "other" in parts:
            raise RuntimeError("MicroNet rows outside stem, positions and head: the table would not be exact")
        for p in valid:
            entries[p.index, b, c] = parts[part_key(p.index)]
        stem, head = parts["stem"], parts["head"]
    return MicroNetTable(space, stem, head, entries)


def default_micronet_name(space: SearchSpace) -> str:
    return f"micronet_{space.describe()}.json"
