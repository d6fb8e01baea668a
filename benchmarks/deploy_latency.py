"""OneShot-S+ at 224x224, batch 1, five deployments side by side in one run on this CPU.

Rows: MXNet fp32 hybridized with BN and the reshape shuffle (how the seed project ran it), MXNet fp32
with BN merged, MXNet int8 (contrib quantize_net), onnxruntime fp32, onnxruntime int8 (QDQ). Targets:
onnxruntime int8 >= 6x and fp32 >= 4x faster than the first row. The compute floor is the model's
FLOPs (2 per multiply-accumulate) over the machine's measured fp32 GEMM rate (x4 for int8, the
VNNI/AVX-512 int8 throughput ratio), so "x floor" says how far each runtime is from compute-bound.

    python benchmarks/deploy_latency.py [--repeats 200] [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos_deploy.atomic import write_json, write_text  # noqa: E402
from spos_deploy.counting.profile import profile_spec  # noqa: E402
from spos_deploy.data.images import imagenet_samples  # noqa: E402
from spos_deploy.deploy.onnx import export_onnx  # noqa: E402
from spos_deploy.deploy.quantize import OrtQuantConfig, quantize_mxnet, quantize_onnx  # noqa: E402
from spos_deploy.deploy.transforms import merge_bn  # noqa: E402
from spos_deploy.machine import has_vnni, machine_record  # noqa: E402
from spos_deploy.model_spec import load_spec  # noqa: E402
from spos_deploy.nets.network import build_subnet  # noqa: E402
from spos_deploy.runtime.bench import bench_mxnet, bench_onnx, mxnet_context  # noqa: E402


def gemm_flops_per_s(n: int = 1024, repeats: int = 10) -> float:
    """Achievable fp32 FLOP/s of this machine: a large single-precision matrix product (numpy BLAS)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    spec = load_spec("oneshot-s+")
    size = spec.space.input_size
    shape = (1, 3, size, size)
    calib = imagenet_samples(size).images
    prof = profile_spec(spec)
    flops = 2 * prof.flops  # multiply-accumulates -> floating-point operations
    gemm = gemm_flops_per_s()

    ctx = mxnet_context(args.device)
    kw = dict(warmup=args.warmup, repeats=args.repeats)
    rows = []
    base = build_subnet(spec, seed=0, ctx=ctx)
    rows.append(("MXNet fp32, BN + reshape shuffle (seed setup)", "fp32", bench_mxnet(base, shape, ctx=ctx, **kw)))
    merged = merge_bn(base, ctx=ctx)
    rows.append(("MXNet fp32, BN merged", "fp32", bench_mxnet(merged, shape, ctx=ctx, **kw)))
    if args.device == "cpu":
        rows.append(
            (
                "MXNet int8 (contrib quantize_net, oneDNN)",
                "int8",
                bench_mxnet(quantize_mxnet(merge_bn(base), calib, size), shape, **kw),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(merge_bn(build_subnet(spec, seed=0)), Path(tmp) / "m.onnx")
        rows.append(("onnxruntime fp32", "fp32", bench_onnx(str(fp32), device=args.device, **kw)))
        if args.device == "cpu":
            q = quantize_onnx(fp32, Path(tmp) / "q.onnx", calib, size, OrtQuantConfig(keep_float=0))
            rows.append(("onnxruntime int8 (QDQ, per-channel)", "int8", bench_onnx(q.path, **kw)))

    base_p50 = rows[0][2].p50_ms
    table, records = [], []
    for name, precision, st in rows:
        floor_ms = flops / (gemm * (4 if precision == "int8" else 1)) * 1e3
        table.append(
            [
                name,
                f"{st.p50_ms:.2f}",
                f"{st.p90_ms:.2f}",
                f"{st.p99_ms:.2f}",
                f"{base_p50 / st.p50_ms:.2f}x",
                f"{st.p50_ms / floor_ms:.1f}x",
            ]
        )
        records.append(
            {
                "row": name,
                "precision": precision,
                **st.as_dict(),
                "speedup_vs_seed_setup": base_p50 / st.p50_ms,
                "compute_floor_ms": floor_ms,
            }
        )
    headers = ["deployment (batch 1)", "p50 ms", "p90 ms", "p99 ms", "speed-up vs row 1", "x compute floor"]
    text = tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)
    print(text)
    ort32 = next(r for r in records if r["row"].startswith("onnxruntime fp32"))["speedup_vs_seed_setup"]
    ort8 = next((r for r in records if r["row"].startswith("onnxruntime int8")), {}).get("speedup_vs_seed_setup")
    targets = {"onnxruntime_fp32_4x": ort32 >= 4, "onnxruntime_int8_6x": None if ort8 is None else ort8 >= 6}
    m = machine_record()
    result = {
        "benchmark": "deploy_latency",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "machine": m,
        "vnni": has_vnni(),
        "model": "oneshot-s+ (random weights; latency does not depend on them)",
        "flops": flops,
        "gemm_fp32_flops_per_s": gemm,
        "rows": records,
        "targets": targets,
    }
    print(f"\nfp32 GEMM rate {gemm / 1e9:.1f} GFLOP/s; model {flops / 1e6:.0f} MFLOP; targets: {targets}")
    out = Path(args.out)
    stem = f"deploy_latency_{args.device}"
    write_json(out / f"{stem}.json", result)
    write_text(
        out / f"{stem}.md",
        f"# Deployment latency, OneShot-S+ 224x224, batch 1 ({args.device})\n\n{result['date']} on {m['cpu']} "
        f"({m['usable_cores']} cores, flags {', '.join(m['cpu_flags'])}); MXNet {m.get('mxnet')}, onnxruntime "
        f"{m.get('onnxruntime')}; {args.repeats} timed runs after {args.warmup} warm-up.\n\n{text}\n\n"
        f"Compute floor: {flops / 1e6:.0f} MFLOP over the measured fp32 GEMM rate {gemm / 1e9:.1f} GFLOP/s "
        f"(x4 for int8). Targets (vs row 1): onnxruntime fp32 >= 4x: **{targets['onnxruntime_fp32_4x']}**, "
        f"onnxruntime int8 >= 6x: **{targets['onnxruntime_int8_6x']}**.\n",
    )


if __name__ == "__main__":
    main()
