"""FLOPs/params lookup tables: per (position, block choice, channel choice) counts, read and used.

Pure numpy (no MXNet): search and constraint checks import this, and building lives in
:mod:`spos_deploy.tables.flops.build`. Counting an architecture from a table equals counting its whole
graph exactly, because the paper convention is additive over stem, blocks and head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace

FORMAT_VERSION = 1


def read_table_json(path: str | Path) -> dict[str, Any]:
    """The JSON object of a lookup-table file, or a one-line error naming the file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise BadInputError(f"{p}: no such lookup table") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
        raise BadInputError(f"{p}: not a JSON lookup table ({e})") from None
    if not isinstance(d, dict):
        raise BadInputError(f"{p}: not a lookup table (a JSON {type(d).__name__})")
    return d


def check_header(d: dict[str, Any], kind: str, version: int, what: str, source: str) -> None:
    """Refuse a table file of another kind or format version, naming both."""
    if d.get("kind") != kind:
        raise BadInputError(f"{source}: not a {what} table (kind {d.get('kind')!r})")
    if d.get("format_version") != version:
        raise BadInputError(f"{source}: format_version {d.get('format_version')!r}, expected {version}")


def nested_array(x: list, missing: float = np.nan, dtype: Any = float) -> np.ndarray:
    """A ``[position][block][channel]`` JSON list (``null`` where invalid) as an array."""
    return np.array([[[missing if v is None else v for v in row] for row in pos] for pos in x], dtype=dtype)


def check_config(table_space: SearchSpace, expect: SearchSpace | None, source: str) -> None:
    """Refuse a table made for another search-space configuration, naming the differences."""
    if expect is None:
        return
    diff = config_diff(table_space.to_config(), expect.to_config())
    if diff:
        raise BadInputError(f"{source}: table made for another configuration ({'; '.join(diff)})")


def config_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Human-readable differences between two configurations (``key: table X, asked Y``)."""
    keys = sorted(set(have) | set(want))
    return [f"{k}: table {have.get(k)!r}, asked {want.get(k)!r}" for k in keys if have.get(k) != want.get(k)]


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
        L, B, S = self.flops.shape
        self._stride = np.array([B * S, S, 1], dtype=np.int64)
        self._offsets = (np.arange(L, dtype=np.int64) * B * S)[None, :]
        self._flat_flops = self.flops.reshape(-1)
        self._flat_params = self.params.reshape(-1)

    @property
    def valid(self) -> np.ndarray:
        """Which (position, block, channel) entries exist (a scale can give 0 mid channels in a custom space)."""
        return self.flops >= 0

    # ---- counting ---------------------------------------------------------------------------
    def _flat_index(self, blocks: np.ndarray, channels: np.ndarray) -> np.ndarray:
        blocks = np.asarray(blocks, dtype=np.int64)
        channels = np.asarray(channels, dtype=np.int64)
        return self._offsets[:, : blocks.shape[-1]] + blocks * self._stride[1] + channels

    def count(self, blocks: Any, channels: Any) -> tuple[np.ndarray, np.ndarray]:
        """FLOPs and params of many architectures at once: ``blocks``/``channels`` are ``[N, L]`` (or ``[L]``)."""
        b = np.atleast_2d(blocks)
        idx = self._flat_index(b, np.atleast_2d(channels))
        flops = self._flat_flops.take(idx).sum(axis=1) + (self.stem_flops + self.head_flops)
        params = self._flat_params.take(idx).sum(axis=1) + (self.stem_params + self.head_params)
        if np.ndim(blocks) == 1:
            return flops[0], params[0]
        return flops, params

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
            return [[[int(v) if v >= 0 else None for v in row] for row in pos] for pos in a]

        return {
            "format_version": FORMAT_VERSION,
            "kind": "flops",
            "config": self.space.to_config(),
            "units": {
                "flops": "SPOS paper convention: multiply-accumulates + bias adds + global-pool adds",
                "params": "conv/dense weights and biases + BN gamma/beta",
            },
            "layout": "[position][block choice][channel choice]; null where the choice gives 0 mid channels",
            "stem": {"flops": self.stem_flops, "params": self.stem_params},
            "head": {"flops": self.head_flops, "params": self.head_params},
            "flops": nested(self.flops),
            "params": nested(self.params),
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> FlopsTable:
        try:
            check_header(d, "flops", FORMAT_VERSION, "FLOPs/params", source)
            space = SearchSpace.from_config(d["config"])

            def arr(x: list) -> np.ndarray:
                return nested_array(x, -1, np.int64)

            table = cls(
                space=space,
                stem_flops=int(d["stem"]["flops"]),
                stem_params=int(d["stem"]["params"]),
                head_flops=int(d["head"]["flops"]),
                head_params=int(d["head"]["params"]),
                flops=arr(d["flops"]),
                params=arr(d["params"]),
            )
        except BadInputError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{source}: malformed FLOPs table ({type(e).__name__}: {e})") from None
        want = (space.num_positions, space.num_blocks, space.num_scales)
        if table.flops.shape != want or table.params.shape != want:
            raise BadInputError(f"{source}: table shape {table.flops.shape} does not match its config {want}")
        return table

    @classmethod
    def load(cls, path: str | Path, expect: SearchSpace | None = None) -> FlopsTable:
        """Read a table; with ``expect``, refuse one made for another configuration."""
        table = cls.from_json(read_table_json(path), str(path))
        check_config(table.space, expect, str(path))
        return table


def default_table_name(space: SearchSpace) -> str:
    return f"flops_{space.describe()}.json"
