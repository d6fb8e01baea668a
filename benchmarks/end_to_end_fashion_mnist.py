"""Fashion-MNIST from nothing to a deployed, benchmarked int8 model on this machine, in one command.

Steps (each one a documented spos-* command, run as a subprocess and timed):

1. ``spos-train supernet``: the small-image space (``--space small``: 32x32, 10 classes, five positions) with
   the default recipe of that space (training/recipes.py, docs/supernet.md: full width, 13 epochs, lr 0.3
   after a 0.5-epoch warm-up, no label smoothing, no augmentation); the summary records the options used.
2. ``spos-lut build --kind latency --target auto``: the deployed form ``spos-export --target auto`` ships for
   this space on this machine (runtime and precision timed here on a reference network; then one thread
   against every core, by the deployed-latency definition), and the latency table of that form, measured here
   (into ``OUT/tables``, so a run starts from nothing).
3. ``spos-search --mode blocks --target auto``: evolutionary search over block choices (the supernet trained
   full width only) under a latency budget from that table; the closed loop exports the chosen architecture
   in that form and measures it here, and re-ranks when it is over budget.
4. ``spos-train subnet``: the chosen architecture trained from scratch.
5. ``spos-export`` with the flags the search recorded for that form: BN merged, ONNX or IR, int8 where chosen,
   accuracy checked.
6. ``spos-bench``: the shipped model's latency, measured (the deployed definition: fresh sessions).

Then a summary table: accuracy, FLOPs, params, MicroNet score, the budget, predicted and measured latency.

    python -m benchmarks.end_to_end_fashion_mnist [--out runs/e2e] [--supernet-epochs 4] ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks.record import ROOT, write_record
from spos_deploy.atomic import write_json
from spos_deploy.cli.common import run_script
from spos_deploy.space import SPACES

STUDY = "end_to_end_fashion_mnist"
SPACE_ARGS = ["--space", "small"]


def tool(name: str) -> str:
    """The console script installed next to this interpreter (the project's venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


class Steps:
    """Runs the steps; their times are kept in OUT/step_times.json, so a resumed run still reports every step."""

    def __init__(self, out: Path):
        self.log, self.times_file = out / "steps.log", out / "step_times.json"
        self.times = json.loads(self.times_file.read_text()) if self.times_file.exists() else {}
        self.env = {**os.environ, "SPOS_TABLES_DIR": str(out / "tables")}  # the run's own tables and decision

    def run(self, name: str, cmd: list[str], capture: bool = False) -> str:
        print(f"\n== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.time()
        with self.log.open("a") as f:
            f.write(f"\n== {name}: {' '.join(cmd)}\n")
            f.flush()
            res = subprocess.run(
                cmd, cwd=ROOT, stdout=subprocess.PIPE if capture else None, stderr=f, text=True, env=self.env
            )
        self.times[name] = time.time() - t0
        write_json(self.times_file, self.times)
        if res.returncode != 0:
            raise SystemExit(f"step {name!r} failed (exit {res.returncode}); its log: {self.log}")
        print(f"   {name}: {self.times[name] / 60:.1f} min", flush=True)
        return res.stdout or ""


def default_budget(table_path: Path, space, quantile: float) -> float:
    """A budget that binds: the given quantile of predicted latency over random full-width architectures
    (what ``--mode blocks`` searches)."""
    from spos_deploy.tables.latency.table import LatencyTable

    blocks = np.random.default_rng(0).integers(0, space.num_blocks, (20000, space.num_positions))
    channels = np.full_like(blocks, space.widest_choice)
    table = LatencyTable.load(table_path, expect_space=space)
    return round(float(np.quantile(table.predict(blocks, channels), quantile)), 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "runs" / "e2e"))
    ap.add_argument("--supernet-epochs", type=int, default=13)
    ap.add_argument("--supernet-images", type=int, default=60000, help="training images per supernet epoch")
    ap.add_argument("--subnet-epochs", type=int, default=5)
    ap.add_argument("--subnet-images", type=int, default=60000)
    ap.add_argument("--latency-max-ms", type=float, help="default: the 40%% quantile of random architectures")
    ap.add_argument("--budget-quantile", type=float, default=0.4)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--val-limit", type=int, default=2000, help="validation images per search candidate")
    ap.add_argument("--bn-images", type=int, default=1024)
    ap.add_argument("--fresh", action="store_true", help="delete --out first")
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/end_to_end_fashion_mnist/")
    return ap.parse_args(argv)


def train_and_search(args: argparse.Namespace, out: Path, steps: Steps, space: Any) -> tuple[Path, float]:
    """Steps 1-3: the supernet, the form and its latency table, and the search (each skipped when its output
    exists); returns the table and the budget."""
    sup = out / "supernet"
    if not (sup / "supernet.params").exists():
        cmd = [tool("spos-train"), "supernet", *SPACE_ARGS, "--epochs", str(args.supernet_epochs)]
        cmd += ["--train-limit", str(args.supernet_images), "--eval-paths", "2", "--val-limit", "1000"]
        cmd += ["-o", str(sup), "--resume", "--no-progress"]
        steps.run("train supernet", cmd)
    tables = out / "tables"  # the run's own: measured here now, never a shipped table of an earlier run
    built = [p for p in tables.glob("latency_*.json") if not p.name.endswith(".validation.json")]
    if built:
        table = built[0]
    else:
        tables.mkdir(parents=True, exist_ok=True)
        cmd = [tool("spos-lut"), "build", "--kind", "latency", "--target", "auto", *SPACE_ARGS]
        partial = list(tables.glob("*.partial.jsonl"))
        cmd += ["-o", str(tables), "--no-progress", "--json"] + (["--resume"] if partial else [])
        table = Path(json.loads(steps.run("latency table (--target auto)", cmd, capture=True))["table"])
    budget = args.latency_max_ms or default_budget(table, space, args.budget_quantile)
    search = out / "search"
    if not (search / "results.json").exists():
        cmd = [tool("spos-search"), "--supernet", str(sup), "--latency-max-ms", str(budget)]
        cmd += ["--target", "auto"]
        cmd += ["--method", "evolution", "--mode", "blocks", "--population", str(args.population)]
        cmd += ["--generations", str(args.generations)]
        cmd += ["--val-limit", str(args.val_limit), "--bn-images", str(args.bn_images), "--seed", "0"]
        cmd += ["-o", str(search), "--no-progress"]
        if search.exists():
            cmd.append("--resume")
        steps.run("search", cmd)
    return table, budget


def train_export_bench(args: argparse.Namespace, out: Path, steps: Steps) -> dict[str, Any]:
    """Steps 4-6: the chosen architecture trained from scratch, exported in the form the search measured and
    benchmarked."""
    search, sub, dep = out / "search", out / "subnet", out / "deploy"
    results = json.loads((search / "results.json").read_text())
    target = results["target"]
    if not (sub / "model.params").exists():
        cmd = [tool("spos-train"), "subnet", str(search / "best.json"), "--epochs", str(args.subnet_epochs)]
        cmd += ["--train-limit", str(args.subnet_images), "--batch-size", "128", "--lr", "0.1"]
        cmd += ["-o", str(sub), "--resume", "--no-progress"]
        steps.run("train subnet", cmd)
    if not (dep / "report.json").exists():
        cmd = [tool("spos-export"), str(sub / "model.json"), "--params", str(sub / "model.params")]
        cmd += [*target["export_flags"], "--calib", "fashion-mnist:train", "--calib-count", "500"]
        cmd += ["--eval", "fashion-mnist:test", "--eval-count", "2000", "--no-bench", "-o", str(dep)]
        steps.run(f"export ({target['runtime']} {target['precision']})", cmd)
    report = json.loads((dep / "report.json").read_text())
    shipped = dep / target["ship"]["bench"].split()[1].split("/", 1)[1]
    bench_cmd = [tool("spos-bench"), str(shipped), *target["bench_flags"], "--repeats", "300", "--json"]
    bench = json.loads(steps.run("benchmark", bench_cmd, capture=True))
    return {
        "search": results,
        "sub_history": json.loads((sub / "metrics.json").read_text())["history"],
        "report": report,
        "bench": bench,
        "shipped": str(shipped.relative_to(dep)),
    }


SIDE_BY_SIDE_ROUNDS = 3


def side_by_side(
    table: Path, best: dict[str, Any], shipped: Path, search_speed: float | None, rounds: int = SIDE_BY_SIDE_ROUNDS
) -> dict[str, Any]:
    """The shipped file, the search's own export of the same architecture (the table's deployed form, random
    weights: what the closed loop measured) and the table's anchor networks, measured interleaved in the same
    rounds of fresh sessions.

    A small network's deployed latency on a shared VM moves between modes over minutes (2026-12-06, this
    AMD EPYC: 0.13 and 0.20-0.22 ms for the same file, on either core), so the closed loop and the benchmark,
    minutes apart, can measure different machines. Side by side, the first ratio says whether the shipped file
    is what the search measured; the anchors say how fast the machine runs now against the table
    (:func:`~spos_deploy.tables.latency.table.reanchor_factor`), and against ``search_speed``, the same factor
    when the search ran, how much of a difference from the closed loop is the machine's."""
    import tempfile

    from spos_deploy.runtime.deployed import measure_deployed
    from spos_deploy.tables.files import load_table
    from spos_deploy.tables.latency.build import export_deployed, network_shape
    from spos_deploy.tables.latency.table import reanchor_factor
    from spos_deploy.tables.latency.validate import setup_of, specs_of

    t = load_table(table)
    setup = setup_of(t)
    spec = specs_of(t, [best["block_choices"]], [best["channel_choices"]], "search-export")[0]
    anchors = specs_of(t, *t.anchor_choices(), "anchor")
    shape = network_shape(spec.space, setup)
    with tempfile.TemporaryDirectory() as tmp:
        files = [shipped] + [
            export_deployed(s, Path(tmp), setup.precision, setup.seed, setup.runtime) for s in [spec, *anchors]
        ]
        makers = [lambda p=p: setup.runner(p, shape) for p in files]
        per_round = [[m.ms for m in measure_deployed(makers, sessions=7, seed=r)] for r in range(rounds)]
    ship = [r[0] for r in per_round]
    search = [r[1] for r in per_round]
    speed = [reanchor_factor(t.anchor_reference(), r[2:]) for r in per_round] if anchors else []
    out = {
        "rounds": rounds,
        "sessions": 7,
        "shipped_round_ms": ship,
        "search_export_round_ms": search,
        "ratio_median": float(np.median(np.array(ship) / np.array(search))),
        "speed_factor_round": speed,
        "speed_factor_search": search_speed,
    }
    at_search = at_search_speed(ship, speed, search_speed)
    if at_search is not None:
        out["shipped_at_search_speed_round_ms"] = at_search
    return out


def at_search_speed(ms: list[float], speed_now: list[float], speed_search: float | None) -> list[float] | None:
    """Latencies measured while the anchors ran ``speed_now`` x the table, scaled to the machine speed the search
    measured in (``speed_search`` x the table); ``None`` without both factors (a table without anchors)."""
    if not speed_now or not speed_search:
        return None
    return [v * speed_search / f for v, f in zip(ms, speed_now, strict=True)]


def summarize(out: Path, steps: Steps, space: Any, table: Path, budget: float, done: dict[str, Any]) -> dict[str, Any]:
    """The summary: accuracy, counts, the form, the budget, predicted and measured latency, every step's minutes."""
    search = done["search"]
    best, report, bench, sup = search["best"], done["report"], done["bench"], out / "supernet"
    deployed = bench["deployed"]
    loop = search.get("deployed", {})
    prec = search["target"]["precision"]
    fp32_top1 = report["accuracy_fp32"]["top1"]
    q = report[prec]["accuracy"] if prec in ("int8", "bf16") else {f"top1_{prec}": fp32_top1, "top1_agreement": 1.0}
    counts = report["counts"]
    sup_cfg = json.loads((sup / "config.json").read_text())
    recipe = {k: sup_cfg.get(k) for k in ("epochs", "batch_size", "lr", "warmup_epochs", "label_smoothing", "augment")}
    predicted = float(best["latency_ms"])  # the search's prediction, re-anchored to the machine's speed then
    return {
        "supernet_recipe": recipe,
        "supernet_val_acc": json.loads((sup / "metrics.json").read_text())["history"][-1].get("val_acc"),
        "search_best_supernet_acc": best.get("accuracy"),
        "evaluated": search.get("evaluated"),
        "target": {k: search["target"][k] for k in ("runtime", "precision", "threads", "winner", "why")},
        "latency_budget_ms": budget,
        "subnet_val_acc_fp32": done["sub_history"][-1].get("val_acc"),
        "deployed_top1_fp32": fp32_top1,
        "deployed_top1_shipped": q[f"top1_{prec}"],
        "shipped_top1_agreement": q["top1_agreement"],
        "flops": counts["flops"],
        "params": counts["params"],
        "micronet_score_fp32": counts["micronet_fp32"]["score"],
        "micronet_score_int8": counts.get("micronet_int8", {}).get("score"),
        "predicted_latency_ms": predicted,
        "closed_loop": {k: loop.get(k) for k in ("measured_ms", "measured_budget_ms", "met", "reranked")},
        "measured_latency_ms": deployed["ms"],
        "measured_budget_latency_ms": deployed["budget_ms"],
        "measured_session_ms": deployed["session_ms"],
        "bench_p50_ms": bench["latency"]["p50_ms"],
        "latency_error_pct": 100 * (predicted - deployed["ms"]) / deployed["ms"],
        "side_by_side": side_by_side(
            table, best, out / "deploy" / done["shipped"], search.get("latency_table", {}).get("speed_factor")
        ),
        "meets_budget": deployed["budget_ms"] <= budget,
        "minutes": {k: v / 60 for k, v in steps.times.items()},
        "total_minutes": sum(steps.times.values()) / 60,  # every step as measured, also across an interrupted run
        "table": table.name,
        "architecture": {"block_choices": best["block_choices"], "channel_choices": best["channel_choices"]},
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def summary_tables(summary: dict[str, Any]) -> tuple[str, str]:
    """The summary table and the step-time table (Markdown)."""
    score_int8 = summary["micronet_score_int8"]
    t, loop, side = summary["target"], summary["closed_loop"], summary.get("side_by_side")
    shipped = f"{t['runtime']} {t['precision']}, {t['threads']} thread{'s' if t['threads'] != 1 else ''}"
    rows = [
        ["supernet val acc (random paths)", f"{summary['supernet_val_acc']:.4f}"],
        ["search: best candidate acc (supernet weights)", f"{summary['search_best_supernet_acc']:.4f}"],
        ["candidates evaluated", summary["evaluated"]],
        ["shipped form (--target auto)", shipped],
        ["subnet top-1 fp32 (trained from scratch)", f"{summary['subnet_val_acc_fp32']:.4f}"],
        [
            f"deployed top-1 fp32 / {t['precision']} (2000 test images)",
            f"{summary['deployed_top1_fp32']:.4f} / {summary['deployed_top1_shipped']:.4f}",
        ],
        ["FLOPs", f"{summary['flops']:,}"],
        ["params", f"{summary['params']:,}"],
        [
            "MicroNet score fp32" + (" / int8" if score_int8 else ""),
            f"{summary['micronet_score_fp32']:.4f}" + (f" / {score_int8:.4f}" if score_int8 else ""),
        ],
        ["latency budget (ms, 80 % of fresh sessions)", f"{summary['latency_budget_ms']:.3f}"],
        ["predicted latency (ms, search)", f"{summary['predicted_latency_ms']:.3f}"],
        ["measured by the search's closed loop (ms)", _ms(loop.get("measured_ms"))],
        ["measured, shipped model (ms, median of fresh sessions)", f"{summary['measured_latency_ms']:.3f}"],
        ["measured, 80 % of fresh sessions within (ms)", f"{summary['measured_budget_latency_ms']:.3f}"],
        ["prediction error", f"{summary['latency_error_pct']:+.1f}%"],
        ["budget met (measured)", "yes" if summary["meets_budget"] else "no"],
        ["total time", f"{summary['total_minutes']:.1f} min"],
    ]
    if side:  # recorded since 2026-12-06
        pairs = zip(side["shipped_round_ms"], side["search_export_round_ms"])
        rounds = ", ".join(f"{a:.3f} / {b:.3f}" for a, b in pairs)
        rows[-1:-1] = [
            ["side by side: shipped / the search's export, each round's median (ms)", rounds],
            ["side by side: shipped / the search's export (median ratio)", f"{side['ratio_median']:.3f}"],
        ]
    if side and side.get("shipped_at_search_speed_round_ms"):  # recorded since 2026-12-07
        speeds = ", ".join(f"{f:.2f}" for f in side["speed_factor_round"])
        at_search = ", ".join(f"{v:.3f}" for v in side["shipped_at_search_speed_round_ms"])
        rows[-1:-1] = [
            [
                "machine speed against the table: search / each side-by-side round (anchors, x)",
                f"{side['speed_factor_search']:.2f} / {speeds}",
            ],
            ["side by side: shipped, at the machine speed of the search (ms, each round)", at_search],
        ]
    text = tabulate(rows, headers=["end to end, Fashion-MNIST", "value"], tablefmt="github", disable_numparse=True)
    step_rows = [[k, f"{v:.1f}"] for k, v in summary["minutes"].items()]
    step_text = tabulate(step_rows, headers=["step", "minutes"], tablefmt="github", disable_numparse=True)
    return text, step_text


def record(args: argparse.Namespace, argv: list[str] | None, summary: dict[str, Any], load: Any) -> None:
    """benchmarks/results/end_to_end_fashion_mnist/end_to_end_fashion_mnist.{json,md}."""
    text, step_text = summary_tables(summary)
    arch, recipe = summary["architecture"], summary["supernet_recipe"]
    md = (
        f"# End to end on Fashion-MNIST: supernet, search under a latency budget, subnet, deployed model\n\n"
        f"One command (below).\n\n{text}\n\n{step_text}\n\n"
        f"Architecture: blocks {arch['block_choices']}, channels {arch['channel_choices']}.\n\n"
        "Supernet recipe (spos-train's default for `--space small`): "
        + ", ".join(f"{k} {v}" for k, v in recipe.items())
        + ".\n"
    )
    write_record(STUDY, STUDY, {"args": vars(args), **summary}, md, argv, load=load)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps(out)
    space = SPACES["small"]
    table, budget = train_and_search(args, out, steps, space)
    done = train_export_bench(args, out, steps)
    summary = summarize(out, steps, space, table, budget, done)
    text, step_text = summary_tables(summary)
    print("\n" + text)
    print("\n" + step_text)
    write_json(out / "summary.json", summary)
    if args.record:
        record(args, argv, summary, done["bench"]["latency"].get("load"))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_script("end_to_end_fashion_mnist", main)
