"""``spos-bench``: latency of an ONNX file (onnxruntime), an exported MXNet graph or a model.json (MXNet).

MXNet and onnxruntime are imported only once the arguments are checked: MXNet reads ``OMP_NUM_THREADS``
when it starts, so that is the one moment ``--threads`` can reach it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import add_batch, add_threads, nonneg_int, positive_int
from spos_deploy.errors import BadInputError

log = logging.getLogger("spos_deploy")

RANDOM_WEIGHTS = "random weights: latency only"
DEFAULT_SYMBOL_INPUT_SIZE = 224  # an exported graph does not record its input size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-bench",
        description="Measure inference latency (p50/p90/p99) of an .onnx file with onnxruntime, or of an MXNet "
        "'-symbol.json' graph, a model.json or a built-in model (oneshot, oneshot+, oneshot-s+) with MXNet. "
        "Model.json and built-ins get random weights: the numbers are latency only.",
    )
    p.add_argument("target", metavar="TARGET", help=".onnx file, MXNet -symbol.json, model.json or built-in name")
    p.add_argument("--params", metavar="FILE", help="weights of a -symbol.json target (default: random weights)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run (default: cpu)")
    add_batch(p, help="images per call")
    add_threads(p, help="intra-op (onnxruntime) or OpenMP (MXNet) threads, 1-256 (default: the runtime's own)")
    p.add_argument("--warmup", type=nonneg_int, default=10, help="untimed calls before timing (default: 10)")
    p.add_argument("--repeats", type=positive_int, default=50, help="timed calls (default: 50)")
    p.add_argument(
        "--input-size",
        type=positive_int,
        help="input height and width (default: the model's; 224 for a -symbol.json; required for an .onnx "
        "file with dynamic H and W)",
    )
    add_common(p)
    return p


def target_kind(target: str) -> str:
    """``onnx``, ``symbol`` (an MXNet graph: by name, or a .json file holding ``nodes`` and ``heads``) or ``spec``."""
    if target.lower().endswith(".onnx"):
        return "onnx"
    if target.endswith("-symbol.json"):
        return "symbol"
    path = Path(target)
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            d = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return "spec"  # load_spec says what is wrong with it
        if isinstance(d, dict) and "nodes" in d and "heads" in d:
            return "symbol"
    return "spec"


def _check_args(args: argparse.Namespace, kind: str) -> None:
    """What argparse cannot check alone (the numbers are checked while parsing)."""
    if args.params is not None and kind != "symbol":
        raise BadInputError("--params applies only to an MXNet -symbol.json target")
    if kind == "onnx" and not Path(args.target).is_file():
        raise BadInputError(f"{args.target}: no such file")


def _set_mxnet_threads(threads: int | None) -> None:
    """Give MXNet's OpenMP ``threads`` threads: possible only before MXNet is imported in this process."""
    if threads is None:
        return
    if "mxnet" in sys.modules:
        log.warning("--threads %d: MXNet is already loaded in this process; its thread count stays as it is", threads)
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _measure(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    from spos_deploy.runtime import bench
    from spos_deploy.runtime.ort import ort_session

    out: dict[str, Any] = {"target": args.target, "device": args.device}  # ordered for print in the return
    size = args.input_size
    if kind == "onnx":
        sess = ort_session(args.target, device=args.device, threads=args.threads)
        shape = None if size is None else (args.batch, None, size, size)
        stats = bench.bench_ort_session(sess, args.batch, args.warmup, args.repeats, shape, label=args.target)
        out.update(runtime="onnxruntime", providers=sess.get_providers())
    elif kind == "symbol":
        ctx = bench.mxnet_context(args.device)
        size = size or DEFAULT_SYMBOL_INPUT_SIZE
        shape = (args.batch, 3, size, size)
        stats = bench.bench_symbol(args.target, args.params, shape, ctx, warmup=args.warmup, repeats=args.repeats)
        out["runtime"] = "mxnet"
        if args.params is None:
            out["note"] = RANDOM_WEIGHTS
    else:
        from spos_deploy.model_spec import load_spec

        spec = load_spec(args.target, input_size=size)  # before any MXNet work: a bad model.json fails fast
        ctx = bench.mxnet_context(args.device)
        from spos_deploy.nets.network import build_subnet

        net = build_subnet(spec, ctx=ctx)
        s = spec.space.input_size
        stats = bench.bench_mxnet(net, (args.batch, 3, s, s), ctx, warmup=args.warmup, repeats=args.repeats)
        out.update(runtime="mxnet", note=RANDOM_WEIGHTS)
    out.update(threads=args.threads, batch=args.batch, latency=stats.as_dict())
    order = ["target", "runtime", "device", "providers", "threads", "batch", "latency", "note"]
    return {k: out[k] for k in order if k in out}


def _machine_line(m: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in ("python", "mxnet", "onnxruntime", "numpy") if k in m)
    return f"machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores; {versions}"


def _print_text(out: dict[str, Any]) -> None:
    lat = out["latency"]
    threads = "default" if out["threads"] is None else out["threads"]
    row = [out["runtime"], out["device"], out["batch"], threads]
    row += [f"{lat[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms")]
    row.append("" if lat["throughput"] is None else f"{lat['throughput']:.1f}")
    headers = ["runtime", "device", "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "min ms"]
    headers.append("images/s (p50)")
    print(tabulate([row], headers=headers, tablefmt="github", disable_numparse=True))
    print()
    what = f"target: {out['target']}; {lat['runs']} timed runs after {lat['warmup']} warm-up"
    if "providers" in out:
        what += f"; providers: {', '.join(out['providers'])}"
    if "note" in out:
        what += f"; {out['note']}"
    print(what)
    print(_machine_line(out["machine"]))


def body(args: argparse.Namespace) -> int:
    kind = target_kind(args.target)
    _check_args(args, kind)
    if kind != "onnx":
        _set_mxnet_threads(args.threads)
    out = _measure(args, kind)
    from spos_deploy.machine import machine_record

    out["machine"] = machine_record()
    if args.json:
        print_json(out)
    else:
        _print_text(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run("spos-bench", build_parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
