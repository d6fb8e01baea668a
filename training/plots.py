"""Plots of sampled paths: the three-panel sampler comparison and a run's sampled distribution per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from spos_deploy.search.constraints import Constraint

from spos_deploy.atomic import atomic_path

from .sampling import RejectionSampler, StrollingEvolution, UniformSampler, coverage_cv


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def compare_samplers(space, constraint: Constraint, n: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Metric values of ``n`` paths from each sampler: none, random with constraint, strolling evolution."""
    allowed = np.arange(space.num_scales)
    out = {}
    b, c = UniformSampler(space, np.random.default_rng(seed)).sample(n, allowed)
    out["no constraint"] = constraint.values(b, c)
    b, c = RejectionSampler(UniformSampler(space, np.random.default_rng(seed + 1)), constraint).sample(n, allowed)
    out["random with constraint"] = constraint.values(b, c)
    evo = StrollingEvolution(UniformSampler(space, np.random.default_rng(seed + 2)), constraint)
    b, c = evo.sample(n, allowed)
    out["strolling evolution"] = constraint.values(b, c)
    return out


def three_panel(
    samples: dict[str, dict[str, np.ndarray]], constraint: Constraint, path: str | Path, grid: int = 6
) -> dict[str, float]:
    """Scatter of the two constrained metrics per sampler, with the target box; returns the coverage CVs."""
    plt = _plt()
    kx, ky = list(constraint.bounds)
    (x0, x1), (y0, y1) = constraint.bounds[kx], constraint.bounds[ky]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True, sharey=True)
    cvs = {}
    for ax, (name, vals) in zip(axes, samples.items()):
        inside = (vals[kx] >= x0) & (vals[kx] <= x1) & (vals[ky] >= y0) & (vals[ky] <= y1)
        cv = coverage_cv({k: v[inside] for k, v in vals.items()}, constraint.bounds, grid) if inside.any() else None
        cvs[name] = cv
        ax.scatter(vals[kx] / 1e6, vals[ky] / 1e6, s=3, alpha=0.4)
        ax.add_patch(plt.Rectangle((x0 / 1e6, y0 / 1e6), (x1 - x0) / 1e6, (y1 - y0) / 1e6, fill=False, color="red"))
        ax.set_title(f"{name}\n{inside.mean():.0%} inside, coverage CV {cv:.2f}" if cv is not None else name)
        ax.set_xlabel(f"{kx} (M)")
    axes[0].set_ylabel(f"{ky} (M)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return cvs


def run_distribution(history: list[dict[str, Any]], path: str | Path) -> None:
    """Sampled FLOPs and params of a supernet run, one colour per epoch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("viridis")
    for i, h in enumerate(history):
        s = h.get("sampled")
        if not s:
            continue
        fl = s["flops"]["values"] if isinstance(s["flops"], dict) else s["flops"]
        pa = s["params"]["values"] if isinstance(s["params"], dict) else s["params"]
        ax.scatter(
            np.array(fl) / 1e6,
            np.array(pa) / 1e6,
            s=3,
            alpha=0.5,
            color=cmap(i / max(1, len(history) - 1)),
            label=f"epoch {h['epoch']}",
        )
    ax.set_xlabel("FLOPs (M)")
    ax.set_ylabel("params (M)")
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
