"""Does the search find better models than a user gets without it? (issue 10, item 4)

Under one predicted-latency budget (``--latency-max-ms``, default the 40% quantile of random architectures)
on this CPU's int8 table of the small space, three kinds of architecture are compared:

(a) the one ``spos-search --method evolution`` returns on the supernet,
(b) ``--random`` (5) random architectures that meet the budget (rejection sampling, fixed seed),
(c) a hand-designed baseline: every position SNB-3 at one uniform channel choice, the widest that fits,
(d) the best proxy's pick (``--proxy``, default SynFlow, the zero-cost proxy that ranked block choices best in
    ``benchmarks.supernet_ranking``): of as many random architectures within the budget as the search evaluated,
    the one the proxy scores highest: what a user gets from a search that trains nothing.

All are trained from scratch with the recipe of ``benchmarks.supernet_ranking`` (and its run-folder cache, in
``benchmarks/_subnets.py``: an architecture trained by either benchmark is not trained again) and measured end
to end in their deployed int8 form (interleaved rounds). Every step resumes (cached under ``--out``). The
stand-alone trainings run one after the other, or with ``--ray [ADDRESS]`` as Ray tasks (one per architecture,
retried when a worker dies) on a local instance sized to this machine or on a cluster.

    python -m benchmarks.search_quality [--supernet runs/ranking/supernet] [--lut TABLE] [--evaluations 100]
    python -m benchmarks.search_quality ... --seeds 2        # every architecture twice; judged on the means
    python -m benchmarks.search_quality ... --ray            # the stand-alone trainings on every core
    python -m benchmarks.search_quality --quick     # smoke run: tiny everything, results under runs/
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from benchmarks._subnets import (
    RUNS,
    SPACE,
    TABLE_NAME,
    ZERO_COST,
    Recipe,
    StepTimes,
    add_ray_arg,
    add_recipe_args,
    add_supernet_args,
    check_data,
    check_ray,
    describe_archs,
    ensure_supernet,
    ensure_table,
    fail,
    flops_table,
    load_table,
    log,
    recipe_from_args,
    resolve_supernet_args,
    run_tool,
    separability_text,
    setup_logging,
    table_record,
    tool,
    train_all,
    zero_cost_proxies,
)
from benchmarks.record import Provenance, provenance, results_dir, write_record
from spos_deploy.atomic import write_json
from spos_deploy.cli.common import run_script
from spos_deploy.nets import engine
from spos_deploy.runtime import load
from spos_deploy.studies import lead_test, median_lead_pvalue, pooled_seed_std, separability
from spos_deploy.tables.core import random_architectures
from spos_deploy.tables.latency.table import latency_quantile

STUDY = "search_quality"
FULL = {
    "evaluations": 100,
    "population": 20,
    "parents": 5,
    "search_val_limit": 2000,
    "search_bn_images": 1024,
    "random": 5,
    "rounds": 7,
}
QUICK = {
    "evaluations": 4,
    "population": 2,
    "parents": 1,
    "search_val_limit": 256,
    "search_bn_images": 128,
    "random": 2,
    "rounds": 2,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="cache of every step (default runs/search-quality, --quick: ...-quick)")
    ap.add_argument(
        "--results", help="where the .md/.json go (default benchmarks/results/search_quality; --quick: OUT/results)"
    )
    ap.add_argument(
        "--lut",
        help="latency table of the small space for this machine (default: the one "
        "benchmarks.supernet_ranking builds, runs/ranking/latency_small_int8.json; built there if missing)",
    )
    ap.add_argument("--latency-max-ms", type=float, help="the budget (default: --budget-quantile of random archs)")
    ap.add_argument("--budget-quantile", type=float, default=0.4)
    g = ap.add_argument_group("search (spos-search --method evolution)")
    g.add_argument("--evaluations", type=int, help=f"evaluated candidates (default {FULL['evaluations']})")
    g.add_argument("--population", type=int, help=f"default {FULL['population']}")
    g.add_argument("--parents", type=int, help=f"default {FULL['parents']}")
    g.add_argument(
        "--search-val-limit", type=int, help=f"test images per candidate (default {FULL['search_val_limit']})"
    )
    g.add_argument("--search-bn-images", type=int, help=f"BN images per candidate (default {FULL['search_bn_images']})")
    g.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--random", type=int, help=f"random architectures within the budget (default {FULL['random']})")
    ap.add_argument(
        "--seed", type=int, default=1000, help="seed of the random architectures (not the search's 0: other draws)"
    )
    ap.add_argument("--rounds", type=int, help=f"interleaved end-to-end latency rounds (default {FULL['rounds']})")
    ap.add_argument(
        "--full-width",
        action="store_true",
        help="block choices only, every channel at the widest choice: spos-search --mode blocks, random\n"
        "architectures and the baseline at full width (for a supernet trained at full width only)",
    )
    ap.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train every architecture with this many seeds (--train-seed, +1, ...) and compare the means;\n"
        "with 2 or more the report gives the seed noise, the lead in standard errors and one-sided p-values",
    )
    ap.add_argument(
        "--proxy",
        choices=[*ZERO_COST, "flops", "params", "none"],
        default="synflow",
        help="(d) the proxy whose pick is trained beside the searched model (default synflow; none: no pick)",
    )
    add_ray_arg(ap)
    ap.add_argument("--tag", default="", help="suffix of the result files (search_quality_TAG.md/.json)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny supernet and search, 512 images")
    add_recipe_args(ap)
    add_supernet_args(ap, "runs/ranking/supernet, the one benchmarks.supernet_ranking trains")
    args = ap.parse_args(argv)
    return resolve_defaults(args)


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Full-size or --quick defaults for what was not given; the supernet and table of supernet_ranking."""
    resolve_supernet_args(args)
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    ranking = RUNS / ("ranking-quick" if args.quick else "ranking")
    args.out = args.out or str(RUNS / ("search-quality-quick" if args.quick else "search-quality"))
    args.results = args.results or (str(Path(args.out) / "results") if args.quick else str(results_dir(STUDY)))
    args.supernet = args.supernet or str(ranking / "supernet")
    args.table_default = str(ranking / TABLE_NAME)
    if min(args.evaluations, args.population, args.parents, args.random, args.rounds, args.seeds) < 1:
        fail("--evaluations, --population, --parents, --random, --rounds and --seeds must be >= 1")
    if args.parents > args.population:
        fail("--parents must not exceed --population")
    return args


# ---- the three kinds of architecture ----------------------------------------------------------------------
def searched(args: argparse.Namespace, lut: Path, budget: float, out: Path) -> dict[str, Any]:
    """(a) spos-search's best under the budget (its results.json; the search resumes if interrupted)."""
    folder = out / "search"
    if not (folder / "results.json").exists():
        # --no-reanchor: the budget holds the searched model to the same predictions as (b)-(d), not to the
        # table rescaled by the minutes' speed of this machine
        cmd = [tool("spos-search"), "--supernet", args.supernet, "--latency-table", str(lut), "--no-reanchor"]
        cmd += ["--latency-max-ms", str(budget)]
        cmd += ["--method", "evolution", "--budget", str(args.evaluations), "--population", str(args.population)]
        cmd += ["--parents", str(args.parents), "--generations", str(args.evaluations // args.population + 2)]
        cmd += ["--val-limit", str(args.search_val_limit), "--bn-images", str(args.search_bn_images)]
        cmd += ["--train-limit", str(max(5000, args.search_bn_images)), "--seed", str(args.search_seed)]
        cmd += ["--mode", "blocks"] if args.full_width else []
        cmd += ["--no-progress", "-o", str(folder)] + (["--resume"] if folder.exists() else [])
        run_tool(cmd)
    return json.loads((folder / "results.json").read_text())


def random_pool(seed: int, full_width: bool, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random architectures (``full_width``: random blocks, every channel at the widest choice)."""
    blocks, channels = random_architectures(SPACE, n, seed)
    return blocks, np.full_like(channels, SPACE.widest_choice) if full_width else channels


def random_within(
    table: Any, budget: float, n: int, seed: int, full_width: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(b) the first ``n`` distinct uniform random architectures whose predicted latency meets the budget."""
    blocks, channels = random_pool(seed, full_width)
    _, first = np.unique(np.concatenate([blocks, channels], axis=1), axis=0, return_index=True)
    first = np.sort(first)
    blocks, channels = blocks[first], channels[first]
    ok = np.flatnonzero(table.predict(blocks, channels) <= budget)
    if len(ok) < n:
        fail(f"only {len(ok)} of 20,000 random architectures meet {budget:.3f} ms; raise --latency-max-ms")
    return blocks[ok[:n]], channels[ok[:n]]


def baseline(table: Any, budget: float, full_width: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """(c) SNB-3 everywhere at the widest uniform channel choice that meets the budget (the narrowest,
    flagged, if none does): what a user would hand-design in this space without a search."""
    L = SPACE.num_positions
    by_width = sorted(range(SPACE.num_scales), key=lambda c: -SPACE.channel_scales[c])
    by_width = by_width[:1] if full_width else by_width
    for c in by_width:
        blocks, channels = np.zeros((1, L), np.int64), np.array([SPACE.fix_channels([c] * L)])
        if float(table.predict(blocks, channels)[0]) <= budget:
            return blocks, channels, True
    return blocks, channels, False


def proxy_picks(args: argparse.Namespace, table: Any, budget: float, out: Path) -> dict[str, Any]:
    """(d) Each proxy's pick among ``--evaluations`` distinct random architectures within the budget (drawn with
    ``--seed`` + 1: other draws than (b)); zero-cost proxies cached in OUT/proxies.json. Every proxy's pick is
    recorded; only ``--proxy``'s is trained."""
    blocks, channels = random_within(table, budget, args.evaluations, args.seed + 1, args.full_width)
    pool = describe_archs(table, flops_table(), blocks, channels)
    scores = zero_cost_proxies(pool, out)
    picks = {}
    for name in ("flops", "params", *ZERO_COST):
        values = [a[name] if name in ("flops", "params") else scores[a["key"]][name] for a in pool]
        values = [-np.inf if v is None else v for v in values]
        best = int(np.argmax(values))
        picks[name] = {"key": pool[best]["key"], "blocks": pool[best]["blocks"], "channels": pool[best]["channels"]}
    return {"candidates": len(pool), "picks": picks}


def candidates(
    args: argparse.Namespace, table: Any, budget: float, search_res: dict[str, Any] | None, picks: dict[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """All compared architectures with their role, predicted latency, FLOPs and params (without the searched
    one while ``search_res`` is None: the others do not depend on the search)."""
    rb, rc = random_within(table, budget, args.random, args.seed, args.full_width)
    bb, bc, base_fits = baseline(table, budget, args.full_width)
    roles = [f"random {i + 1}" for i in range(len(rb))] + ["baseline"]
    blocks, channels = np.concatenate([rb, bb]), np.concatenate([rc, bc])
    if args.proxy != "none":
        pick = picks["picks"][args.proxy]
        blocks = np.concatenate([blocks, np.array([pick["blocks"]])])
        channels = np.concatenate([channels, np.array([pick["channels"]])])
        roles.append(f"{args.proxy} pick")
    if search_res is not None:
        best = search_res["best"]
        blocks = np.concatenate([np.array([best["block_choices"]]), blocks])
        channels = np.concatenate([np.array([best["channel_choices"]]), channels])
        roles = ["searched", *roles]
    archs = describe_archs(table, flops_table(), blocks, channels)
    for a, role in zip(archs, roles):
        a["role"] = role
    if search_res is not None:
        archs[0]["supernet_acc"] = search_res["best"]["accuracy"]
    return archs, base_fits


# ---- measured latency ---------------------------------------------------------------------------------------
def measured_latency(
    table: Any, archs: list[dict[str, Any]], rounds: int, out: Path
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """End-to-end ms of every architecture, measured together (interleaved), and the machine's load meanwhile;
    cached in OUT/measured.json (a cache from before the load was recorded has none)."""
    from spos_deploy.tables.latency.validate import measure_architectures

    path = out / "measured.json"
    keys = [a["key"] for a in archs]
    settings = {"keys": keys, "rounds": rounds, "table_date": table.fingerprint.get("date")}
    if path.exists() and (cached := json.loads(path.read_text()))["settings"] == settings:
        return cached["ms"], cached.get("load")
    blocks = np.array([a["blocks"] for a in archs])
    channels = np.array([a["channels"] for a in archs])
    log.info("measuring %d architectures end to end (%d interleaved rounds)", len(archs), rounds)
    with load.probe() as probe:
        ms = measure_architectures(table, blocks, channels, rounds=rounds, progress=False)
    rec = probe.record()
    result, load_d = dict(zip(keys, ms)), {**rec.as_dict(), "warning": rec.warning()}
    write_json(path, {"settings": settings, "ms": result, "load": load_d})
    return result, load_d


# ---- report ---------------------------------------------------------------------------------------------------
def seed_noise(rows: list[dict[str, Any]]) -> float | None:
    """The std of one training's top-1 across seeds, pooled over the architectures (None with one seed)."""
    pooled = pooled_seed_std([r["standalone_accs"] for r in rows])
    return None if pooled is None else pooled[0]


def significance(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One-sided tests of "the searched model trains better than X", X each of: the median of the random
    architectures (a two-level bootstrap over architectures and seeds), the random architecture whose mean is
    the median, the proxy's pick and the baseline (t-tests with the pooled seed noise). Empty with one seed."""
    by_role = {r["role"]: r["standalone_accs"] for r in rows}
    rand = [r for r in rows if r["role"].startswith("random")]
    noise = pooled_seed_std(list(by_role.values()))
    if noise is None:
        return {}
    median_arch = sorted(rand, key=lambda r: r["standalone_acc"])[(len(rand) - 1) // 2]
    a = by_role["searched"]
    tests = {"random_population_median": median_lead_pvalue(a, [r["standalone_accs"] for r in rand])}
    tests["median_random_architecture"] = lead_test(a, median_arch["standalone_accs"], noise) | {
        "key": median_arch["key"]
    }
    for role in by_role:
        if role.endswith(" pick") or role == "baseline":
            tests[role] = lead_test(a, by_role[role], noise)
    return tests


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the searched model beats the median random architecture, the proxy's pick and the hand-designed
    baseline (on the mean over seeds), by how many standard errors of a difference of two such means, and
    with which one-sided p (:func:`significance`)."""
    acc = {r["role"]: r["standalone_acc"] for r in rows}
    rand = [r["standalone_acc"] for r in rows if r["role"].startswith("random")]
    median = float(np.median(rand))
    noise, seeds = seed_noise(rows), len(rows[0]["standalone_accs"])
    se = None if noise is None else noise * np.sqrt(2 / seeds)
    lead = {"random_median": acc["searched"] - median, "baseline": acc["searched"] - acc["baseline"]}
    pick = next((role for role in acc if role.endswith(" pick")), None)
    if pick is not None:
        lead[pick] = acc["searched"] - acc[pick]
    return {
        "searched_acc": acc["searched"],
        "random_median_acc": median,
        "random_best_acc": float(np.max(rand)),
        "baseline_acc": acc["baseline"],
        "proxy_pick": pick,
        "proxy_pick_acc": acc.get(pick),
        "beats_random_median": bool(acc["searched"] > median),
        "beats_baseline": bool(acc["searched"] > acc["baseline"]),
        "beats_proxy_pick": None if pick is None else bool(acc["searched"] > acc[pick]),
        "seeds": seeds,
        "seed_std": noise,
        "difference_se": None if se is None else float(se),
        "lead": lead,
        "lead_in_se": None if not se else {k: float(v / se) for k, v in lead.items()},
        "significance": significance(rows),
        "separability": separability([r["standalone_acc"] for r in rows], noise, seeds),
    }


def rows_table(rows: list[dict[str, Any]], budget: float) -> str:
    body = [
        [
            r["role"],
            r["key"],
            f"{r['standalone_acc']:.4f}"
            + (f" ({' / '.join(f'{a:.4f}' for a in r['standalone_accs'])})" if len(r["standalone_accs"]) > 1 else ""),
            f"{r['supernet_acc']:.4f}" if "supernet_acc" in r else "",
            f"{r['predicted_ms']:.3f}",
            f"{r['measured_ms']:.3f}",
            f"{100 * (r['measured_ms'] - budget) / budget:+.1f}%",
            f"{r['flops']:,}",
            f"{r['params']:,}",
        ]
        for r in rows
    ]
    headers = [
        "model",
        "architecture (blocks_channels)",
        "stand-alone top-1 (mean; per seed)",
        "supernet top-1",
        "predicted ms",
        "measured ms",
        "measured vs budget",
        "FLOPs",
        "params",
    ]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def summary_text(v: dict[str, Any], base_fits: bool) -> str:
    def yes(b: bool) -> str:
        return "yes" if b else "NO"

    pick = v.get("proxy_pick")
    text = (
        f"Searched model: {v['searched_acc']:.4f}; median of the random ones {v['random_median_acc']:.4f} "
        f"(best {v['random_best_acc']:.4f}); baseline {v['baseline_acc']:.4f}"
        + (f"; {pick} {v['proxy_pick_acc']:.4f}" if pick else "")
        + ".\n\n| question | answer |\n|---|---|\n"
        f"| beats the median random architecture | {yes(v['beats_random_median'])} |\n"
        f"| beats the hand-designed baseline | {yes(v['beats_baseline'])} |\n"
        + (f"| beats the {pick} | {yes(v['beats_proxy_pick'])} |\n" if pick else "")
    )
    if v["seed_std"] is not None:
        se, lead = v["difference_se"], v["lead_in_se"]
        text += (
            f"\nSeed noise: one training's top-1 moves by {100 * v['seed_std']:.2f} points (std, pooled over the "
            f"architectures), so a difference of two {v['seeds']}-seed means has a standard error of "
            f"{100 * se:.2f} points. The searched model leads the median random one by "
            f"{100 * v['lead']['random_median']:+.2f} points ({lead['random_median']:+.1f} SE) and the baseline by "
            f"{100 * v['lead']['baseline']:+.2f} points ({lead['baseline']:+.1f} SE)."
            + separability_text(v.get("separability"), v["seeds"])
            + "\n"
        )
    if v.get("significance"):
        text += "\n" + significance_table(v["significance"])
    if not base_fits:
        text += "\nNo uniform SNB-3 network meets the budget: the baseline is the narrowest one, over budget.\n"
    return text


def significance_table(tests: dict[str, Any]) -> str:
    """The one-sided tests of :func:`significance` as a Markdown table."""
    body = []
    for name, t in tests.items():
        if name == "random_population_median":
            what = "the median of the random architectures (bootstrap over architectures and seeds)"
            body.append(
                [what, f"{100 * t['lead']:+.2f} [{100 * t['low']:+.2f}, {100 * t['high']:+.2f}]", f"{t['p']:.3f}"]
            )
        elif t is not None:
            what = f"the median random architecture ({t['key']})" if "key" in t else f"the {name}"
            body.append(
                [
                    what + ", t-test, pooled seed noise",
                    f"{100 * t['lead']:+.2f} (SE {100 * t['se']:.2f})",
                    f"{t['p']:.3f}",
                ]
            )
    headers = ["searched model against", "lead, points", "one-sided p"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n"


def seeds_text(first: int, n: int) -> str:
    return f"seed {first}" if n == 1 else f"seeds {first}-{first + n - 1}, mean"


def write_report(
    args: argparse.Namespace, record: dict[str, Any], rows: list[dict[str, Any]], prov: Provenance, load_d: Any
) -> None:
    """benchmarks/results/search_quality/search_quality[_TAG].md and .json (under OUT/results for --quick)."""
    m, s, b = prov.machine, record["settings"], record["budget_ms"]
    stem = "search_quality" + (f"_{args.tag}" if args.tag else "")
    r, sr, v = s["recipe"], record["search"], record["verdict"]
    steps = "\n".join(f"| {k} | {t / 60:.1f} |" for k, t in record["timings"]["steps_s"].items())
    text = (
        "# Search quality: searched vs random, hand-designed and proxy-picked, one latency budget\n\n"
        "Small space, Fashion-MNIST. "
        f"Supernet: `{s['supernet']}`.\n\n"
        f"{prov.date} on {m['cpu']} ({m['usable_cores']} cores){' -- QUICK SMOKE RUN' if args.quick else ''}. "
        f"Budget {b:.3f} ms predicted int8 latency ({record['budget_source']}). Search: evolution, "
        f"{sr['evaluated']} candidates evaluated on the supernet ({args.search_val_limit} test images, BN on "
        f"{args.search_bn_images}). Every model trained from scratch: {r['epochs']} epochs on {r['train_limit']} "
        f"images (batch {r['batch_size']}, lr {r['lr']}, warm-up {r['warmup_epochs']} epoch, "
        f"{seeds_text(r['seed'], v['seeds'])}), "
        f"top-1 on the first {r['val_limit']} test images. Measured: deployed int8 ONNX, median of {args.rounds} "
        f"interleaved rounds.\n\n{rows_table(rows, b)}\n\n{summary_text(record['verdict'], record['baseline_fits'])}\n"
        f"| step | minutes |\n|---|---|\n{steps}\n"
    )
    write_record(STUDY, stem, record, text, folder=args.results, prov=prov, load=load_d)
    print(text)


def budget_of(args: argparse.Namespace, table: Any) -> tuple[float, str]:
    if args.latency_max_ms is not None:
        return args.latency_max_ms, "given"
    q = args.budget_quantile
    if args.full_width:
        blocks, channels = random_pool(0, True)
        budget = float(np.quantile(table.predict(blocks, channels), q))
        return round(budget, 3), f"the {q:.0%} quantile of 20,000 random full-width architectures"
    return round(latency_quantile(table, q), 3), f"the {q:.0%} quantile of 20,000 random architectures"


def recipes_of(args: argparse.Namespace) -> list[Recipe]:
    """The recipe once per seed: ``--train-seed``, +1, ... (``--seeds`` of them)."""
    recipe = recipe_from_args(args)
    return [replace(recipe, seed=recipe.seed + i) for i in range(args.seeds)]


def merge_rows(
    archs: list[dict[str, Any]], standalone: list[dict[str, dict[str, Any]]], ms: dict[str, float]
) -> list[dict[str, Any]]:
    """Each architecture with its stand-alone top-1 per seed and their mean, and its measured latency."""
    rows = []
    for a in archs:
        runs = [per_seed[a["key"]] for per_seed in standalone]
        accs = [r["standalone_acc"] for r in runs]
        rows.append(
            a
            | {
                "standalone_acc": float(np.mean(accs)),
                "standalone_accs": accs,
                "measured_ms": ms[a["key"]],
                "train_wall_s": float(np.mean([r["wall_seconds"] for r in runs])),
            }
        )
    return rows


def run_steps(args: argparse.Namespace, recipes: list[Recipe], steps: StepTimes) -> dict[str, Any]:
    """Supernet, table and budget, the search, the stand-alone trainings and the end-to-end latency, each a
    timed step that resumes from OUT."""
    out = Path(args.out)
    with steps.step("supernet"):
        ensure_supernet(Path(args.supernet), args)
    with steps.step("latency table"):
        lut = ensure_table(args.lut, Path(args.table_default), args.quick)
        table = load_table(lut)
        budget, source = budget_of(args, table)
        log.info("latency budget %.3f ms (%s)", budget, source)
    with steps.step("search"):
        search_res = searched(args, lut, budget, out)
    with steps.step("proxy picks"):
        picks = proxy_picks(args, table, budget, out)
    archs, base_fits = candidates(args, table, budget, search_res, picks)
    with steps.step("stand-alone training"):
        standalone = [train_all(archs, r, Path(args.subnet_cache), args.ray) for r in recipes]
    with steps.step("end-to-end latency"):
        ms, load_d = measured_latency(table, archs, args.rounds, out)
    return {
        "table": table_record(lut, table),
        "budget": (budget, source),
        "search": search_res,
        "proxy_picks": picks,
        "rows": merge_rows(archs, standalone, ms),
        "baseline_fits": base_fits,
        "load": load_d,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    check_data()
    check_ray(args)
    out, recipes = Path(args.out), recipes_of(args)
    out.mkdir(parents=True, exist_ok=True)
    steps = StepTimes(out)
    done = run_steps(args, recipes, steps)
    rows, (budget, source), search_res = done["rows"], done["budget"], done["search"]
    record = {
        "settings": {
            "args": vars(args),
            "supernet": args.supernet,
            "recipe": asdict(recipes[0]) | {"tag": recipes[0].tag, "seeds": [r.seed for r in recipes]},
            "table": done["table"],
        },
        "budget_ms": budget,
        "budget_source": source,
        "search": {k: search_res[k] for k in ("evaluated", "generations", "timing", "best")},
        "proxy_picks": done["proxy_picks"],
        "architectures": rows,
        "baseline_fits": done["baseline_fits"],
        "verdict": verdicts(rows),
        "timings": {
            "steps_s": steps.times,
            "per_arch_train_wall_s_mean": float(np.mean([r["train_wall_s"] for r in rows])),
        },
    }
    write_report(args, record, rows, provenance(STUDY, argv), done["load"])


if __name__ == "__main__":
    engine.prefer_serial()  # before MXNet loads: the stand-alone trainings run here without --ray
    run_script("search_quality", main)
