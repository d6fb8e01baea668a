"""MicroNet counting: the published OneShot-S+ figures and the per-op rules on small graphs."""

from __future__ import annotations

import mxnet as mx
import pytest

from spos_deploy.counting.graph import graph_ops
from spos_deploy.counting.micronet import micronet_rows, totals
from spos_deploy.counting.profile import profile_spec, profile_zoo
from spos_deploy.model_spec import load_spec


def test_oneshot_s_plus_within_one_percent_of_published():
    prof = profile_spec(load_spec("oneshot-s+"))
    fp32 = totals(prof.rows, 32)
    assert abs(fp32.ops / 589.6e6 - 1) < 0.01
    assert abs(fp32.params / 3.652e6 - 1) < 0.01
    assert fp32.score == pytest.approx(1.03, abs=0.01)
    # quantizable part equals the seed's Total_quant exactly (it has no SE multiply or shuffle in it)
    q = totals(prof.rows, 32, quantizable=True)
    assert (q.params, q.mults, q.adds) == (3_520_225, 292_819_840, 286_217_920)
    assert totals(prof.rows, 8).score == pytest.approx(0.28, abs=0.005)


def test_shuffle_forms_count_the_same():
    a = profile_spec(load_spec("oneshot"))
    b = profile_spec(load_spec("oneshot").with_(shuffle="conv"))
    assert totals(a.rows).as_dict() == totals(b.rows).as_dict()
    shuffles = [r for r in a.rows if r.kind == "shuffle"]
    assert len(shuffles) == 16  # one per stride-1 block
    first = shuffles[0]
    assert (first.cin, first.inp_size, first.mults, first.adds) == (64, 56, 56 * 56 * 64, 0)
    assert first.params == 64 + 64 * 64 / 16


def _rows(sym, shape):
    return micronet_rows(graph_ops(sym, shape))


def test_conv_rule_and_bn_folding():
    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, pad=(1, 1), no_bias=True, name="c")
    bn = mx.sym.BatchNorm(conv, name="bn")
    relu = mx.sym.Activation(bn, act_type="relu", name="r")
    bn2 = mx.sym.BatchNorm(relu, name="bn2")  # not after a conv: not foldable
    rows, unknown = _rows(bn2, (1, 2, 5, 5))
    assert unknown == []
    by = {r.name: r for r in rows}
    n_out = 4 * 5 * 5
    assert (by["c"].mults, by["c"].adds, by["c"].params) == (18 * n_out, 17 * n_out, 72)
    assert "bn" not in by  # folded into the conv
    assert (by["r"].mults, by["r"].adds, by["r"].quantizable) == (n_out, 0, True)
    assert (by["bn2"].mults, by["bn2"].adds) == (n_out, n_out)


def test_hswish_se_and_pool_rules():
    data = mx.sym.var("data")
    hs = data * mx.sym.hard_sigmoid(data, alpha=1 / 6, beta=0.5, name="hs")
    pool = mx.sym.Pooling(hs, global_pool=True, pool_type="avg", kernel=(1, 1), name="gap")
    fc = mx.sym.Convolution(pool, kernel=(1, 1), num_filter=2, name="sq")  # with bias
    out = mx.sym.broadcast_mul(hs, fc, name="scale")
    rows, _ = _rows(out, (1, 2, 4, 4))
    by = {r.name: r for r in rows}
    assert (by["hs"].mults, by["hs"].adds) == (3 * 32, 32)  # x/6, +0.5, two comparisons
    assert (by["gap"].mults, by["gap"].adds) == (2, 15 * 2)
    assert (by["sq"].mults, by["sq"].adds, by["sq"].params) == (4, 2 + 2, 6)
    assert by["scale"].mults == 32
    assert sum(r.mults for r in rows if r.kind == "mul") == 32 + 32  # hswish product + SE scale


def test_bits_scale_only_quantizable_ops():
    prof = profile_spec(load_spec("oneshot-s+", input_size=64))
    full, int8 = totals(prof.rows, 32), totals(prof.rows, 8)
    q, nq = totals(prof.rows, 32, True), totals(prof.rows, 32, False)
    assert int8.params == pytest.approx(q.params / 4 + nq.params)
    assert int8.mults == pytest.approx(q.mults / 4 + nq.mults)
    assert full.ops > int8.ops


def test_gluoncv_networks_count_like_their_papers():
    mb2 = profile_zoo("mobilenetv2_1.0")
    assert abs(mb2.flops / 300e6 - 1) < 0.01 and abs(mb2.params / 3.5e6 - 1) < 0.01
    mb3 = profile_zoo("mobilenetv3_large")
    assert abs(mb3.flops / 217e6 - 1) < 0.01
    shuffle = profile_zoo("shufflenet_v2")
    assert abs(shuffle.flops / 146e6 - 1) < 0.01
    assert not mb3.unknown_ops and not shuffle.unknown_ops
