"""Outputs of a search: results.json, best.json and pareto_K.json model files, candidates.png, the front table.

Every file is written atomically. Model files hold a valid model.json object (loadable with
:func:`spos_deploy.model_spec.load_spec`) plus the keys model.json accepts next to an architecture
(``accuracy``, ``flops``, ``params``, ``latency_ms``); ``results.json`` entries also carry the MicroNet
``score`` and the architecture ``key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from spos_deploy.atomic import atomic_path, write_json
from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import SearchSpace

from .genes import parse_key

MODEL_EXTRA_KEYS = ("accuracy", "flops", "params", "latency_ms")


def candidate_entry(
    space: SearchSpace, key: str, accuracy: float, values: dict[str, float], name: str
) -> dict[str, Any]:
    """model.json object of ``key`` plus its accuracy and table metrics (``score``, ``key`` included)."""
    blocks, channels = parse_key(key)
    spec = ModelSpec(space, tuple(int(v) for v in blocks), tuple(int(v) for v in channels), name=name)
    d = spec.to_json()
    d["accuracy"] = float(accuracy)
    d["flops"] = int(round(values["flops"]))
    d["params"] = int(round(values["params"]))
    d["score"] = float(values["score"])
    if "latency_ms" in values:
        d["latency_ms"] = float(values["latency_ms"])
    d["key"] = key
    return d


def model_file(entry: dict[str, Any]) -> dict[str, Any]:
    """The model.json part of a results entry (keys model.json does not accept are dropped)."""
    return {k: v for k, v in entry.items() if k not in ("score", "key")}


def write_model_files(out: Path, best: dict[str, Any], pareto: list[dict[str, Any]]) -> dict[str, Any]:
    """``best.json`` and one ``pareto_K.json`` per front point (K from the cheapest), stale ones removed."""
    write_json(out / "best.json", model_file(best))
    names = []
    for k, entry in enumerate(pareto):
        name = f"pareto_{k}.json"
        write_json(out / name, model_file(entry))
        names.append(name)
    for old in out.glob("pareto_*.json"):
        if old.name not in names:
            old.unlink()
    return {"best": "best.json", "pareto": names}


def front_table(pareto: list[dict[str, Any]], cost: str) -> str:
    rows = []
    for k, e in enumerate(pareto):
        row = [k, f"{e['accuracy']:.4f}", f"{e['flops'] / 1e6:.2f}", f"{e['params'] / 1e6:.3f}", f"{e['score']:.4f}"]
        if cost == "latency_ms":
            row.append(f"{e['latency_ms']:.3f}")
        row += ["".join(map(str, e["block_choices"])), " ".join(map(str, e["channel_choices"]))]
        rows.append(row)
    head = ["K", "accuracy", "MFLOPs", "Mparams", "score"]
    if cost == "latency_ms":
        head.append("latency ms")
    head += ["blocks", "channels"]
    return tabulate(rows, headers=head, tablefmt="github", disable_numparse=True)


def candidates_plot(
    path: Path,
    accuracy: np.ndarray,
    cost: np.ndarray,
    front: np.ndarray,
    cost_name: str,
    budget: float | None,
    title: str,
) -> None:
    """All evaluated candidates (accuracy vs cost), the Pareto front as a line, the cost budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, unit = (1.0, "latency (ms, predicted)") if cost_name == "latency_ms" else (1e-6, "MFLOPs")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.scatter(cost * scale, accuracy, s=12, alpha=0.5, color="tab:blue", label=f"evaluated ({len(accuracy)})")
    ax.plot(
        cost[front] * scale,
        accuracy[front],
        "-o",
        color="tab:red",
        markersize=4,
        drawstyle="steps-post",
        label=f"Pareto front ({len(front)})",
    )
    if budget is not None and np.isfinite(budget):
        ax.axvline(budget * scale, color="gray", linestyle="--", label="budget")
    ax.set_xlabel(unit)
    ax.set_ylabel("top-1 accuracy (supernet, BN recalibrated)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
