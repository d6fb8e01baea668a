"""Check a latency table against whole networks measured end to end on the same machine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from spos_deploy.atomic import atomic_path
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.runtime.timing import time_fn
from spos_deploy.tables.core import random_architectures, validation_stats
from spos_deploy.tables.latency.build import LatencySetup, export_deployed, fingerprint, measure_network
from spos_deploy.tables.latency.table import LatencyTable, check_fingerprint


def setup_of(table: LatencyTable) -> LatencySetup:
    """The measurement settings a table was built with (from its fingerprint)."""
    fp = table.fingerprint
    missing = [k for k in ("runtime_option", "precision", "batch", "threads", "shuffle") if k not in fp]
    if missing:
        raise BadInputError(f"fingerprint lacks {', '.join(missing)}: cannot tell how the table was measured")
    return LatencySetup(
        runtime=fp["runtime_option"],
        precision=fp["precision"],
        batch=fp["batch"],
        threads=fp["threads"],
        shuffle=fp["shuffle"],
        calibration_networks=0,
    )


def _interleaved_ort(
    specs: list[ModelSpec], setup: LatencySetup, rounds: int, progress: bool, sessions: int = 3
) -> list[float]:
    """End-to-end medians measured in ``rounds`` interleaved passes over all networks.

    A shared 2-core VM drifts by several percent over minutes; timing each network once, one after the
    other, turns that drift into ranking errors (two such passes agreed only to Kendall tau 0.85 here).
    Interleaving spreads the drift over all networks alike, and the median of the per-round medians is
    what a network costs. Each network also gets ``sessions`` onnxruntime sessions, used in turn: one
    session's memory placement can make it a few percent faster or slower for as long as it lives (two
    15-round validations of the same int8 networks, one session each, agreed only to tau 0.88).
    """
    from spos_deploy.runtime.ort import ort_runner

    device = "gpu" if setup.runtime == "ort-cuda" else "cpu"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in tqdm(specs, desc="export", unit="net", disable=not progress):
            path = export_deployed(spec, Path(tmp), setup.precision, setup.seed)
            size = spec.space.input_size
            shape = (setup.batch, 3, size, size)
            threads = setup.resolved_threads()
            runs.append(
                [ort_runner(path, setup.batch, shape, device=device, threads=threads) for _ in range(max(1, sessions))]
            )
        per_round = np.zeros((rounds, len(specs)))
        order_rng = np.random.default_rng(0)
        for r in tqdm(range(rounds), desc="interleaved rounds", unit="round", disable=not progress):
            for i in order_rng.permutation(len(specs)):
                run = runs[i][r % len(runs[i])]
                times = time_fn(run, warmup=3, repeats=max(10, setup.network_repeats // rounds))
                per_round[r, i] = np.median(times) * 1e3
    return [float(v) for v in np.median(per_round, axis=0)]


def measure_architectures(
    table: LatencyTable, blocks: np.ndarray, channels: np.ndarray, rounds: int = 5, progress: bool = True
) -> list[float]:
    """End-to-end latency (ms) of architectures in the deployed form and settings the table was measured in."""
    setup = setup_of(table)
    specs = [
        ModelSpec(table.space, tuple(map(int, b)), tuple(map(int, c)), f"net{i}", shuffle=setup.shuffle)
        for i, (b, c) in enumerate(zip(blocks, channels))
    ]
    if setup.runtime.startswith("ort"):
        return _interleaved_ort(specs, setup, rounds, progress)
    return [measure_network(s, setup) for s in tqdm(specs, desc="end-to-end", disable=not progress)]


def validate_table(
    table: LatencyTable,
    samples: int,
    seed: int = 1000,
    allow_mismatch: bool = False,
    progress: bool = True,
    rounds: int = 5,
    source: str = "table",
) -> dict[str, Any]:
    """Predicted vs measured end to end for ``samples`` random architectures, in the table's own settings."""
    if samples < 1 or rounds < 1:
        raise BadInputError(f"samples ({samples}) and rounds ({rounds}) must be >= 1")
    setup = setup_of(table)
    here = fingerprint(setup, table.space)
    hint = "validation must run where the table was built (or pass --allow-table-mismatch)"
    check_fingerprint(table.fingerprint, here, source, allow_mismatch, hint)
    blocks, channels = random_architectures(table.space, samples, seed)
    predicted = table.predict(blocks, channels)
    measured = measure_architectures(table, blocks, channels, rounds, progress)
    stats = validation_stats(predicted, measured)
    stats["points"] = [
        {"blocks": list(map(int, b)), "channels": list(map(int, c)), "predicted_ms": float(p), "measured_ms": float(m)}
        for b, c, p, m in zip(blocks, channels, predicted, measured)
    ]
    stats["fingerprint_here"] = here
    return stats


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
