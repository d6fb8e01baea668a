"""What the three lookup-table kinds (FLOPs/params, MicroNet, latency) share, implemented once.

* Reading: a table file is JSON (read with :func:`spos_deploy.atomic.read_json`, so a missing, binary,
  truncated or absurdly nested file is a one-line error), with a ``kind``, a ``format_version`` and a
  ``config`` (the search space, validated exactly like a model.json).
* Entries: ``[position][block choice][channel choice]`` nested lists. A choice the space says exists must
  have a finite, non-negative number; a choice that does not exist (0 mid channels) must be ``null``.
  Anything else is refused naming the entry and the file: a corrupted entry silently read as "choice not
  available" would make a search skip or mis-count architectures.
* Counting: every kind predicts ``stem + sum over positions l of entries[l, block_l, channel_l] + head``;
  :class:`EntrySum` is that gather, vectorized over ``[N, L]`` choices.
* Validation statistics shared by all kinds (MAPE, max error, shares within 5/10 %, Kendall tau from
  :mod:`spos_deploy.stats`).

Pure numpy (no MXNet): search and constraint checks import this.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import read_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import DEFAULT_REPEATS, DEFAULT_SCALES, SearchSpace
from spos_deploy.stats import kendall_tau

KINDS = {"flops": "FLOPs/params", "micronet": "MicroNet", "latency": "latency"}
"""Table kinds (the ``kind`` key of a file) and what messages call them."""

LAYOUT_NOTE = "[position][block choice][channel choice]; null where the choice gives 0 mid channels"


# ---- reading and the header -----------------------------------------------------------------------------
def read_table(path: str | Path) -> dict[str, Any]:
    """The JSON object of a lookup-table file with a known ``kind``, or a one-line error naming the file."""
    d = read_json(path, "lookup table")
    if not isinstance(d, dict):
        raise BadInputError(f"{path}: not a lookup table (a JSON {type(d).__name__}, expected an object)")
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise BadInputError(f"{path}: not a lookup table (kind {kind!r}; known kinds: {', '.join(KINDS)})")
    return d


def check_header(d: dict[str, Any], kind: str, version: int | tuple[int, ...], source: str) -> None:
    """Refuse a table file of another kind or format version (``version``: the one, or those, readable)."""
    if d.get("kind") != kind:
        raise BadInputError(f"{source}: not a {KINDS[kind]} table (kind {d.get('kind')!r})")
    have = d.get("format_version")
    readable = (version,) if isinstance(version, int) else version
    if type(have) is not int or have not in readable:
        raise BadInputError(f"{source}: format_version {have!r}, expected {' or '.join(map(str, readable))}")


_CONFIG_KEYS = {f.name for f in fields(SearchSpace)}


def table_space(d: dict[str, Any], source: str) -> SearchSpace:
    """The search space of a table's ``config``, validated like a model.json (one line naming the field)."""
    from spos_deploy.model_spec import MAX_POSITIONS, spec_from_dict

    config = field_of(d, "config", source, dict)
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise BadInputError(f"{source}: config: unknown key(s) {', '.join(map(repr, unknown))}")
    # model.json validation needs an architecture: any one of the right length (all widest) will do
    repeats = config.get("stage_repeats", DEFAULT_REPEATS)
    ints = isinstance(repeats, list | tuple) and all(type(r) is int and r > 0 for r in repeats)
    n = min(sum(repeats), MAX_POSITIONS + 1) if ints else 1
    scales = config.get("channel_scales", DEFAULT_SCALES)
    widest = len(scales) - 1 if isinstance(scales, list | tuple) and scales else 0
    probe = dict(config, block_choices=[0] * n, channel_choices=[widest] * n)
    return spec_from_dict(probe, f"{source}: config").space


def field_of(d: dict[str, Any], key: str, source: str, kind: type | tuple[type, ...]) -> Any:
    """``d[key]``, refused with the key's name when missing or of another JSON type."""
    if key not in d:
        raise BadInputError(f"{source}: malformed table: missing key '{key}'")
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise BadInputError(f"{source}: '{key}' must be {_type_name(kind)}, got {_short(v)}")
    return v


def number(d: dict[str, Any], key: str, source: str, integer: bool = False, signed: bool = False) -> float:
    """A finite number ``d[key]`` (non-negative unless ``signed``; an integer with ``integer``)."""
    v = field_of(d, key, source, (int, float))
    if not _number_ok(v, integer, signed):
        want = "an integer" if integer else "a finite number"
        raise BadInputError(f"{source}: '{key}' must be {want}{'' if signed else ' >= 0'}, got {_short(v)}")
    return int(v) if integer else float(v)


def _number_ok(v: Any, integer: bool, signed: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if not math.isfinite(v) or (v < 0 and not signed):
        return False
    return not integer or float(v).is_integer()


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- configuration -----------------------------------------------------------------------------------------
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


# ---- entry arrays ------------------------------------------------------------------------------------------
def entry_array(
    d: dict[str, Any], key: str, space: SearchSpace, source: str, integer: bool = False, gaps: bool = False
) -> np.ndarray:
    """``d[key]``, a ``[position][block][channel]`` nested list, as a float array (NaN where ``null``).

    Refused, naming the entry and the file: another shape, a non-number, a negative or non-finite value,
    a ``null`` where the choice exists (allowed with ``gaps``, for optional per-entry records) and a
    number where it does not.
    """
    x = field_of(d, key, source, list)
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    _check_length(x, L, f"{key}", source, "positions")
    valid = space.valid_channels()
    out = np.full((L, B, S), np.nan)
    for i, pos in enumerate(x):
        _check_length(pos, B, f"{key}[{i}]", source, "block choices")
        for b, row in enumerate(pos):
            _check_length(row, S, f"{key}[{i}][{b}]", source, "channel choices")
            for c, v in enumerate(row):
                where = f"{source}: {key}[{i}][{b}][{c}] (position {i}, block {b}, channel {c})"
                if v is None:
                    if valid[i][c] and not gaps:
                        raise BadInputError(f"{where} is null, but that choice exists")
                    continue
                if not valid[i][c]:
                    raise BadInputError(f"{where} is {_short(v)}, but that choice has 0 mid channels: expected null")
                if not _number_ok(v, integer):
                    want = "a non-negative integer" if integer else "a finite number >= 0"
                    raise BadInputError(f"{where} is {_short(v)}: expected {want}")
                out[i, b, c] = v
    return out


def _check_length(x: Any, n: int, name: str, source: str, what: str) -> None:
    if not isinstance(x, list):
        raise BadInputError(f"{source}: {name} must be a list of {n} {what}, got {_short(x)}")
    if len(x) != n:
        raise BadInputError(
            f"{source}: {name} has {len(x)} entries, expected {n} {what}: shape does not match its config"
        )


def nested_json(a: np.ndarray, fmt: Callable[[float], Any] = float) -> list:
    """An ``[L, B, S]`` array as the nested JSON lists of a table file (``null`` where NaN)."""
    return [[[None if np.isnan(v) else fmt(v) for v in row] for row in pos] for pos in np.asarray(a, float)]


# ---- the gather ----------------------------------------------------------------------------------------------
class EntrySum:
    """``sum over positions l of entries[l, blocks[:, l], channels[:, l]]`` for ``[N, L]`` choices.

    ``entries`` is ``[L, B, S]`` or ``[L, B, S, F]`` (F quantities summed at once); NaN entries (choices
    that do not exist) count 0. One flat ``take`` per call: millions of architectures per second.
    """

    def __init__(self, entries: np.ndarray) -> None:
        L, B, S = entries.shape[:3]
        flat = entries.reshape(L * B * S, *entries.shape[3:])
        self._flat = np.where(np.isnan(flat), 0, flat) if flat.dtype.kind == "f" else flat
        self._offsets = (np.arange(L, dtype=np.int64) * B * S)[None, :]
        self._bstride = S

    def __call__(self, blocks: Any, channels: Any) -> np.ndarray:
        """``[N]`` (or ``[N, F]``) sums; one architecture (``[L]``) is taken as ``N = 1``."""
        b = np.atleast_2d(np.asarray(blocks, dtype=np.int64))
        c = np.atleast_2d(np.asarray(channels, dtype=np.int64))
        idx = self._offsets[:, : b.shape[1]] + b * self._bstride + c
        return self._flat.take(idx, axis=0).sum(axis=1)


def one_or_many(choices: Any, values: np.ndarray) -> Any:
    """``values[0]`` when ``choices`` was one architecture (``[L]``), else ``values``."""
    return values[0] if np.ndim(choices) == 1 else values


def random_architectures(space: SearchSpace, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform random architectures (``[n, L]`` blocks and channels) that exist in ``space``:
    a channel choice a position lacks is replaced by the widest (:meth:`SearchSpace.fix_channels`)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, space.num_blocks, (n, space.num_positions))
    channels = rng.integers(0, space.num_scales, (n, space.num_positions))
    return blocks, space.fix_channels(channels)


def width_level_architectures(space: SearchSpace, n: int, seed: int, spread: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random architectures whose channel choices sit near one width level each: a level drawn uniformly
    from the channel choices (ordered by scale), every position within ``spread`` choices of it, blocks uniform.

    Uniform random channel choices average out over the positions, so their latencies crowd around the middle
    of the space; these span it from the narrowest architectures to the widest.
    """
    rng = np.random.default_rng(seed)
    by_scale = np.argsort(space.channel_scales, kind="stable")
    blocks = rng.integers(0, space.num_blocks, (n, space.num_positions))
    level = rng.integers(0, space.num_scales, (n, 1))
    jitter = rng.integers(-spread, spread + 1, (n, space.num_positions))
    channels = by_scale[np.clip(level + jitter, 0, space.num_scales - 1)]
    return blocks, space.fix_channels(channels)


# ---- validation statistics -----------------------------------------------------------------------------------
def validation_stats(predicted: Any, measured: Any) -> dict[str, Any]:
    """MAPE and max error (percent of measured), shares within 5% and 10%, Kendall tau (``None`` where
    undefined: fewer than two samples, or all equal)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = np.abs(p - m) / m * 100
    tau = kendall_tau(p, m)
    return {
        "samples": int(len(m)),
        "mape": float(err.mean()),
        "max_error": float(err.max()),
        "within_5": float((err <= 5).mean()),
        "within_10": float((err <= 10).mean()),
        "kendall_tau": None if math.isnan(tau) else tau,
    }


def count_report(table: dict[str, np.ndarray], graph: dict[str, np.ndarray], rel_tol: float = 0.0) -> dict[str, Any]:
    """Validation result of a count table (FLOPs/params, MicroNet) against graph counts of the same architectures.

    The contract keys of ``spos-lut validate --json`` describe the first quantity (an exact table has MAPE 0,
    max error 0, every sample within 5 %, tau 1); ``by_quantity`` has them for each; ``exact`` says every
    quantity matched within ``rel_tol`` (0: to the unit); ``fingerprint`` is null: counts need no hardware.
    ``mismatched`` lists the sample indices that did not match.
    """
    by = {k: validation_stats(table[k], graph[k]) for k in table}
    bad = np.zeros(len(next(iter(graph.values()))), bool)
    for k in table:
        t, g = np.asarray(table[k], float), np.asarray(graph[k], float)
        bad |= np.abs(t - g) > rel_tol * np.abs(g)
    first = next(iter(by.values()))
    return {
        **first,
        "fingerprint": None,
        "exact": not bad.any(),
        "by_quantity": by,
        "mismatched": [int(i) for i in np.flatnonzero(bad)],
    }
