"""A supernet path computes exactly what the equivalent fixed subnet computes; networks hybridize and export."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from spos_deploy.model_spec import ModelSpec, load_spec
from spos_deploy.nets.blocks import shuffle_kernel, shuffle_permutation
from spos_deploy.nets.network import build_subnet
from spos_deploy.nets.supernet import build_supernet, extract_subnet
from spos_deploy.space import space_for_layout

REL_TOL = 1e-5


def _randomise_bn(net, rng):
    """Non-trivial BN statistics, so that masking before instead of after BN would show."""
    for name, p in net.collect_params().items():
        if name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.array(rng.normal(0, 0.5, p.shape)))
        elif name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))


def _rel(a: mx.nd.NDArray, b: mx.nd.NDArray) -> float:
    return float(mx.nd.abs(a - b).max().asscalar() / mx.nd.abs(b).max().asscalar())


@pytest.mark.parametrize("layout", ["OneShot", "ShuffleNetV2+"])
@pytest.mark.parametrize("use_se", [False, True])
def test_supernet_path_equals_fixed_subnet(layout, use_se):
    rng = np.random.default_rng(3)
    space = space_for_layout(layout, use_se=use_se, last_conv_after_pooling=use_se, input_size=64, num_classes=10)
    supernet = build_supernet(space, seed=1)
    _randomise_bn(supernet, rng)
    supernet.hybridize_blocks()
    x = mx.nd.array(rng.normal(size=(2, 3, 64, 64)))
    for _ in range(4):
        blocks = rng.integers(0, 4, space.num_positions)
        channels = rng.integers(0, space.num_scales, space.num_positions)
        spec = ModelSpec(space, tuple(map(int, blocks)), tuple(map(int, channels)))
        y_path = supernet(x, blocks, channels)
        subnet = extract_subnet(supernet, spec)
        subnet.hybridize()
        y_fixed = subnet(x)
        assert _rel(y_path, y_fixed) < REL_TOL
        # The widest path differs: the mask really selects channels.
        y_wide = supernet(x, blocks, [space.num_scales - 1] * space.num_positions)
        if any(c != space.num_scales - 1 for c in channels):
            assert _rel(y_wide, y_fixed) > 1e-3


def test_shuffle_permutation_matches_the_spec():
    idx = shuffle_permutation(8)
    assert idx.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    w = shuffle_kernel(8)[:, :, 0, 0]
    x = np.arange(8.0)
    assert (w @ x).tolist() == x[idx].tolist()


@pytest.mark.parametrize("name", ["oneshot", "oneshot-s+"])
def test_both_shuffle_forms_compute_the_same(name):
    rng = np.random.default_rng(0)
    spec = load_spec(name, input_size=64)
    a = build_subnet(spec, seed=5)
    b = build_subnet(spec.with_(shuffle="conv"), seed=5)
    _randomise_bn(a, np.random.default_rng(1))
    for ka, pa in a.collect_params().items():
        b.collect_params()[ka].set_data(pa.data())
    a.hybridize()
    b.hybridize()
    x = mx.nd.array(rng.normal(size=(2, 3, 64, 64)))
    assert _rel(a(x), b(x)) < 1e-6


def test_hybridize_export_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    spec = load_spec("oneshot-s+", input_size=96)
    net = build_subnet(spec, seed=2)
    _randomise_bn(net, rng)
    x = mx.nd.array(rng.normal(size=(1, 3, 96, 96)))
    y_imperative = net(x)
    net.hybridize()
    y_hybrid = net(x)
    net.export(str(tmp_path / "net"))
    loaded = mx.gluon.SymbolBlock.imports(
        str(tmp_path / "net-symbol.json"), ["data"], str(tmp_path / "net-0000.params")
    )
    y_loaded = loaded(x)
    assert _rel(y_hybrid, y_imperative) < 1e-6
    assert _rel(y_loaded, y_imperative) < 1e-6


@pytest.mark.parametrize("kernel,size,stride", [(7, 1, 1), (7, 2, 1), (5, 2, 2), (7, 3, 2), (3, 1, 1), (7, 4, 1)])
def test_cropped_conv_equals_full_conv_outputs_and_gradients(kernel, size, stride):
    """Cropping a kernel to the taps a tiny input can reach changes neither outputs nor gradients."""
    from mxnet.gluon import nn

    from spos_deploy.nets.blocks import CroppedConv2D

    c = 8
    full = nn.Conv2D(c, kernel, strides=stride, padding=kernel // 2, groups=c, use_bias=False, in_channels=c)
    crop = CroppedConv2D(c, kernel, size, strides=stride, groups=c, use_bias=False, in_channels=c)
    full.initialize(mx.init.Normal(1.0))
    crop.initialize()
    crop.weight.set_data(full.weight.data())
    x = mx.nd.random.normal(shape=(4, c, size, size), dtype="float32")
    outs, grads = [], []
    for net in (full, crop):
        with mx.autograd.record():
            y = net(x)
            loss = (y * y).sum()
        loss.backward()
        outs.append(y.asnumpy())
        grads.append(net.weight.grad().asnumpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-4)
    assert crop.weight.shape == full.weight.shape


def test_cropped_training_subnet_shares_weights_and_outputs_with_the_plain_subnet(tmp_path):
    """spos-train subnet trains the cropped form; its weights load into the plain (exported) form unchanged."""
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    spec = ModelSpec(space, (2,) * 20, (9,) * 20)
    fast = build_subnet(spec, seed=3, crop=True)
    assert any(type(b).__name__ == "CroppedConv2D" for b in _walk(fast))
    fast.save_parameters(str(tmp_path / "w.params"))
    plain = build_subnet(spec, seed=0)
    plain.load_parameters(str(tmp_path / "w.params"))
    x = mx.nd.random.normal(shape=(2, 3, 32, 32))
    np.testing.assert_allclose(fast(x).asnumpy(), plain(x).asnumpy(), rtol=1e-4, atol=1e-5)


def _walk(block):
    yield block
    for child in block._children.values():
        yield from _walk(child)


def test_fast_and_plain_supernet_forms_compute_the_same_path():
    """BN-level masks + cropped kernels (training form) equal output masks + full kernels, forward and backward."""
    space = space_for_layout("OneShot", input_size=32, num_classes=10)
    fast = build_supernet(space, seed=1)
    plain = build_supernet(space, seed=1, mask_mode="multiply", crop=False)
    rng = np.random.default_rng(5)
    x = mx.nd.array(rng.normal(size=(4, 3, 32, 32)).astype(np.float32))
    for _ in range(3):
        b, c = rng.integers(0, 4, 20), rng.integers(0, 10, 20)
        outs, grads = [], []
        for net in (fast, plain):
            mx.random.seed(7)  # the same dropout mask in the head
            with mx.autograd.record():
                y = net(x, b, c)
                loss = (y * y).sum()
            loss.backward()
            outs.append(y.asnumpy())
            w = net.choice_block(17, int(b[17])).main[0].conv.weight
            grads.append(w.grad().asnumpy())
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-3, atol=1e-3 * np.abs(grads[1]).max())
