"""Check a latency table against whole networks measured end to end on the same machine; re-anchor it.

Where a table's error comes from is split three ways (:func:`error_sources`): a global change of the
machine's speed between build and use (what re-anchoring removes), the fitted correction (what refitting
its line on the validation networks would remove), and the single entries (what is left). A table's
expected error is reported over several validation rounds of fresh architectures (:func:`validate_rounds`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.atomic import atomic_path
from spos_deploy.deploy.timing_forms import export_deployed
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.deployed import drift_free, pass_drift, session_matrix, steady_medians
from spos_deploy.runtime.registry import runtime_named
from spos_deploy.stats import kendall_tau
from spos_deploy.tables.core import random_architectures, validation_stats
from spos_deploy.tables.latency.build import (
    LatencySetup,
    fingerprint,
    measure_network,
    network_shape,
    time_anchors,
)
from spos_deploy.tables.latency.table import (
    ANCHOR_AGREEMENT,
    STAT_SETS,
    VALIDATION_PASSES,
    LatencyTable,
    anchor_spread,
    check_fingerprint,
    fit_correction,
    reanchor_factor,
    speed_note,
)

SUMMARY_KEYS = ("mape", "within_10", "kendall_tau")
DRIFT_WARNING = 0.10  # interleaved passes whose typical speeds differ by more: the timing is unsteady here


def setup_of(table: LatencyTable, runtime: str | None = None) -> LatencySetup:
    """The measurement settings a table was built with (from its fingerprint); ``runtime`` replaces its
    runtime, to check the table against the runtime a user asks for."""
    fp = table.fingerprint
    missing = [k for k in ("runtime_option", "precision", "batch", "threads", "shuffle") if k not in fp]
    if missing:
        raise BadInputError(f"fingerprint lacks {', '.join(missing)}: cannot tell how the table was measured")
    return LatencySetup(
        runtime=runtime or fp["runtime_option"],
        precision=fp["precision"],
        batch=fp["batch"],
        threads=fp["threads"],
        shuffle=fp["shuffle"],
        calibration_networks=0,
    )


def check_here(
    table: LatencyTable, allow_mismatch: bool = False, source: str = "table", runtime: str | None = None
) -> dict[str, Any]:
    """This machine's fingerprint in the table's settings (or for ``runtime``), refused where it differs."""
    here = fingerprint(setup_of(table, runtime), table.space)
    hint = "validation must run where the table was built (or pass --allow-table-mismatch)"
    if runtime and runtime != table.fingerprint.get("runtime_option"):
        hint = f"build one for it: spos-lut build --kind latency {runtime_named(runtime).options}"
        allow_mismatch = False
    check_fingerprint(table.fingerprint, here, source, allow_mismatch, hint)
    return here


def use_table(
    path: str | Path,
    space: Any,
    allow_mismatch: bool = False,
    reanchor_on: bool = True,
    hint: str = "pass --allow-table-mismatch to use it for that device anyway",
) -> tuple[LatencyTable, str, bool]:
    """A latency table about to predict for ``space`` on this machine: its configuration checked, refused when
    measured on other hardware or settings (unless ``allow_mismatch``), and re-anchored to this machine's
    speed now (unless ``reanchor_on`` is off). Returns it, one line for the user saying what was done, and
    whether it was measured elsewhere (allowed)."""
    table = LatencyTable.load(path, expect_space=space)
    here = fingerprint(setup_of(table), table.space)
    diff = check_fingerprint(table.fingerprint, here, str(path), allow_mismatch, hint)
    if diff:
        return table, f"{path}: from other hardware or settings ({'; '.join(diff)}): predictions as built", True
    if not reanchor_on:
        return table, f"{path}: predictions as built (not re-anchored)", False
    info = reanchor(table)
    return table, f"{path}: {info['note'] if info else 'no anchor networks (an older table): as built'}", False


def specs_of(table: LatencyTable, blocks: Any, channels: Any, prefix: str = "net") -> list[ModelSpec]:
    """Architectures as the networks ``table`` measures (its space and shuffle form): what validation, the
    search's closed loop and the benchmarks export and time."""
    shuffle = table.fingerprint.get("shuffle", "reshape")
    return [
        ModelSpec(table.space, tuple(map(int, b)), tuple(map(int, c)), f"{prefix}{i}", shuffle=shuffle)
        for i, (b, c) in enumerate(zip(blocks, channels))
    ]


def _interleaved(specs: list[ModelSpec], setup: LatencySetup, passes: int, progress: bool) -> np.ndarray:
    """``[passes, networks]`` session medians: each pass times every network once, in a fresh session made
    for it, in a shuffled order (:func:`spos_deploy.runtime.deployed.session_matrix`, the deployed-latency
    definition).

    A shared 2-core VM drifts by several percent over minutes; timing each network once, one after the
    other, turns that drift into ranking errors (two such passes agreed only to Kendall tau 0.85 here).
    Interleaving spreads the drift over all networks alike, and :func:`steady_medians` of the passes is
    what a network costs. A fresh session per pass, because sessions of one small network settle in
    different modes (docs/latency.md): a user's session is a fresh one.
    """
    with tempfile.TemporaryDirectory() as tmp:
        shape = network_shape(specs[0].space, setup)
        paths = [
            export_deployed(spec, Path(tmp), setup.precision, setup.seed, setup.runtime)
            for spec in tqdm(specs, desc="export", unit="net", disable=not progress)
        ]
        makers = [lambda p=p: setup.runner(p, shape) for p in paths]
        calls = max(10, setup.network_repeats // passes)
        return session_matrix(makers, passes, calls=calls, progress=progress, desc="end-to-end")


def measure_passes(
    table: LatencyTable, blocks: Any, channels: Any, passes: int = VALIDATION_PASSES, progress: bool = True
) -> np.ndarray:
    """``[passes, N]`` end-to-end ms of architectures in the table's deployed form and settings (one row
    for MXNet runtimes, which time each network on its own)."""
    setup = setup_of(table)
    specs = specs_of(table, blocks, channels)
    if setup.onnx_runtime:
        return _interleaved(specs, setup, passes, progress)
    return np.array([[measure_network(s, setup) for s in tqdm(specs, desc="end-to-end", disable=not progress)]])


def measure_architectures(
    table: LatencyTable,
    blocks: np.ndarray,
    channels: np.ndarray,
    rounds: int = VALIDATION_PASSES,
    progress: bool = True,
) -> list[float]:
    """End-to-end latency (ms) of architectures over ``rounds`` interleaved passes (:func:`steady_medians`)."""
    return [float(v) for v in steady_medians(measure_passes(table, blocks, channels, rounds, progress))]


def reanchor(table: LatencyTable, apply: bool = True) -> dict[str, Any] | None:
    """Re-measure the table's anchors now (a few seconds of timing, plus exporting them) and, with
    ``apply``, scale its predictions by the factor when the anchors agree on it (:func:`anchor_spread`);
    ``None`` for a table without anchors."""
    if not table.anchors:
        return None
    setup = setup_of(table)
    specs = specs_of(table, *table.anchor_choices(), "anchor")
    check = compare_anchors(table, time_anchors(specs, setup))
    factor, spread, agree = check["factor"], check["anchor_spread"], check["anchors_agree"]
    note = speed_note(factor)
    if not agree:
        note = (
            f"anchors disagree (ratios now / predicted spread {100 * spread:.0f} % > {100 * ANCHOR_AGREEMENT:.0f} %): "
            "timing is unsteady here, predictions left as built"
        )
    if apply and agree:
        table.speed_factor = factor
    return {**check, "note": note, "anchors_predicted_ms": table.anchor_reference()}


def error_sources(
    raw_sums: Any,
    slope: float,
    intercept: float,
    measured: Any,
    factor: float | None = None,
    per_pass: Any = None,
    in_pass: float | None = None,
) -> dict[str, Any]:
    """Split a table's MAPE on validation networks into its sources (percentage points of MAPE).

    * machine speed: MAPE as built minus MAPE with the best single scale (median measured / predicted),
      the part a global speed change explains; the anchors' factor is shown beside the best one, both as
      re-measured before the validation (``factor``) and as timed inside its passes (``in_pass``);
    * correction: the best-scale MAPE minus the MAPE of the correction line refitted on these networks;
    * entries: what a refitted line still misses (single entries, and the ground truth's own noise,
      ``measurement_noise_pct``: the per-network spread over interleaved passes once each pass's speed is
      divided out, over sqrt(passes)).
    """
    raw, m = np.asarray(raw_sums, float), np.asarray(measured, float)
    built = slope * raw + intercept
    best = float(np.median(m / built))
    s, b = fit_correction(raw, m)

    def mape(pred: np.ndarray) -> float:
        return float(np.mean(np.abs(pred - m) / m) * 100)

    out = {
        "speed_factor_anchors": factor,
        "speed_factor_in_pass": in_pass,
        "speed_factor_best": best,
        "mape_as_built": mape(built),
        "mape_reanchored": None if factor is None else mape(factor * built),
        "mape_reanchored_in_pass": None if in_pass is None else mape(in_pass * built),
        "mape_best_scale": mape(best * built),
        "mape_refitted_line": mape(s * raw + b),
        "measurement_noise_pct": None,
    }
    out["from_machine_speed"] = out["mape_as_built"] - out["mape_best_scale"]
    out["from_correction"] = out["mape_best_scale"] - out["mape_refitted_line"]
    out["from_entries"] = out["mape_refitted_line"]
    pp = None if per_pass is None else np.asarray(per_pass, float)
    out["pass_drift_pct"] = out["tau_ceiling"] = None
    if pp is not None and pp.ndim == 2 and len(pp) >= 2:
        steady = drift_free(pp)
        rel_sd = steady.std(axis=0, ddof=1) / np.median(steady, axis=0)
        out["measurement_noise_pct"] = float(np.median(rel_sd) / np.sqrt(len(pp)) * 100)
        out["pass_drift_pct"] = 100 * pass_drift(pp)
        out["tau_ceiling"] = halves_tau(pp)
    return out


def halves_tau(per_pass: Any) -> float | None:
    """Kendall tau between the medians of the even and the odd passes: how well the measurement ranks the
    networks against itself, a ceiling for any table's tau on them (``None`` below 2 passes or networks)."""
    pp = np.asarray(per_pass, float)
    if pp.ndim != 2 or len(pp) < 2 or pp.shape[1] < 2:
        return None
    steady = drift_free(pp)
    tau = kendall_tau(np.median(steady[0::2], axis=0), np.median(steady[1::2], axis=0))
    return None if np.isnan(tau) else float(tau)


def drift_warning(sources: dict[str, Any], threads: int) -> str | None:
    """One line when the passes drifted more than :data:`DRIFT_WARNING` (``None`` otherwise)."""
    drift = sources.get("pass_drift_pct")
    if drift is None or drift <= 100 * DRIFT_WARNING:
        return None
    hint = " (fewer threads time more steadily on a shared VM: try --threads 1)" if threads > 1 else ""
    return (
        f"timing unsteady: the machine's speed moved {drift:.0f} % between interleaved passes at "
        f"{threads} thread{'s' if threads > 1 else ''}; measured latencies here carry that noise{hint}"
    )


def compare_anchors(table: LatencyTable, anchors_ms: Any) -> dict[str, Any] | None:
    """The re-anchoring factor, spread and agreement of anchor times against the table's predictions of them
    (``None`` without anchors): for the anchors :func:`reanchor` times, and for those timed inside a
    validation's own passes (the same machine state as the networks it checks)."""
    if not table.anchors:
        return None
    reference = table.anchor_reference()
    now = [float(v) for v in anchors_ms]
    spread = anchor_spread(reference, now)
    return {
        "factor": reanchor_factor(reference, now),
        "anchors_agree": bool(spread <= ANCHOR_AGREEMENT),
        "anchor_spread": spread,
        "anchors_now_ms": now,
    }


def validation_round(
    table: LatencyTable,
    samples: int,
    seed: int,
    passes: int = VALIDATION_PASSES,
    reanchor_on: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """One validation: re-anchor (unless off), then ``samples`` fresh random architectures measured end to
    end, with the table's anchors timed again inside the same interleaved passes.

    The statistics reported are those of the predictions a user gets: re-anchored when the anchors agreed a
    minute before, as built otherwise (or without anchors, or with ``reanchor_on`` off). ``as_built``,
    ``reanchored`` (by that factor even when the anchors disagree) and ``reanchored_in_pass`` (by the
    anchors timed with the networks: the table's own error, without the machine's drift since) hold all three."""
    info = reanchor(table, apply=False) if reanchor_on else None
    factor = info["factor"] if info else None
    applied = factor if info and info["anchors_agree"] else None
    blocks, channels = random_architectures(table.space, samples, seed)
    timed_anchors = bool(table.anchors) and setup_of(table).onnx_runtime  # MXNet: no shared passes
    anchor_b, anchor_c = table.anchor_choices() if timed_anchors else ([], [])
    per_pass_all = measure_passes(table, [*blocks, *anchor_b], [*channels, *anchor_c], passes, progress)
    steady = steady_medians(per_pass_all)
    measured, per_pass = steady[:samples], per_pass_all[:, :samples]
    in_pass = compare_anchors(table, steady[samples:]) if timed_anchors else None
    in_factor = in_pass["factor"] if in_pass else None
    built = table.predict_as_built(blocks, channels)
    reported = built * applied if applied else built
    result = {
        **validation_stats(reported, measured),
        "seed": seed,
        "as_built": validation_stats(built, measured),
        "reanchored": validation_stats(built * factor, measured) if factor else None,
        "reanchored_in_pass": validation_stats(built * in_factor, measured) if in_factor else None,
        "reanchor": info,
        "anchors_in_pass": in_pass,
        "error_sources": error_sources(
            table.raw_sum(blocks, channels), table.slope, table.intercept, measured, factor, per_pass, in_factor
        ),
    }
    if table.fitted is not None:  # the part-timed sum and line the fit replaced, on the same measurements
        result["additive"] = validation_stats(
            table.additive().predict_as_built(blocks, channels) * (applied or 1), measured
        )
    result["points"] = [
        {"blocks": list(map(int, b)), "channels": list(map(int, c)), "predicted_ms": float(p), "measured_ms": float(m)}
        for b, c, p, m in zip(blocks, channels, reported, measured)
    ]
    return result


def validate_table(
    table: LatencyTable,
    samples: int,
    seed: int = 1000,
    allow_mismatch: bool = False,
    progress: bool = True,
    rounds: int = VALIDATION_PASSES,
    source: str = "table",
    reanchor: bool = True,
) -> dict[str, Any]:
    """One validation round (``rounds``: interleaved measurement passes, the name this function always had)."""
    if samples < 1 or rounds < 1:
        raise BadInputError(f"samples ({samples}) and rounds ({rounds}) must be >= 1")
    here = check_here(table, allow_mismatch, source)
    return {**validation_round(table, samples, seed, rounds, reanchor, progress), "fingerprint_here": here}


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and worst of MAPE, share within 10 % and Kendall tau over rounds, as built and re-anchored
    (worst: the largest MAPE, the smallest share and tau)."""

    def of(key: str) -> dict[str, Any] | None:
        sets = [r[key] for r in rounds if r.get(key)]
        if len(sets) < len(rounds) or not sets:
            return None
        out: dict[str, Any] = {}
        for k in SUMMARY_KEYS:
            vals = [s[k] for s in sets if s[k] is not None]
            worst = max if k == "mape" else min
            out[k] = {"mean": float(np.mean(vals)), "worst": float(worst(vals))} if vals else None
        return out

    factors = [r["reanchor"]["factor"] for r in rounds if r.get("reanchor")]
    in_pass = [r["anchors_in_pass"]["factor"] for r in rounds if r.get("anchors_in_pass")]
    return {
        "rounds": len(rounds),
        **{key: of(key) for key in STAT_SETS},
        "speed_factors": factors,
        "speed_factors_in_pass": in_pass,
    }


def validate_rounds(
    table: LatencyTable,
    samples: int,
    rounds: int = 1,
    seed: int = 0,
    passes: int = VALIDATION_PASSES,
    reanchor: bool = True,
    allow_mismatch: bool = False,
    progress: bool = True,
    source: str = "table",
    runtime: str | None = None,
) -> dict[str, Any]:
    """``rounds`` validations, fresh architectures each (seeds ``seed``, ``seed + 1``, ...): per round and
    summarised (:func:`summarize_rounds`). The top-level statistics pool every round's networks."""
    if samples < 1 or rounds < 1 or passes < 1:
        raise BadInputError(f"samples ({samples}), rounds ({rounds}) and passes ({passes}) must be >= 1")
    here = check_here(table, allow_mismatch, source, runtime)
    per = [validation_round(table, samples, seed + r, passes, reanchor, progress) for r in range(rounds)]
    points = [dict(p, round=i) for i, r in enumerate(per) for p in r["points"]]
    pooled = validation_stats([p["predicted_ms"] for p in points], [p["measured_ms"] for p in points])
    for r in per:
        r.pop("points")
    threads = setup_of(table).resolved_threads()
    warnings = [w for r in per if (w := drift_warning(r["error_sources"], threads))]
    return {
        **pooled,
        "warnings": warnings,
        "reanchor": reanchor and bool(table.anchors),
        "rounds": per,
        "summary": summarize_rounds(per),
        "points": points,
        "fingerprint_here": here,
    }


def scatter_plot(stats: dict[str, Any], path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = "n/a" if stats["kendall_tau"] is None else f"{stats['kendall_tau']:.3f}"
    p = np.array([x["predicted_ms"] for x in stats["points"]])
    m = np.array([x["measured_ms"] for x in stats["points"]])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = min(p.min(), m.min()) * 0.95, max(p.max(), m.max()) * 1.05
    xs = np.linspace(lo, hi, 2)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10%")
    ax.plot(xs, xs, "k--", lw=1, label="predicted = measured")
    ax.scatter(m, p, s=18)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted from the table (ms)")
    ax.set_title(
        f"{title}\nMAPE {stats['mape']:.2f}%, within 10% {stats['within_10']:.0%}, tau {tau}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def heatmap(table: LatencyTable, path: str | Path) -> None:
    """The entries as one heat map per block choice (position x channel choice), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spos_deploy.space import BLOCK_NAMES

    fig, axes = plt.subplots(1, table.space.num_blocks, figsize=(4 * table.space.num_blocks, 5), sharey=True)
    for b, ax in enumerate(np.atleast_1d(axes)):
        im = ax.imshow(table.entries[:, b, :], aspect="auto", cmap="viridis")
        ax.set_title(BLOCK_NAMES[b])
        ax.set_xlabel("channel choice")
        fig.colorbar(im, ax=ax, label="ms")
    np.atleast_1d(axes)[0].set_ylabel("position")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def widening_violations(table: LatencyTable, samples: int = 2000, seed: int = 0) -> int:
    """How many of ``samples`` random architectures the table predicts slower than the same architecture made
    wider at every position (one channel choice up, where the position has it). Reported, not a defect in
    itself: on CPUs, widths whose channels align with the vector width run faster than narrower unaligned
    ones (docs/latency.md)."""
    space = table.space
    blocks, channels = random_architectures(space, samples, seed)
    wider = np.array([space.fix_channels(np.minimum(c + 1, space.widest_choice)) for c in channels])
    return int(np.sum(table.predict_as_built(blocks, channels) > table.predict_as_built(blocks, wider) + 1e-12))


def predictor_report(
    tables: dict[str, LatencyTable], blocks: Any, channels: Any, first_ms: Any, second_ms: Any, fastest: float = 0.2
) -> dict[str, Any]:
    """Predictors against held-out architectures measured twice, independently (deployed latency each time).

    The ground truth is the mean of the two measurements; ``repeat`` is how well the second agrees with the
    first (the ceiling any predictor is judged against); every statistic is given on all architectures and on
    the ``fastest`` share of them (where budgets bite)."""
    first, second = np.asarray(first_ms, float), np.asarray(second_ms, float)
    truth = (first + second) / 2
    fast = truth <= np.quantile(truth, fastest)
    out: dict[str, Any] = {
        "samples": int(len(truth)),
        "fastest_share": fastest,
        "repeat": validation_stats(second, first),
        "repeat_fastest": validation_stats(second[fast], first[fast]),
        "predictors": {},
    }
    for name, table in tables.items():
        p = table.predict_as_built(blocks, channels)
        out["predictors"][name] = {
            "all": validation_stats(p, truth),
            "fastest": validation_stats(p[fast], truth[fast]),
            "widening_violations": widening_violations(table),
        }
    return out
