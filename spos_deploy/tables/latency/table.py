"""Measured latency lookup tables: file format, the fingerprint and its one check, predictor and its correction.

Pure numpy: search checks millions of architectures per second with :meth:`LatencyTable.predict`.
Measuring lives in :mod:`spos_deploy.tables.latency.build`.

Two predictors share the file. The **fitted** one (tables built since format 2, the default):
``fixed_ms + sum of the chosen fitted entries``, entries solved by least squares on whole networks
measured in their deployed form (:mod:`spos_deploy.tables.latency.fit`). The **additive** one, kept as
the fit's prior and as the baseline it is compared with: ``slope * (stem + sum of the part-timed entries
+ head) + intercept``; entries measured on each block alone carry one session call's fixed overhead and
miss what a whole network shares, which a line fitted on a few whole networks only partly absorbs
(documented in docs/latency.md).

A machine's speed drifts between build and use (a shared VM by several percent within an hour), which
moves every latency alike. A table therefore stores a few anchor networks (with their end-to-end latency
at build time, for the record); a user re-measures them (:func:`spos_deploy.tables.latency.validate.reanchor`)
and predictions are scaled by :func:`reanchor_factor`, the median ratio of their times now over the table's
own predictions of them (:meth:`LatencyTable.anchor_reference`, ``speed_factor``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from spos_deploy.atomic import write_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import BLOCK_NAMES, SPACES, SearchSpace
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
    random_architectures,
    read_table,
    table_space,
)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # format 1: the additive predictor alone
FIT_NETWORKS = 80
"""Whole networks a fitted predictor is solved on by default (every (block, width) uniform, then random), on
a space with no measured count of its own (:data:`FIT_NETWORKS_BY_SPACE`). On the 224 px space a pass over
80 networks takes minutes at batch 1 and up to 11 min at batch 8: more would cost hours."""
FIT_NETWORKS_BY_SPACE = {"small": 480}
"""Measured counts. Small space (201 free entries), onnxruntime at 1 thread on a 2-core AMD EPYC, 2026-12-07
(benchmarks/results/latency_prediction/latency_prediction_small_b1_t1_fit480.md): the fit solved on the first
k of 480 whole networks has a cross-validated MAPE of 10.9 % at k = 80, 8.0 % at 240, 6.7 % at 320 and 6.6 %
at 480 (fp32); against 50 held-out networks measured twice, re-anchored, 7.8 % at 80, 6.6 % at 320, 5.4 % at
480 (int8: 16.3, 14.7, 14.1 %). Its networks take 0.1-0.4 ms, so 480 of them cost about 7 min (fp32) to
14 min (int8: its quantized exports) of an onnxruntime build on 2 cores; an OpenVINO int8 build about 70 min
(26 min of NNCF exports, then each fresh session compiles: more than 9 min a pass; measured 2026-12-07)."""


def default_fit_networks(space: SearchSpace) -> int:
    """The default count of whole networks a table of ``space`` is fitted on (:data:`FIT_NETWORKS_BY_SPACE`)."""
    name = next((n for n, s in SPACES.items() if s == space), None)
    return FIT_NETWORKS_BY_SPACE.get(name, FIT_NETWORKS)


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
    anchors: list[dict[str, Any]] = field(default_factory=list)  # blocks, channels, ms at the table's speed
    speed_factor: float = 1.0  # set when re-anchored on use (never saved): anchors now / predicted
    fitted: dict[str, Any] | None = None  # the fitted predictor: entries, fixed_ms, networks (module docstring)

    def __post_init__(self) -> None:
        self._sum = EntrySum(self.entries)
        self._fitted_sum = None if self.fitted is None else EntrySum(np.asarray(self.fitted["entries"], float))

    def set_fitted(self, fitted: dict[str, Any]) -> None:
        """Attach the fitted predictor (a build solves it on the table's own entries, after they exist)."""
        self.fitted = fitted
        self._fitted_sum = EntrySum(np.asarray(fitted["entries"], float))

    @property
    def predictor(self) -> str:
        """``fitted`` (whole-network least squares) or ``additive`` (part-timed sum and line)."""
        return "additive" if self.fitted is None else "fitted"

    @property
    def budget_ratio(self) -> float:
        """Measured budget latency over deployed latency, typical of the fit's networks (1 without them):
        a prediction times this is what a budget is checked against
        (:data:`spos_deploy.runtime.deployed.BUDGET_QUANTILE`)."""
        return float(self.fitted.get("budget_ratio", 1.0)) if self.fitted else 1.0

    def predict_budget(self, blocks: Any, channels: Any) -> np.ndarray:
        """Predicted budget latency (ms): what a search holds against ``--latency-max-ms``."""
        return self.budget_ratio * self.predict(blocks, channels)

    def per_position(self, blocks: Any, channels: Any) -> tuple[float, list[float]]:
        """One architecture's prediction split as (fixed part, one figure per position), at the re-anchored
        speed: what ``spos-profile --latency-table`` shows. The parts add up to :meth:`predict`."""
        k = self.speed_factor
        if self.fitted is not None:
            e = np.asarray(self.fitted["entries"], float)
            fixed = float(self.fitted["fixed_ms"])
            return k * fixed, [k * float(e[i, b, c]) for i, (b, c) in enumerate(zip(blocks, channels))]
        parts = [k * self.slope * float(self.entries[i, b, c]) for i, (b, c) in enumerate(zip(blocks, channels))]
        return k * (self.slope * (self.stem_ms + self.head_ms) + self.intercept), parts

    def additive(self) -> LatencyTable:
        """This table with its additive predictor only (the fit's prior; the baseline benchmarks compare with)."""
        return replace(self, fitted=None)

    def raw_sum(self, blocks: Any, channels: Any) -> np.ndarray:
        """stem + entries + head, without the fitted correction (``[N]`` or a scalar for one architecture)."""
        return one_or_many(blocks, self._sum(blocks, channels) + (self.stem_ms + self.head_ms))

    def predict(self, blocks: Any, channels: Any) -> np.ndarray:
        """Predicted end-to-end latency (ms) of one (``[L]``) or many (``[N, L]``) architectures, scaled by
        the re-anchored ``speed_factor`` (1 unless re-anchored)."""
        return self.speed_factor * self.predict_as_built(blocks, channels)

    def predict_as_built(self, blocks: Any, channels: Any) -> np.ndarray:
        """The prediction at the machine speed of the build (no re-anchoring)."""
        if self._fitted_sum is not None:
            return one_or_many(blocks, self._fitted_sum(blocks, channels) + float(self.fitted["fixed_ms"]))
        return self.slope * self.raw_sum(blocks, channels) + self.intercept

    def anchor_reference(self) -> list[float]:
        """What the anchors' times now are compared with: the table's own predictions of them, as built.

        Not their times measured once at the end of the build: a build's last minute can run in another
        machine state than its entries did (docs/latency.md). Against the predictions, the factor is the
        scale that makes the predictions match the machine now, whatever moved: the machine's speed, or
        the table's own global bias."""
        if not self.anchors:
            return []
        return [float(v) for v in self.predict_as_built(*self.anchor_choices())]

    def anchor_choices(self) -> tuple[list[list[int]], list[list[int]]]:
        """The anchors' block choices and channel choices, one list per anchor each."""
        return [a["blocks"] for a in self.anchors], [a["channels"] for a in self.anchors]

    # ---- files ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def nested(a: np.ndarray) -> list:
            return nested_json(a, lambda v: round(float(v), 6))

        return {
            "format_version": FORMAT_VERSION,
            "kind": "latency",
            "config": self.space.to_config(),
            "fingerprint": self.fingerprint,
            "units": "milliseconds, median of the timed runs",
            "layout": LAYOUT_NOTE,
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
            "anchors": self.anchors,
            "fitted": None
            if self.fitted is None
            else {**self.fitted, "entries": nested(np.asarray(self.fitted["entries"]))},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "table") -> LatencyTable:
        """Check every field (one line naming it and ``source`` on the first problem) and build the table."""
        check_header(d, "latency", READABLE_VERSIONS, source)
        space = table_space(d, source)
        fp = field_of(d, "fingerprint", source, dict)
        corr = field_of(d, "correction", source, dict) if "correction" in d else {}
        calibration = field_of(corr, "calibration_networks", f"{source}: correction", list) if corr else []

        def optional(key: str, gaps: bool) -> np.ndarray | None:
            return entry_array(d, key, space, source, gaps=gaps) if d.get(key) is not None else None

        return cls(
            space=space,
            fingerprint=dict(fp),
            stem_ms=number(d, "stem_ms", source),
            head_ms=number(d, "head_ms", source),
            entries=entry_array(d, "entries", space, source),
            dispersion=entry_array(d, "dispersion", space, source),
            slope=number(corr, "slope", f"{source}: correction", signed=True) if "slope" in corr else 1.0,
            intercept=number(corr, "intercept", f"{source}: correction", signed=True) if "intercept" in corr else 0.0,
            calibration=list(calibration),
            raw_entries=optional("raw_entries", gaps=False),
            probe_ms=optional("probe_ms", gaps=True),  # no drift probe on MXNet runtimes: null entries
            anchors=read_anchors(d.get("anchors"), space, source),
            fitted=read_fitted(d.get("fitted"), d, space, source),
        )

    @classmethod
    def load(
        cls,
        path: str | Path,
        expect_space: SearchSpace | None = None,
        expect_fingerprint: dict[str, Any] | None = None,
        allow_mismatch: bool = False,
    ) -> LatencyTable:
        """Read a table; refuse one made for another configuration or other hardware unless ``allow_mismatch``."""
        table = cls.from_json(read_table(path), str(path))
        check_config(table.space, expect_space, str(path))
        if expect_fingerprint is not None:
            check_fingerprint(table.fingerprint, expect_fingerprint, str(path), allow_mismatch)
        return table

    # ---- reading ----------------------------------------------------------------------------------------
    def describe(self, source: str) -> tuple[list[str], list[str], list[list[Any]]]:
        """What ``spos-lut show`` prints: heading lines, then per (position, block) the range over channels."""
        fp = self.fingerprint
        lines = [
            f"{source}: latency table, {self.space.describe()}, {fp.get('runtime')} {fp.get('runtime_version')} "
            f"({fp.get('provider')}), {fp.get('precision')}, batch {fp.get('batch')}, {fp.get('threads')} threads",
            f"measured on {fp.get('gpu') or fp.get('cpu')} ({fp.get('cores')} cores) at {fp.get('date')}",
            f"stem {self.stem_ms:.3f} ms, head {self.head_ms:.3f} ms; correction: "
            f"{self.slope:.3f} x sum + {self.intercept:.3f} ms",
            f"predictor: {self.predictor}"
            + (
                f" on {len(self.fitted.get('networks', []))} whole networks, fixed {self.fitted['fixed_ms']:.3f} ms, "
                f"cross-validated MAPE {self.fitted.get('cv_mape', float('nan')):.1f} %"
                if self.fitted
                else " (part-timed entries and one fitted line)"
            ),
            f"anchors: {len(self.anchors)} networks"
            + (" (re-measured when the table is used, to follow the machine's speed)" if self.anchors else ""),
        ]
        rows = []
        for pos in self.space.positions():
            for b, name in enumerate(BLOCK_NAMES):
                e = self.entries[pos.index, b]
                disp = f"{np.nanmax(self.dispersion[pos.index, b]):.1%}"
                rows.append(
                    [pos.index, name, pos.stride, pos.in_size, f"{np.nanmin(e):.3f}", f"{np.nanmax(e):.3f}", disp]
                )
        return lines, ["pos", "block", "stride", "inp_size", "min ms", "max ms", "max dispersion"], rows


def read_fitted(raw: Any, d: dict[str, Any], space: SearchSpace, source: str) -> dict[str, Any] | None:
    """The ``fitted`` predictor of a table file (absent or null: none), its entries and fixed cost checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: 'fitted' must be an object")
    where = f"{source}: fitted"
    entries = entry_array(raw, "entries", space, where)
    fixed = number(raw, "fixed_ms", where, signed=True)  # the fitted line's intercept: may be negative
    ratio = number(raw, "budget_ratio", where) if "budget_ratio" in raw else 1.0
    if not 1.0 <= ratio < 10:
        raise BadInputError(f"{where}: 'budget_ratio' must be in [1, 10)")
    return {**raw, "entries": entries, "fixed_ms": fixed, "budget_ratio": ratio}


def read_anchors(raw: Any, space: SearchSpace, source: str) -> list[dict[str, Any]]:
    """The ``anchors`` of a table file (absent or null: none, as in tables built before anchors), each
    checked: an architecture of the space and a positive latency."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadInputError(f"{source}: 'anchors' must be a list, got {type(raw).__name__}")
    out = []
    for i, a in enumerate(raw):
        where = f"{source}: anchors[{i}]"
        if not isinstance(a, dict):
            raise BadInputError(f"{where} must be an object")
        for key, n in (("blocks", space.num_blocks), ("channels", space.num_scales)):
            v = a.get(key)
            ok = isinstance(v, list) and len(v) == space.num_positions
            if not ok or not all(type(x) is int and 0 <= x < n for x in v):
                raise BadInputError(f"{where}: '{key}' must be {space.num_positions} choices in 0..{n - 1}")
        ms = number(a, "ms", where)
        if ms <= 0:
            raise BadInputError(f"{where}: 'ms' must be > 0")
        out.append(dict(a, ms=ms))
    return out


def reanchor_factor(reference_ms: Any, now_ms: Any) -> float:
    """How much slower (> 1) or faster the machine is now than the table predicts: the median over the
    anchors of now / reference (:meth:`LatencyTable.anchor_reference`). The median, so that one anchor
    disturbed while it was timed (another process, a page fault) does not move the factor of all
    predictions."""
    ref, now = np.asarray(reference_ms, float), np.asarray(now_ms, float)
    if ref.shape != now.shape or ref.size == 0:
        raise ValueError("reanchor_factor needs as many times now as references, at least one")
    if np.any(ref <= 0) or np.any(now <= 0) or not np.all(np.isfinite(now)):
        raise ValueError("anchor times must be finite and positive")
    return float(np.median(now / ref))


ANCHOR_AGREEMENT = 0.10  # the anchors' ratios now / reference must agree within this relative spread
STAT_SETS = ("as_built", "reanchored", "reanchored_in_pass")  # a validation's statistics, see validate
VALIDATION_PASSES = 20  # interleaved end-to-end passes of a validation: many short ones (validate.steady_medians)


def anchor_spread(reference_ms: Any, now_ms: Any) -> float:
    """Relative spread of the anchors' ratios now / reference: (max - min) / median, without the lowest and
    the highest ratio when there are five or more. A real change of the
    machine's speed moves every anchor alike; ratios that disagree mean the timing itself is unsteady (the
    OpenVINO cycles in benchmarks/results/latency_table_cycles.md: a factor of 1.9 on a quiet machine), and
    scaling by their median would add error instead of removing it."""
    r = np.sort(np.asarray(now_ms, float) / np.asarray(reference_ms, float))
    inner = r[1:-1] if r.size >= 5 else r  # one disturbed anchor at either end is the median's to absorb
    return float((inner[-1] - inner[0]) / np.median(r))


def speed_note(factor: float) -> str:
    """One line for the user: how the machine's speed now differs from the table's and that predictions follow."""
    pct = abs(factor - 1) * 100
    if pct < 0.05:
        return "anchors run as fast as the table predicts: predictions unchanged"
    word = "slower" if factor > 1 else "faster"
    return f"anchors run {pct:.1f} % {word} than the table predicts: predictions scaled by {factor:.3f}"


def latency_quantile(table: LatencyTable, q: float, samples: int = 20000, seed: int = 0) -> float:
    """Predicted latency (ms) below which a share ``q`` of random architectures falls: a budget that binds."""
    blocks, channels = random_architectures(table.space, samples, seed)
    return float(np.quantile(table.predict(blocks, channels), q))


def fingerprint_here(
    space: SearchSpace, runtime: str, precision: str, batch: int, threads: int, shuffle: str
) -> dict[str, Any]:
    """What a table measured here in these settings records; :data:`MATCH_KEYS` of it must match to use one.
    The runtime's own fields (engine, release, provider, deployed form, GPU) come from its record in
    :mod:`spos_deploy.runtime.registry` (importing the engine)."""
    from spos_deploy.machine import cpu_info
    from spos_deploy.runtime.registry import runtime_named

    rt = runtime_named(runtime)
    info = cpu_info()
    fp: dict[str, Any] = {
        "cpu": info["cpu"],
        "cpu_flags": info["cpu_flags"],
        "cores": info["usable_cores"],
        "threads": threads,
        "gpu": None,
        "runtime": rt.engine,
        "runtime_option": rt.name,
        "precision": precision,
        "batch": batch,
        "input_size": space.input_size,
        "shuffle": shuffle,
        "bn_merged": True,
        "config": space.describe(),
    }
    fp.update(rt.fingerprint_fields())
    return fp


def fingerprint_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Differences on the keys that decide whether measured latencies carry over."""
    out = []
    for k in MATCH_KEYS:
        if k in want and have.get(k) != want.get(k):
            out.append(f"{k}: table {have.get(k)!r}, here {want.get(k)!r}")
    return out


MISMATCH_HINT = "build a table here (spos-lut build --kind latency) or pass --allow-table-mismatch"


def check_fingerprint(
    table_fp: dict[str, Any], here_fp: dict[str, Any], source: str, allow: bool = False, hint: str = MISMATCH_HINT
) -> list[str]:
    """The one hardware check: refuse latencies measured on other hardware or settings, naming the differences.

    With ``allow`` the differences are returned instead (a caller may warn); ``hint`` says what to do.
    """
    diff = fingerprint_diff(table_fp, here_fp)
    if diff and not allow:
        raise BadInputError(f"{source}: table measured on other hardware or settings ({'; '.join(diff)}); {hint}")
    return diff


def fit_correction(raw_ms: np.ndarray, measured_ms: np.ndarray) -> tuple[float, float]:
    """Least-squares ``measured = slope * raw + intercept`` (slope 1, intercept mean residual for < 2 points).

    A slope that is not positive (networks so small, or a machine so noisy, that their times do not grow
    with their sums) would rank larger networks as faster; the correction is then a pure scale, the median
    of measured / raw, which keeps the entries' order. So is a line that reaches zero above half the smallest
    calibrated sum: fitted to noise over a narrow range, it predicts non-positive times for networks a little
    smaller than those it saw (seen: slope 3.45 over sums 0.339-0.349 ms predicted -0.011 ms for an anchor).
    """
    raw_ms, measured_ms = np.asarray(raw_ms, float), np.asarray(measured_ms, float)
    if len(raw_ms) < 2 or np.ptp(raw_ms) == 0:
        return 1.0, float(np.mean(measured_ms - raw_ms)) if len(raw_ms) else 0.0
    slope, intercept = np.polyfit(raw_ms, measured_ms, 1)
    if slope <= 0 or slope * 0.5 * raw_ms.min() + intercept <= 0:
        return float(np.median(measured_ms / raw_ms)), 0.0
    return float(slope), float(intercept)
