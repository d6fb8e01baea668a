"""Measured latency lookup tables: file format, fingerprint check, predictor and validation statistics.

Pure numpy: search checks millions of architectures per second with :meth:`LatencyTable.predict`.
Measuring lives in :mod:`spos_deploy.tables.latency.build`.

Prediction = ``slope * (stem + sum of the chosen entries + head) + intercept``. Entries are measured on
each block alone, so every entry carries one session call's fixed overhead and misses what a whole
network gains from a warm cache; a least-squares line fitted at build time against a few whole
networks measured end to end absorbs both (documented in docs/latency.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import SearchSpace
from spos_deploy.tables.flops.table import check_config, check_header, nested_array, read_table_json

FORMAT_VERSION = 1

# Fingerprint keys that must match the machine a prediction is made for (the date need not).
MATCH_KEYS = (
    "cpu",
    "cpu_flags",
    "gpu",
    "runtime",
    "runtime_version",
    "provider",
    "precision",
    "batch",
    "threads",
    "shuffle",
    "bn_merged",
)


@dataclass
class LatencyTable:
    """Median latencies in milliseconds: ``entries[position, block, channel]`` (NaN where a choice does not exist)."""

    space: SearchSpace
    fingerprint: dict[str, Any]
    stem_ms: float
    head_ms: float
    entries: np.ndarray
    dispersion: np.ndarray  # relative interquartile range of each entry's timed runs
    slope: float = 1.0
    intercept: float = 0.0
    calibration: list[dict[str, Any]] = field(default_factory=list)  # whole networks measured at build time
    raw_entries: np.ndarray | None = None  # as timed, before drift compensation
    probe_ms: np.ndarray | None = None  # drift probe time recorded with each entry

    def __post_init__(self) -> None:
        L, B, S = self.entries.shape
        self._flat = np.where(np.isnan(self.entries), 0.0, self.entries).reshape(-1)
        self._offsets = (np.arange(L, dtype=np.int64) * B * S)[None, :]
        self._bstride = S

    def raw_sum(self, blocks: Any, channels: Any) -> np.ndarray:
        """stem + entries + head, without the fitted correction (``[N]`` or a scalar for one architecture)."""
        b = np.atleast_2d(np.asarray(blocks, dtype=np.int64))
        c = np.atleast_2d(np.asarray(channels, dtype=np.int64))
        s = self._flat.take(self._offsets[:, : b.shape[1]] + b * self._bstride + c).sum(axis=1)
        s = s + (self.stem_ms + self.head_ms)
        return s[0] if np.ndim(blocks) == 1 else s

    def predict(self, blocks: Any, channels: Any) -> np.ndarray:
        """Predicted end-to-end latency (ms) of one (``[L]``) or many (``[N, L]``) architectures."""
        return self.slope * self.raw_sum(blocks, channels) + self.intercept

    # ---- files ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def nested(a: np.ndarray) -> list:
            return [[[None if np.isnan(v) else round(float(v), 6) for v in row] for row in pos] for pos in a]

        return {
            "format_version": FORMAT_VERSION,
            "kind": "latency",
            "config": self.space.to_config(),
            "fingerprint": self.fingerprint,
            "units": "milliseconds, median of the timed runs",
            "layout": "[position][block choice][channel choice]; null where the choice gives 0 mid channels",
            "stem_ms": self.stem_ms,
            "head_ms": self.head_ms,
            "entries": nested(self.entries),
            "dispersion": nested(self.dispersion),
            "raw_entries": None if self.raw_entries is None else nested(self.raw_entries),
            "probe_ms": None if self.probe_ms is None else nested(self.probe_ms),
            "correction": {
                "model": "predicted = slope * (stem + sum of entries + head) + intercept",
                "slope": self.slope,
                "intercept": self.intercept,
                "calibration_networks": self.calibration,
            },
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> LatencyTable:
        check_header(d, "latency", FORMAT_VERSION, "latency", source)
        try:
            space = SearchSpace.from_config(d["config"])

            arr = nested_array

            corr = d.get("correction", {})
            table = cls(
                space=space,
                fingerprint=dict(d["fingerprint"]),
                stem_ms=float(d["stem_ms"]),
                head_ms=float(d["head_ms"]),
                entries=arr(d["entries"]),
                dispersion=arr(d["dispersion"]),
                slope=float(corr.get("slope", 1.0)),
                intercept=float(corr.get("intercept", 0.0)),
                calibration=list(corr.get("calibration_networks", [])),
                raw_entries=arr(d["raw_entries"]) if d.get("raw_entries") else None,
                probe_ms=arr(d["probe_ms"]) if d.get("probe_ms") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{source}: malformed latency table ({type(e).__name__}: {e})") from None
        want = (space.num_positions, space.num_blocks, space.num_scales)
        if table.entries.shape != want:
            raise BadInputError(f"{source}: table shape {table.entries.shape} does not match its config {want}")
        return table

    @classmethod
    def load(
        cls,
        path: str | Path,
        expect_space: SearchSpace | None = None,
        expect_fingerprint: dict[str, Any] | None = None,
        allow_mismatch: bool = False,
    ) -> LatencyTable:
        """Read a table; refuse one made for another configuration or other hardware unless ``allow_mismatch``."""
        p = Path(path)
        table = cls.from_json(read_table_json(p), str(p))
        check_config(table.space, expect_space, str(p))
        if expect_fingerprint is not None and not allow_mismatch:
            diff = fingerprint_diff(table.fingerprint, expect_fingerprint)
            if diff:
                raise BadInputError(
                    f"{p}: table measured on other hardware or settings ({'; '.join(diff)}); "
                    "build a table here (spos-lut build --kind latency) or pass --allow-table-mismatch"
                )
        return table


def random_architectures(table: LatencyTable, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random architectures, channel choices a position lacks replaced by the widest."""
    space = table.space
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, space.num_blocks, (n, space.num_positions))
    channels = rng.integers(0, space.num_scales, (n, space.num_positions))
    valid = ~np.isnan(table.entries[np.arange(space.num_positions)[None, :], blocks, channels])
    return blocks, np.where(valid, channels, space.widest_choice)


def latency_quantile(table: LatencyTable, q: float, samples: int = 20000, seed: int = 0) -> float:
    """Predicted latency (ms) below which a share ``q`` of random architectures falls: a budget that binds."""
    blocks, channels = random_architectures(table, samples, seed)
    return float(np.quantile(table.predict(blocks, channels), q))


def fingerprint_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Differences on the keys that decide whether measured latencies carry over."""
    out = []
    for k in MATCH_KEYS:
        if k in want and have.get(k) != want.get(k):
            out.append(f"{k}: table {have.get(k)!r}, here {want.get(k)!r}")
    return out


def fit_correction(raw_ms: np.ndarray, measured_ms: np.ndarray) -> tuple[float, float]:
    """Least-squares ``measured = slope * raw + intercept`` (slope 1, intercept mean residual for < 2 points)."""
    raw_ms, measured_ms = np.asarray(raw_ms, float), np.asarray(measured_ms, float)
    if len(raw_ms) < 2 or np.ptp(raw_ms) == 0:
        return 1.0, float(np.mean(measured_ms - raw_ms)) if len(raw_ms) else 0.0
    slope, intercept = np.polyfit(raw_ms, measured_ms, 1)
    return float(slope), float(intercept)


# ---- validation statistics (pure) ---------------------------------------------------------------------
def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b rank correlation (ties handled), O(n^2): validation sets are small."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant_minus_discordant = float((dx * dy).sum())
    n0 = len(i)
    tx, ty = float((dx == 0).sum()), float((dy == 0).sum())
    denom = np.sqrt((n0 - tx) * (n0 - ty))
    return concordant_minus_discordant / denom if denom else float("nan")


def validation_stats(predicted: Any, measured: Any) -> dict[str, float]:
    """MAPE and max error (percent of measured), shares within 5% and 10%, Kendall tau."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = np.abs(p - m) / m * 100
    return {
        "samples": int(len(m)),
        "mape": float(err.mean()),
        "max_error": float(err.max()),
        "within_5": float((err <= 5).mean()),
        "within_10": float((err <= 10).mean()),
        "kendall_tau": kendall_tau(p, m),
    }
