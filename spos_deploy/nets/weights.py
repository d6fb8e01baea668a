"""Load and save subnet weights, with clear errors for files that do not fit the architecture.

Two file layouts are accepted: Gluon ``save_parameters`` (structural names such as
``features.3.main.0.conv.weight``) and ``export`` / checkpoint files (``arg:b03_pw1_weight``,
``aux:...``). Either may hold the BatchNorm form or the merged form of the network.
"""

from __future__ import annotations

from pathlib import Path

import mxnet as mx

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import SposNet


def read_params_file(path: str | Path) -> dict[str, mx.nd.NDArray]:
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p}: no such weights file")
    try:
        loaded = mx.nd.load(str(p))
    except mx.base.MXNetError:
        raise BadInputError(f"{p}: not a readable MXNet params file (corrupt or truncated)") from None
    if not isinstance(loaded, dict) or not loaded:
        raise BadInputError(f"{p}: holds no named parameters")
    return loaded


def _by_name(net: SposNet, loaded: dict[str, mx.nd.NDArray]) -> tuple[dict, dict]:
    """(model params, file arrays) keyed the same way, by the file's naming scheme."""
    if any(k.startswith(("arg:", "aux:")) for k in loaded):
        return dict(net.collect_params().items()), {k.split(":", 1)[1]: v for k, v in loaded.items()}
    return net._collect_params_with_prefix(), loaded


def _mismatch(net: SposNet, loaded: dict[str, mx.nd.NDArray]) -> tuple[list[str], list[str], list[str]]:
    params, arrays = _by_name(net, loaded)
    missing = [k for k in params if k not in arrays and "shuffle" not in k]
    unexpected = [k for k in arrays if k not in params]
    shapes = [
        f"{k}: file {tuple(arrays[k].shape)} vs model {params[k].shape}"
        for k in params
        if k in arrays and tuple(arrays[k].shape) != tuple(params[k].shape)
    ]
    return missing, unexpected, shapes


def load_subnet(spec: ModelSpec, path: str | Path, ctx: mx.Context | None = None) -> SposNet:
    """The subnet of ``spec`` with the weights of ``path`` (BN form or merged form, whichever the file holds)."""
    loaded = read_params_file(path)
    attempts = []
    for merged in (False, True):
        net = SposNet(spec, merged=merged)
        net.initialize(ctx=ctx)
        missing, unexpected, shapes = _mismatch(net, loaded)
        if not (missing or unexpected or shapes):
            params, arrays = _by_name(net, loaded)
            for k, p in params.items():
                if k in arrays:
                    p.set_data(arrays[k].as_in_context(ctx or mx.cpu()))
            return net
        attempts.append((missing, unexpected, shapes))
    missing, unexpected, shapes = min(attempts, key=lambda a: sum(map(len, a)))
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]})")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    raise BadInputError(f"{path}: weights do not match architecture '{spec.name}': {'; '.join(parts)}")


def save_subnet(net: SposNet, path: str | Path) -> None:
    from spos_deploy.atomic import atomic_path

    with atomic_path(path) as tmp:
        net.save_parameters(str(tmp))
