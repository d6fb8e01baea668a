"""FLOPs/params lookup tables: per (position, block choice, channel choice) counts, read and used.

Pure numpy (no MXNet): search and constraint checks import this; building lives in
:mod:`spos_deploy.tables.flops.build`, checking against graphs in :mod:`spos_deploy.tables.flops.validate`.
Counting an architecture from a table equals counting its whole graph exactly, because the paper
convention is additive over stem, blocks and head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
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
KIND = "flops"


@dataclass
class FlopsTable:
    """Counts of one configuration. Arrays are ``[position, block, channel]``, int64, -1 where invalid."""

    space: SearchSpace
    stem_flops: int
    stem_params: int
    head_flops: int
    head_params: int
    flops: np.ndarray
    params: np.ndarray

    def __post_init__(self) -> None:
        self._flops_sum = EntrySum(self.flops)
        self._params_sum = EntrySum(self.params)

    @property
    def valid(self) -> np.ndarray:
        """Which (position, block, channel) entries exist (a scale can give 0 mid channels in a custom space)."""
        return self.flops >= 0

    # ---- counting ---------------------------------------------------------------------------
    def count(self, blocks: Any, channels: Any) -> tuple[np.ndarray, np.ndarray]:
        """FLOPs and params of many architectures at once: ``blocks``/``channels`` are ``[N, L]`` (or ``[L]``)."""
        flops = self._flops_sum(blocks, channels) + (self.stem_flops + self.head_flops)
        params = self._params_sum(blocks, channels) + (self.stem_params + self.head_params)
        return one_or_many(blocks, flops), one_or_many(blocks, params)

    def within(
        self,
        blocks: Any,
        channels: Any,
        flops_range: tuple[float, float] = (0, np.inf),
        params_range: tuple[float, float] = (0, np.inf),
    ) -> np.ndarray:
        """Boolean mask of the architectures whose FLOPs and params lie in the closed ranges."""
        flops, params = self.count(blocks, channels)
        return (
            (flops >= flops_range[0])
            & (flops <= flops_range[1])
            & (params >= params_range[0])
            & (params <= params_range[1])
        )

    # ---- files ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def nested(a: np.ndarray) -> list:
            return nested_json(np.where(a >= 0, a, np.nan), int)

        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "config": self.space.to_config(),
            "units": {
                "flops": "SPOS paper convention: multiply-accumulates + bias adds + global-pool adds",
                "params": "conv/dense weights and biases + BN gamma/beta",
            },
            "layout": LAYOUT_NOTE,
            "stem": {"flops": self.stem_flops, "params": self.stem_params},
            "head": {"flops": self.head_flops, "params": self.head_params},
            "flops": nested(self.flops),
            "params": nested(self.params),
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> FlopsTable:
        """Check every field (one line naming it and ``source`` on the first problem) and build the table."""
        check_header(d, KIND, FORMAT_VERSION, source)
        space = table_space(d, source)
        stem = field_of(d, "stem", source, dict)
        head = field_of(d, "head", source, dict)

        def counts(key: str) -> np.ndarray:
            a = entry_array(d, key, space, source, integer=True)
            return np.where(np.isnan(a), -1, a).astype(np.int64)

        return cls(
            space=space,
            stem_flops=int(number(stem, "flops", f"{source}: stem", integer=True)),
            stem_params=int(number(stem, "params", f"{source}: stem", integer=True)),
            head_flops=int(number(head, "flops", f"{source}: head", integer=True)),
            head_params=int(number(head, "params", f"{source}: head", integer=True)),
            flops=counts("flops"),
            params=counts("params"),
        )

    @classmethod
    def load(cls, path: str | Path, expect: SearchSpace | None = None) -> FlopsTable:
        """Read a table; with ``expect``, refuse one made for another configuration."""
        table = cls.from_json(read_table(path), str(path))
        check_config(table.space, expect, str(path))
        return table

    # ---- reading ----------------------------------------------------------------------------
    def describe(self, source: str) -> tuple[list[str], list[str], list[list[Any]]]:
        """What ``spos-lut show`` prints: heading lines, then per (position, block) the range over channels."""
        lines = [
            f"{source}: FLOPs/params table, {self.space.describe()}",
            f"stem {self.stem_flops:,} FLOPs / {self.stem_params:,} params; "
            f"head {self.head_flops:,} / {self.head_params:,}",
        ]
        rows = []
        for pos in self.space.positions():
            for b, name in enumerate(BLOCK_NAMES):
                f = self.flops[pos.index, b]
                f = f[f >= 0]
                rows.append([pos.index, name, pos.stride, pos.in_size, f"{f.min() / 1e6:.3f}", f"{f.max() / 1e6:.3f}"])
        return lines, ["pos", "block", "stride", "inp_size", "min MFLOPs", "max MFLOPs"], rows


def default_table_name(space: SearchSpace) -> str:
    return f"flops_{space.describe()}.json"
