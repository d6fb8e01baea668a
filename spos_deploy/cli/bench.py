"""``spos-bench``: latency and throughput of an ONNX file (onnxruntime or OpenVINO), an OpenVINO IR, an
exported MXNet graph or a model.json (MXNet).

MXNet, onnxruntime and OpenVINO are imported only once the arguments are checked: MXNet reads
``OMP_NUM_THREADS`` when it starts, so that is the one moment ``--threads`` can reach it. Precision is
stated, never changed silently: OpenVINO compiles exactly ``--precision`` (default fp32) and reports what it
compiled; onnxruntime and MXNet run a file at the precision it holds, and a ``--precision`` that differs is
refused. Every latency figure carries the load record of its timed loop (``runtime/load.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from spos_deploy.cli.common import add_common, print_json, run
from spos_deploy.cli.options import (
    add_batch,
    add_hint,
    add_input_size,
    add_params,
    add_precision,
    add_progress,
    add_repeats,
    add_runtime,
    add_sessions,
    add_threads,
    add_throughput,
    nonneg_int,
    show_progress,
    throughput_batches,
)
from spos_deploy.errors import BadInputError
from spos_deploy.runtime.deployed import SESSIONS

log = logging.getLogger("spos_deploy")

RANDOM_WEIGHTS = "random weights: latency only"
DEFAULT_SYMBOL_INPUT_SIZE = 224  # an exported graph does not record its input size
KIND_RUNTIMES = {"onnx": ("onnxruntime", "openvino"), "ir": ("openvino",), "symbol": ("mxnet",), "spec": ("mxnet",)}
"""Which runtimes can run each kind of target; the first is what ``--runtime auto`` picks."""
KIND_WORDS = {
    "onnx": "an .onnx file",
    "ir": "an OpenVINO IR",
    "symbol": "an MXNet graph",
    "spec": "a model.json or built-in model",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spos-bench",
        description="Measure inference latency (p50/p90/p99) and throughput of an .onnx file (onnxruntime or "
        "OpenVINO), an OpenVINO IR (.xml + .bin), an MXNet '-symbol.json' graph, a model.json or a built-in model "
        "(oneshot, oneshot+, oneshot-s+; MXNet). Model.json and built-ins get random weights: latency only. "
        "Every figure says whether the machine was busy while it was measured.",
    )
    p.add_argument("target", metavar="TARGET", help=".onnx, .xml (IR), MXNet -symbol.json, model.json or built-in")
    add_runtime(
        p,
        "auto",
        "auto: onnxruntime for .onnx, openvino for .xml, mxnet for graphs and models",
        device_help="where to run",
        auto=True,
    )
    add_precision(
        p,
        help="openvino: the precision compiled (default fp32; bf16 only where the CPU has it); "
        "onnxruntime/mxnet: must match the file's own",
    )
    add_hint(p)
    add_params(p, help="weights of a -symbol.json target (default: random weights)")
    add_batch(p, help="images per call")
    add_threads(
        p,
        help="intra-op (onnxruntime), inference (OpenVINO) or OpenMP (MXNet) threads, 1-256 "
        "(default: the runtime's own)",
    )
    p.add_argument("--warmup", type=nonneg_int, default=10, help="untimed calls before timing (default: 10)")
    add_repeats(p, 50, "timed calls")
    add_sessions(
        p,
        SESSIONS,
        f"also the deployed latency (docs/latency.md): the median of {SESSIONS} fresh sessions' medians and "
        "the budget quantile of them (onnxruntime and OpenVINO; 0: skip)",
        lo=0,
    )
    add_throughput(p)
    add_input_size(
        p,
        help="input height and width (default: the model's; 224 for a -symbol.json; required for an .onnx "
        "file with dynamic H and W)",
    )
    add_progress(p)
    add_common(p)
    return p


def target_kind(target: str) -> str:
    """``onnx``, ``ir`` (an OpenVINO .xml), ``symbol`` (an MXNet graph: by name, or a .json file holding
    ``nodes`` and ``heads``) or ``spec``."""
    if target.lower().endswith(".onnx"):
        return "onnx"
    if target.lower().endswith(".xml"):
        return "ir"
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


def choose_runtime(kind: str, runtime: str) -> str:
    """The runtime that runs a target of ``kind`` (``auto``: the first of :data:`KIND_RUNTIMES`)."""
    allowed = KIND_RUNTIMES[kind]
    if runtime == "auto":
        return allowed[0]
    if runtime not in allowed:
        hint = "; export it with spos-export first" if kind == "spec" else ""
        raise BadInputError(f"--runtime {runtime} cannot run {KIND_WORDS[kind]}; it takes {' or '.join(allowed)}{hint}")
    return runtime


def _check_args(args: argparse.Namespace, kind: str, runtime: str) -> None:
    """What argparse cannot check alone (the numbers are checked while parsing)."""
    if args.params is not None and kind != "symbol":
        raise BadInputError("--params applies only to an MXNet -symbol.json target")
    if kind in ("onnx", "ir") and not Path(args.target).is_file():
        raise BadInputError(f"{args.target}: no such file")
    if kind == "ir" and not Path(args.target).with_suffix(".bin").is_file():
        raise BadInputError(f"{args.target}: its weights {Path(args.target).with_suffix('.bin').name} are missing")
    if runtime != "openvino" and args.hint is not None:
        raise BadInputError(f"--hint applies only to --runtime openvino, not {runtime}")
    if runtime == "openvino" and args.device != "cpu":
        raise BadInputError("--device gpu: the OpenVINO runtime here runs on the CPU only")


def _set_mxnet_threads(threads: int | None) -> None:
    """Give MXNet's OpenMP ``threads`` threads: possible only before MXNet is imported in this process."""
    if threads is None:
        return
    if "mxnet" in sys.modules:
        log.warning("--threads %d: MXNet is already loaded in this process; its thread count stays as it is", threads)
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)


def _file_precision(args: argparse.Namespace, runtime: str, held: str) -> str:
    """onnxruntime and MXNet run what the file holds: a --precision asking for something else is refused."""
    if args.precision is not None and args.precision != held:
        raise BadInputError(
            f"--precision {args.precision}: {runtime} runs {args.target} at the precision it holds, {held} "
            f"(only --runtime openvino compiles a chosen precision)"
        )
    return held


Bencher = Callable[[int, str], Any]
"""``(batch, label) -> LatencyStats`` (or ``(LatencyStats, requests)`` for OpenVINO's throughput rounds)."""
Fresh = Callable[[], Callable[[], Any]] | None
"""Makes a fresh session of the target and returns one call on it (the deployed-latency definition), or None
where the definition is not measured (MXNet)."""


def _onnxruntime(args: argparse.Namespace, out: dict[str, Any]) -> tuple[Bencher, Bencher, Fresh]:
    from spos_deploy.runtime import bench
    from spos_deploy.runtime.ort import ort_session

    out["precision"] = _file_precision(args, "onnxruntime", bench.onnx_precision(args.target))
    out["precision_source"] = "file"
    sess = ort_session(args.target, device=args.device, threads=args.threads)
    out["providers"] = sess.get_providers()
    size = args.input_size

    def at(batch: int, label: str) -> Any:
        shape = None if size is None else (batch, None, size, size)
        return bench.bench_ort_session(sess, batch, args.warmup, args.repeats, shape, args.target, warn_label=label)

    def fresh() -> Callable[[], Any]:
        from spos_deploy.runtime.ort import ort_runner

        shape = None if size is None else (args.batch, None, size, size)
        return ort_runner(args.target, args.batch, shape, device=args.device, threads=args.threads)

    return at, at, fresh


def _openvino(args: argparse.Namespace, out: dict[str, Any]) -> tuple[Bencher, Bencher, Fresh]:
    from spos_deploy.runtime import bench
    from spos_deploy.runtime.openvino import ov_compile

    hint = args.hint or "latency"
    compiled = ov_compile(args.target, args.precision or "fp32", args.threads, hint, label=args.target)
    out.update(precision=compiled.precision, precision_source="asked", openvino=compiled.as_dict())
    size = args.input_size

    def shape(batch: int) -> tuple | None:
        return None if size is None else (batch, None, size, size)

    def at(batch: int, label: str) -> Any:
        return bench.bench_ov_compiled(compiled, batch, args.warmup, args.repeats, shape(batch), label)

    def rate(batch: int, label: str) -> Any:
        if hint != "throughput":
            return at(batch, label)
        return bench.ov_parallel_throughput(compiled, batch, args.warmup, args.repeats, shape(batch), label)

    def fresh() -> Callable[[], Any]:
        from spos_deploy.runtime.openvino import ov_runner

        again = ov_compile(args.target, args.precision or "fp32", args.threads, hint, label=args.target)
        return ov_runner(again, args.batch, shape(args.batch))

    return at, rate, fresh


def _mxnet(args: argparse.Namespace, kind: str, out: dict[str, Any]) -> tuple[Bencher, Bencher, Fresh]:
    from spos_deploy.runtime import bench

    if kind == "symbol":
        out["precision"] = _file_precision(args, "mxnet", bench.symbol_precision(args.target))
        ctx = bench.mxnet_context(args.device)
        size = args.input_size or DEFAULT_SYMBOL_INPUT_SIZE
        net = bench.load_symbol_block(args.target, args.params, ctx)
        if args.params is None:
            out["note"] = RANDOM_WEIGHTS
    else:
        from spos_deploy.model_spec import load_spec

        spec = load_spec(args.target, input_size=args.input_size)  # before any MXNet work: fails fast
        out["precision"] = _file_precision(args, "mxnet", "fp32")
        ctx = bench.mxnet_context(args.device)
        from spos_deploy.nets.network import build_subnet

        net = build_subnet(spec, ctx=ctx)
        size = spec.space.input_size
        out["note"] = RANDOM_WEIGHTS
    out["precision_source"] = "file" if kind == "symbol" else "model"

    def at(batch: int, label: str) -> Any:
        return bench.bench_mxnet(net, (batch, 3, size, size), ctx, args.warmup, args.repeats, label=label)

    return at, at, None


def _throughput_row(result: Any, batch: int) -> dict[str, Any]:
    stats, requests = result if isinstance(result, tuple) else (result, 1)
    return {
        "batch": batch,
        "requests": requests,
        "images_per_s": stats.as_dict()["throughput"],
        "p50_ms": stats.p50_ms,
        "busy": stats.busy,
        "latency": stats.as_dict(),
    }


def _measure(args: argparse.Namespace, kind: str, runtime: str) -> dict[str, Any]:
    out: dict[str, Any] = {"target": args.target, "runtime": runtime, "device": args.device}
    if runtime == "onnxruntime":
        at, rate, fresh = _onnxruntime(args, out)
    elif runtime == "openvino":
        at, rate, fresh = _openvino(args, out)
    else:
        at, rate, fresh = _mxnet(args, kind, out)
    stats = at(args.batch, "")
    out.update(threads=args.threads, batch=args.batch, latency=stats.as_dict())
    if fresh is not None and args.sessions:
        from spos_deploy.runtime.deployed import measure_deployed

        bar = show_progress(args) and sys.stderr.isatty()  # a bar over the sessions, on a terminal only
        out["deployed"] = measure_deployed([fresh], sessions=args.sessions, progress=bar)[0].as_dict()
    warnings = list(stats.warnings)
    batches = throughput_batches(args.throughput)
    if batches:
        rows = [_throughput_row(rate(b, f"batch {b}"), b) for b in batches]
        out["throughput"] = rows
        warnings += [w for r in rows for w in r["latency"]["warnings"]]
    out["warnings"] = warnings
    order = ["target", "runtime", "precision", "precision_source", "openvino", "device", "providers", "threads"]
    order += ["batch", "latency", "deployed", "throughput", "warnings", "note"]
    return {k: out[k] for k in order if k in out}


def _machine_line(m: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {m[k]}" for k in ("python", "mxnet", "onnxruntime", "numpy") if k in m)
    return f"machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical cores; {versions}"


def _openvino_line(ov: dict[str, Any]) -> str:
    layers = ", ".join(f"{k} " + "/".join(f"{p} {n}" for p, n in v.items()) for k, v in ov["layers"].items())
    line = (
        f"openvino {ov['openvino'].split('-')[0]}: asked {ov['precision']}, compiled inference precision "
        f"{ov['inference_precision']}, executed {ov['executed_precision']} ({layers}); hint {ov['hint']}, "
        f"{ov['threads']} threads, {ov['streams']} streams"
    )
    return line + "".join(f"; {n}" for n in ov.get("notes", []))


def _precision_line(out: dict[str, Any]) -> str:
    source = {"file": "the file's own", "model": "the model's, random weights", "asked": "as asked"}
    return f"precision: {out['precision']} ({source[out['precision_source']]})"


def _print_text(out: dict[str, Any]) -> None:
    from spos_deploy.runtime.load import summary_line

    lat = out["latency"]
    threads = "default" if out["threads"] is None else out["threads"]
    row = [out["runtime"], out["precision"], out["device"], out["batch"], threads]
    row += [f"{lat[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms")]
    row.append("" if lat["throughput"] is None else f"{lat['throughput']:.1f}")
    headers = ["runtime", "precision", "device", "batch", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms"]
    headers += ["std ms", "min ms", "images/s (p50)"]
    print(tabulate([row], headers=headers, tablefmt="github", disable_numparse=True))
    if "throughput" in out:
        print()
        rows = [
            [
                r["batch"],
                r["requests"],
                f"{r['p50_ms']:.3f}",
                f"{r['images_per_s'] or 0:.1f}",
                summary_line(r["latency"]["load"]),
            ]
            for r in out["throughput"]
        ]
        headers = ["batch", "requests in flight", "p50 ms (per call)", "images/s", "load"]
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    print()
    what = f"target: {out['target']}; {lat['runs']} timed runs after {lat['warmup']} warm-up"
    if "providers" in out:
        what += f"; providers: {', '.join(out['providers'])}"
    if "note" in out:
        what += f"; {out['note']}"
    print(what)
    print(_openvino_line(out["openvino"]) if "openvino" in out else _precision_line(out))
    if "deployed" in out:
        d = out["deployed"]
        print(
            f"deployed latency: {d['ms']:.3f} ms, the median of {len(d['session_ms'])} fresh sessions' medians; "
            f"{round(100 * d['budget_quantile'])} % of sessions within {d['budget_ms']:.3f} ms (what a budget is "
            "checked against)"
        )
    print(f"load: {summary_line(lat['load'])}")
    print(_machine_line(out["machine"]))


def body(args: argparse.Namespace) -> int:
    kind = target_kind(args.target)
    runtime = choose_runtime(kind, args.runtime)
    _check_args(args, kind, runtime)
    if runtime == "openvino":
        from spos_deploy.runtime.openvino import require_openvino

        require_openvino("--runtime openvino" if args.runtime == "openvino" else f"{args.target} (an OpenVINO IR)")
    if runtime == "mxnet":
        _set_mxnet_threads(args.threads)
    out = _measure(args, kind, runtime)
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
