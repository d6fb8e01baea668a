"""ONNX export of fixed subnets, with a parity check against MXNet on real images.

MXNet's exporter writes every weight as a graph input as well as an initializer; the exported graph is
therefore cleaned (weights are initializers only, see
:func:`~spos_deploy.runtime.ort.strip_initializer_inputs`), stamped with the architecture, and checked.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx

from spos_deploy.atomic import atomic_path
from spos_deploy.deploy.choices import HSWISH_FORMS  # noqa: F401  (re-exported: the forms are declared there)
from spos_deploy.errors import SposError
from spos_deploy.nets.evaluate import batched_logits
from spos_deploy.nets.network import SposNet
from spos_deploy.runtime.ort import ort_logits, ort_session, strip_initializer_inputs

INPUT_NAME = "data"
PARITY_RTOL = 1e-4


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node (the exporter leaves convs unnamed) the name of its output, e.g. ``b03_pw1_fwd``."""
    for node in model.graph.node:
        if not node.name:
            node.name = node.output[0]


def export_symbol(net: mx.gluon.HybridBlock, prefix: str | Path, input_size: int) -> tuple[Path, Path]:
    """Hybridize and export ``prefix-symbol.json`` / ``prefix-0000.params``."""
    net.hybridize()
    net(mx.nd.zeros((1, 3, input_size, input_size)))
    net.export(str(prefix))
    return Path(f"{prefix}-symbol.json"), Path(f"{prefix}-0000.params")


def _export_raw(sym_file: Path, params_file: Path, raw: Path, size: int) -> None:
    mx.onnx.export_model(
        str(sym_file),
        str(params_file),
        [(1, 3, size, size)],
        np.float32,
        str(raw),
        dynamic=True,
        dynamic_input_shapes=[(None, 3, size, size)],
    )


def export_onnx(net: SposNet, path: str | Path, metadata: dict | None = None) -> Path:
    """Export ``net`` to ONNX at ``path`` (dynamic batch, weights as initializers, checked by onnx.checker)."""
    size = net.spec.space.input_size
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        sym_file, params_file = export_symbol(net, Path(tmp) / "net", size)
        raw = Path(tmp) / "raw.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the exporter logs three INFO lines per model on the root
        try:
            _export_raw(sym_file, params_file, raw, size)
        finally:
            root.setLevel(level)
        model = onnx.load(str(raw))
    strip_initializer_inputs(model)
    name_nodes(model)
    model.graph.name = net.spec.name
    model.producer_name = "spos-deploy"
    meta = {"model": json.dumps(net.spec.to_json()), "bn_merged": str(net.merged).lower(), "shuffle": net.spec.shuffle}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp_path:
        onnx.save(model, str(tmp_path))
    return path


@dataclass
class Parity:
    """How far two runtimes' outputs are apart on the same images.

    ``max_rel`` = max |a - b| / max |b| over all logits (b = the reference), which is robust to
    logits near zero; ``top1_agreement`` = share of images with the same arg-max.
    """

    images: int
    max_abs: float
    max_rel: float
    mean_abs: float
    top1_agreement: float
    tolerance: float
    passed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def compare_outputs(out: np.ndarray, ref: np.ndarray, tolerance: float) -> Parity:
    """How far ``out`` is from the reference ``ref`` (logits of the same images, same order)."""
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    scale = max(float(np.abs(ref).max()), 1e-12)
    max_rel = float(diff.max() / scale)
    return Parity(
        images=int(ref.shape[0]),
        max_abs=float(diff.max()),
        max_rel=max_rel,
        mean_abs=float(diff.mean()),
        top1_agreement=float((out.argmax(1) == ref.argmax(1)).mean()),
        tolerance=tolerance,
        passed=max_rel <= tolerance,
    )


def mxnet_logits(net: mx.gluon.HybridBlock, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of an MXNet network over ``images`` (batches of 16: small enough for 224 x 224 on a laptop)."""
    return batched_logits(net, images, batch_size=batch)


def check_onnx_parity(
    net: mx.gluon.HybridBlock, onnx_path: str | Path, images: np.ndarray, tolerance: float = PARITY_RTOL
) -> Parity:
    """onnxruntime vs MXNet on ``images``; raises :class:`SposError` when they differ beyond ``tolerance``."""
    parity = compare_outputs(ort_logits(ort_session(onnx_path), images), mxnet_logits(net, images), tolerance)
    if not parity.passed:
        raise SposError(
            f"ONNX parity check failed: max relative difference {parity.max_rel:.3g} > {tolerance:g} "
            f"on {parity.images} images"
        )
    return parity


# ---- activation form ----------------------------------------------------------------------------------------
HARDSWISH_OPSET = 14


def use_hardswish_op(model: onnx.ModelProto) -> int:
    """Replace each ``Mul(x, HardSigmoid(x; 1/6, 1/2))`` by ``HardSwish(x)`` in place; returns how many.

    The same function (ONNX defines HardSwish as exactly that product), one node instead of two: OpenVINO
    then fuses it into the convolution before it, where the pair runs as an unfused reference kernel. A
    HardSigmoid used alone (the SE gate) stays as it is.
    """
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    for node in model.graph.node:
        if node.op_type != "HardSigmoid" or not _is_hswish_gate(node):
            continue
        x, gate = node.input[0], node.output[0]
        after = users.get(gate, [])
        if len(after) == 1 and after[0].op_type == "Mul" and sorted(after[0].input) == sorted([x, gate]):
            mul = after[0]
            drop.add(id(node))
            replace[id(mul)] = onnx.helper.make_node("HardSwish", [x], list(mul.output), name=f"{mul.name}_hswish")
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in model.graph.node if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, HARDSWISH_OPSET)
    return len(replace)


def _is_hswish_gate(node: onnx.NodeProto) -> bool:
    attrs = {a.name: a.f for a in node.attribute}
    return abs(attrs.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(attrs.get("beta", 0.5) - 0.5) < 1e-6


def rewrite_hswish(src: str | Path, dst: str | Path) -> int:
    """``src`` with :func:`use_hardswish_op` applied, checked and written atomically to ``dst``."""
    model = onnx.load(str(src))
    n = use_hardswish_op(model)
    onnx.checker.check_model(model)
    with atomic_path(Path(dst)) as tmp_path:
        onnx.save(model, str(tmp_path))
    return n
