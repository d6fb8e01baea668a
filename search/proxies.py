"""Zero-cost proxies: how good an architecture of the search space may be, from its untrained network alone.

They are the baselines a supernet's ranking has to beat beside FLOPs, params and latency (issue 31): each costs
one or two passes of an untrained network over a batch, where a supernet costs a training run. Three are here,
each a function of a Gluon network (:func:`spos_deploy.nets.network.build_subnet`) that leaves the network as it
found it (weights, BN running statistics and dropout restored; gradients returned, never stored):

* :func:`synflow` -- Tanaka et al. 2020, "Pruning neural networks without any data by iteratively conserving
  synaptic flow", used as a NAS proxy by Abdelfattah et al. 2021, "Zero-cost proxies for lightweight NAS";
* :func:`naswot` -- Mellor et al. 2021, "Neural architecture search without training" (NASWOT);
* :func:`jacob_cov` -- Mellor et al. 2020 (the first version of that paper), in the form of Abdelfattah et al.

:data:`PROXIES` names them; :func:`proxy_scores` builds an architecture at several random inits and averages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mxnet as mx
import numpy as np
from mxnet.gluon import Block, nn

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.blocks import HardSwish
from spos_deploy.nets.network import build_subnet
from spos_deploy.space import SearchSpace

JACOB_EPS = 1e-5  # Abdelfattah et al.'s k: keeps log and 1/v finite at the zero eigenvalues of duplicated inputs
SEEDS = (0, 1, 2)


# ---- what every proxy needs ---------------------------------------------------------------------------------
def _blocks(net: Block) -> list[Block]:
    found: list[Block] = []
    net.apply(found.append)
    return found


def _ctx(net: Block) -> mx.Context:
    return next(iter(net.collect_params().values())).list_ctx()[0]


def _check_imperative(net: Block, why: str) -> None:
    """Refuse a hybridized network: its children run inside one cached graph, so ``why`` would not work."""
    if any(getattr(b, "_active", False) for b in _blocks(net)):
        raise ValueError(f"the network is hybridized: {why}; build it again without hybridize()")


@contextlib.contextmanager
def _preserved(net: Block) -> Iterator[None]:
    """Every parameter (weights and BN running statistics, which a train-mode forward updates) put back after."""
    params = list(net.collect_params().values())
    saved = [p.data().copy() for p in params]
    try:
        yield
    finally:
        for p, d in zip(params, saved):
            p.data()[:] = d


@contextlib.contextmanager
def _no_dropout(net: Block) -> Iterator[None]:
    """Dropout off in a train-mode pass: BN then uses the batch's statistics (as the papers' networks did, which
    had no dropout), while the score stays a function of the weights and images, not of a random mask."""
    drops = [b for b in _blocks(net) if isinstance(b, nn.Dropout)]
    rates = [b._rate for b in drops]
    for b in drops:
        b._rate = 0.0
    try:
        yield
    finally:
        for b, r in zip(drops, rates):
            b._rate = r


def _as_input(net: Block, x: Any) -> mx.nd.NDArray:
    return x.as_in_context(_ctx(net)) if isinstance(x, mx.nd.NDArray) else mx.nd.array(x, ctx=_ctx(net))


# ---- the proxies --------------------------------------------------------------------------------------------
def synflow(net: Block, input_shape: Sequence[int]) -> float:
    """log of SynFlow: sum over parameters of |theta * dR/dtheta|, R the summed output of the network with every
    parameter replaced by its absolute value, for one all-ones input of ``input_shape`` (C, H, W).

    Why: with all weights positive and a constant input nothing cancels, so R is the total "synaptic flow"
    through the network and each term says how much a parameter carries of it (Tanaka et al. 2020); no data and
    no labels are needed. BN runs in inference mode (the running statistics, as a deployed network), so the
    score depends on the weights alone. The log is returned: the score is a product over depth and overflows
    easily, and the ranking is the same.
    """
    params = list(net.collect_params().values())
    trainable = [p for p in params if p.grad_req != "null"]
    with _preserved(net):
        for p in params:
            p.data()[:] = mx.nd.abs(p.data())
        x = mx.nd.ones((1, *[int(v) for v in input_shape]), ctx=_ctx(net))
        with mx.autograd.record(train_mode=False):
            r = net(x).sum()
        grads = mx.autograd.grad(r, [p.data() for p in trainable], train_mode=False)
        score = sum(
            float(np.abs(p.data().asnumpy().astype(np.float64) * g.asnumpy()).sum()) for p, g in zip(trainable, grads)
        )
    return float(np.log(score)) if score > 0 else float("-inf")


def _relu_like(b: Block) -> bool:
    return (isinstance(b, nn.Activation) and b._act_type == "relu") or isinstance(b, HardSwish)


def naswot(net: Block, x: Any) -> float:
    """NASWOT (Mellor et al. 2021): log|K| of the kernel of the images' binary activation codes.

    Each image's code is which units of every ReLU-like activation are on (x > 0); ``K = C C^T + (1-C)(1-C)^T``
    counts, for each pair of images, the units on which their codes agree. Why: a network whose units separate
    the images of a batch into different linear regions (codes far apart, K close to diagonal, large
    determinant) was found to train to higher accuracy. Forward in train mode (batch statistics) as in the
    paper; ``x`` is a batch of real images (N, C, H, W); duplicated images give a singular K and ``-inf``.
    The codes come from forward hooks, so the network must not be hybridized.
    """
    _check_imperative(net, "the forward hooks that read the activation codes would not fire")
    x = _as_input(net, x)
    n = x.shape[0]
    k = np.zeros((n, n))

    def hook(block: Block, inputs: Any, output: mx.nd.NDArray) -> None:
        c = (output > 0).reshape((n, -1)).asnumpy().astype(np.float64)
        k[:] += c @ c.T + (1 - c) @ (1 - c).T

    handles = [b.register_forward_hook(hook) for b in _blocks(net) if _relu_like(b)]
    try:
        with _preserved(net), _no_dropout(net), mx.autograd.train_mode():
            net(x)
    finally:
        for h in handles:
            h.detach()
    if not handles:
        raise ValueError("naswot: the network has no ReLU-like activation")
    sign, logdet = np.linalg.slogdet(k)
    return float(logdet) if sign > 0 else float("-inf")


def jacob_cov(net: Block, x: Any) -> float:
    """Jacobian covariance (Mellor et al. 2020; Abdelfattah et al. 2021): ``-sum(log(v + k) + 1 / (v + k))`` over
    the eigenvalues v of the correlation matrix of the per-image input gradients of the summed output.

    Why: if the network's local linear maps at different images are uncorrelated (v near 1), it can tell the
    images apart, and such networks were found to train better; correlated Jacobians (v near 0) give a large
    penalty. Forward in train mode (batch statistics) as in the paper, dropout off; ``x`` real images.
    """
    _check_imperative(net, "dropout could not be switched off")
    x = _as_input(net, x).copy()
    x.attach_grad()
    with _preserved(net), _no_dropout(net):
        with mx.autograd.record(train_mode=True):
            r = net(x).sum()
        (g,) = mx.autograd.grad(r, [x], train_mode=True)
    jac = g.asnumpy().reshape(x.shape[0], -1).astype(np.float64)
    v = np.clip(np.linalg.eigvalsh(np.corrcoef(jac)), 0.0, None)  # PSD: a negative v is rounding
    return float(-np.sum(np.log(v + JACOB_EPS) + 1.0 / (v + JACOB_EPS)))


def _synflow_of_batch(net: Block, x: Any) -> float:
    return synflow(net, x.shape[1:])


PROXIES: dict[str, Callable[[Block, Any], float]] = {
    "synflow": _synflow_of_batch,  # uses only the shape of the images
    "naswot": naswot,
    "jacob_cov": jacob_cov,
}
"""Every zero-cost proxy by name, as ``f(net, images) -> score`` (larger: predicted better)."""


def proxy_scores(
    space: SearchSpace,
    blocks: Sequence[int],
    channels: Sequence[int],
    images: np.ndarray,
    names: Sequence[str] | None = None,
    seeds: Sequence[int] = SEEDS,
) -> dict[str, float]:
    """Each proxy of ``names`` (default: all of :data:`PROXIES`) for one architecture of ``space``, averaged over
    the networks built at each seed's random init (:func:`~spos_deploy.nets.network.build_subnet`).

    Why several inits: a proxy of one untrained network is a random variable of its init, and with one init the
    noise alone reorders close architectures; the mean over a few is what a ranking should use. ``images``: a
    float32 (N, 3, H, W) batch of real images of the space's size (e.g. 64 training images).
    """
    names = list(PROXIES) if names is None else list(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise BadInputError(f"unknown zero-cost proxy {unknown[0]!r} (known: {', '.join(PROXIES)})")
    images = np.asarray(images, dtype=np.float32)
    size = space.input_size
    if images.ndim != 4 or images.shape[1:] != (3, size, size) or len(images) < 2:
        raise BadInputError(f"proxy images must be (N >= 2, 3, {size}, {size}), got shape {images.shape}")
    if not seeds:
        raise BadInputError("proxy_scores needs at least one seed")
    npos = space.num_positions
    if len(blocks) != npos or len(channels) != npos or not all(0 <= int(b) < space.num_blocks for b in blocks):
        raise BadInputError(f"an architecture of this space has {npos} block choices in 0..{space.num_blocks - 1}")
    if not all(0 <= int(c) < space.num_scales and space.channel_valid(i, int(c)) for i, c in enumerate(channels)):
        raise BadInputError(f"channel choices {list(channels)} are not all valid in this space")
    spec = ModelSpec(space, tuple(int(b) for b in blocks), tuple(int(c) for c in channels))
    scores: dict[str, list[float]] = {n: [] for n in names}
    for seed in seeds:
        net = build_subnet(spec, seed=int(seed), ctx=mx.cpu())
        x = mx.nd.array(images, ctx=mx.cpu())
        for n in names:
            scores[n].append(PROXIES[n](net, x))
    return {n: float(np.mean(v)) for n, v in scores.items()}
