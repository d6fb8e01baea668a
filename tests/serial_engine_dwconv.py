"""The rewritten depthwise backward (spos_deploy.nets.dwconv) gives MXNet's own gradients.

Run by tests/test_dwconv.py in a process of its own under MXNet's serial engine (``MXNET_ENGINE_TYPE`` is read
once, when MXNet loads; the operator is used only there). Not collected by the suite's own run.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets import dwconv
from spos_deploy.nets.network import build_subnet
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.space import space_for_layout


@pytest.fixture(autouse=True, scope="module")
def _serial_engine():
    assert dwconv.SERIAL_ENGINE, "run under MXNET_ENGINE_TYPE=NaiveEngine (tests/test_dwconv.py does)"


def _grads(fn, x: np.ndarray, w: np.ndarray, grad_req: str = "write", repeats: int = 1):
    xs, ws = mx.nd.array(x), mx.nd.array(w)
    xs.attach_grad(grad_req)
    ws.attach_grad(grad_req)
    for _ in range(repeats):
        with mx.autograd.record():
            y = fn(xs, ws)
            loss = (y * mx.nd.array(np.linspace(-1, 1, y.size).reshape(y.shape))).sum()
        loss.backward()
    return y.asnumpy(), xs.grad.asnumpy(), ws.grad.asnumpy()


@pytest.mark.parametrize(
    "kernel,size,stride", [(5, 8, 1), (7, 8, 1), (7, 3, 1), (5, 8, 2), (7, 7, 2), (5, 4, 2), (3, 6, 1)]
)
def test_rewritten_backward_equals_mxnets_own(kernel, size, stride):
    """Outputs and both gradients equal MXNet's depthwise convolution within float32 rounding (odd sizes too)."""
    rng = np.random.default_rng(kernel * 100 + size * 10 + stride)
    n, c, pad = 3, 16, kernel // 2
    x = rng.normal(size=(n, c, size, size)).astype(np.float32)
    w = rng.normal(size=(c, 1, kernel, kernel)).astype(np.float32)

    def native(xs, ws):
        return mx.nd.Convolution(
            xs, ws, kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad), num_filter=c, num_group=c,
            no_bias=True,
        )  # fmt: skip

    def rewritten(xs, ws):
        return dwconv.depthwise_conv(mx.nd, xs, ws, kernel, stride, pad)

    ref, got = _grads(native, x, w), _grads(rewritten, x, w)
    assert got[0].shape == ref[0].shape
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    assert np.abs(got[2]).max() > 0 and np.abs(got[1]).max() > 0


def test_rewritten_backward_adds_into_accumulated_gradients():
    """With grad_req 'add' (the sandwich rule sums its paths) two passes give twice one pass's gradient."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16, 6, 6)).astype(np.float32)
    w = rng.normal(size=(16, 1, 5, 5)).astype(np.float32)

    def rewritten(xs, ws):
        return dwconv.depthwise_conv(mx.nd, xs, ws, 5, 1, 2)

    once, twice = _grads(rewritten, x, w, "add", 1), _grads(rewritten, x, w, "add", 2)
    np.testing.assert_allclose(twice[1], 2 * once[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(twice[2], 2 * once[2], rtol=1e-5, atol=1e-5)


def _dw_weight_grads(net) -> dict[str, np.ndarray]:
    return {
        name: p.grad().asnumpy()
        for name, p in net.collect_params().items()
        if p.grad_req != "null" and len(p.shape) == 4 and p.shape[1] == 1 and p.shape[2] >= 5
    }


@pytest.mark.parametrize("hybridize", [False, True])
def test_training_subnet_with_rewritten_backward_learns_what_the_native_one_does(hybridize):
    """A hybridized training-form network (5x5 and 7x7 blocks, strides 1 and 2) gives the native form's gradients."""
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    spec = ModelSpec(space, (1, 2) * 10, (9,) * 20)
    with dwconv.native_backward():
        native = build_subnet(spec, seed=4, crop=True)
    rewritten = build_subnet(spec, seed=4, crop=True)
    ops = {type(b).__name__ for b in _walk(rewritten) if getattr(b, "_rewrite", False)}
    assert ops == {"CroppedConv2D"} and not any(getattr(b, "_rewrite", False) for b in _walk(native))
    x = mx.nd.array(np.random.default_rng(1).normal(size=(4, 3, 32, 32)).astype(np.float32))
    y = mx.nd.array([1, 3, 5, 7])
    results = []
    for net in (native, rewritten):
        if hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
        mx.random.seed(9)  # the same dropout mask in the head
        with mx.autograd.record():
            loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), y).sum()
        loss.backward()
        results.append((loss.asscalar(), _dw_weight_grads(net)))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    assert len(grads_a) >= 10 and grads_a.keys() == grads_b.keys()
    for name, g in grads_a.items():
        np.testing.assert_allclose(grads_b[name], g, rtol=1e-3, atol=1e-3 * np.abs(g).max() + 1e-12, err_msg=name)


def test_supernet_training_form_uses_the_rewrite_and_exported_forms_do_not():
    """Only training-form (cropped) networks carry the custom operator; the plain form exports to ONNX as before."""
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    fast, plain = build_supernet(space, seed=0), build_supernet(space, seed=0, crop=False)
    assert any(getattr(b, "_rewrite", False) for b in _walk(fast))
    assert not any(getattr(b, "_rewrite", False) for b in _walk(plain))
    subnet = build_subnet(ModelSpec(space, (2,) * 20, (9,) * 20), seed=0)
    subnet.hybridize()
    subnet(mx.nd.zeros((1, 3, 32, 32)))
    assert dwconv.OP_TYPE not in subnet._cached_graph[1].tojson()


def _walk(block):
    yield block
    for child in block._children.values():
        yield from _walk(child)
