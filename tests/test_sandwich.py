"""The sandwich rule with in-place distillation (``spos-train supernet --path-rule sandwich``): which paths a step
trains, that their gradients add up, what the widest path teaches, and a real run on Fashion-MNIST."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import mxnet as mx
import numpy as np
import pytest
from spos_deploy.training.cli import main
from spos_deploy.training.sampling import PathSampler, warmup_for
from spos_deploy.training.trainer import SupernetConfig, _train_paths, train

from spos_deploy.errors import BadInputError
from spos_deploy.nets.supernet import build_supernet
from spos_deploy.space import SPACES

SMALL = SPACES["small"]


def _sampler(cs_start_epoch: int = 0, warmup: bool = False, random: int = 2) -> PathSampler:
    schedule = warmup_for(SMALL, cs_start_epoch, warmup, pace=1)
    return PathSampler(SMALL, schedule, seed=3, path_rule="sandwich", sandwich_random=random)


def test_a_sandwich_step_trains_the_widest_the_narrowest_and_uniform_paths():
    valid = np.array(SMALL.valid_channels())
    scales = np.asarray(SMALL.channel_scales)
    s = _sampler(random=2)
    paths = s.step_paths(0, 17)
    assert len(paths) == 4
    (b0, widest), (b1, narrowest) = paths[:2]
    for pos in range(SMALL.num_positions):
        ids = np.flatnonzero(valid[pos])
        assert scales[widest[pos]] == scales[ids].max()
        assert scales[narrowest[pos]] == scales[ids].min()
    assert all(0 <= b < SMALL.num_blocks for b, _ in paths for b in b)
    again = s.step_paths(0, 17)  # seeded by the step: a resumed run trains the same paths
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(paths, again))
    other = s.step_paths(0, 18)
    assert any((a[0] != b[0]).any() for a, b in zip(paths, other))
    # blocks are drawn per path: over many steps the widest path does not always share the narrowest's blocks
    assert any((s.step_paths(0, g)[0][0] != s.step_paths(0, g)[1][0]).any() for g in range(5))


def test_the_sandwich_follows_the_channel_warm_up():
    s = _sampler(cs_start_epoch=1, warmup=True, random=1)
    before = s.step_paths(0, 5)
    assert all((c == SMALL.widest_choice).all() for _, c in before)  # only the widest is allowed yet
    after = s.step_paths(3, 5)  # three warm-up steps later: the five widest scales
    allowed = s.schedule.allowed(3)
    assert all(np.isin(c, allowed).all() for _, c in after)
    assert (after[1][1] == allowed.min()).all()


def test_uniform_rule_is_one_path_and_bad_combinations_are_refused():
    schedule = warmup_for(SMALL, 0, False)
    uniform = PathSampler(SMALL, schedule, seed=3)
    (b, c), *rest = uniform.step_paths(2, 9)
    assert not rest
    got = uniform.sample(2, 9)
    assert (got[0] == b).all() and (got[1] == c).all()
    with pytest.raises(BadInputError, match="path rule 'ladder'"):
        PathSampler(SMALL, schedule, 3, path_rule="ladder")
    with pytest.raises(BadInputError, match="drop --constraint and --block-weights"):
        PathSampler(SMALL, schedule, 3, block_weights=(1, 1, 1, 2), path_rule="sandwich")


def _gradients(paths, distill: bool) -> dict[str, np.ndarray]:
    """Gradients of one call of the trainer's path loop on a fresh, hybridized supernet (static memory, as
    training runs it; dropout off so that the same path twice computes the same function)."""
    net = build_supernet(SMALL, seed=0, ctx=[mx.cpu()])
    for block in _walk(net):
        if isinstance(block, mx.gluon.nn.Dropout):
            block._rate = 0.0
    net.hybridize_blocks(static_alloc=True, static_shape=True)
    net.collect_params().setattr("grad_req", "add")
    net.collect_params().zero_grad()
    rng = np.random.default_rng(0)
    x = mx.nd.array(rng.normal(size=(16, 3, 32, 32)).astype(np.float32))
    t = mx.nd.array(np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)])
    job = SimpleNamespace(net=net, loss_fn=mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False))
    _train_paths(job, paths, [x], [t], distill)
    return {k: p.grad().asnumpy().copy() for k, p in net.collect_params().items() if p.grad_req != "null"}


def _walk(block):
    yield block
    for child in block._children.values():
        yield from _walk(child)


def test_the_paths_of_a_step_add_their_gradients_and_the_widest_teaches_the_others():
    n = SMALL.num_positions
    path = (np.array([0, 1, 2, 3, 0]), np.full(n, SMALL.widest_choice))
    narrow = (np.array([0, 1, 2, 3, 0]), np.zeros(n, int))
    once = _gradients([path], distill=False)
    twice = _gradients([path, path], distill=False)
    scale = max(np.abs(g).max() for g in once.values())
    assert scale > 0
    for k, g in once.items():
        np.testing.assert_allclose(twice[k], 2 * g, atol=1e-5 * scale, err_msg=k)
    # In-place distillation: a path taught its own probabilities has zero gradient (softmax - target = 0), so
    # the step's gradient is the widest path's alone; a narrower student adds its own.
    taught = _gradients([path, path], distill=True)
    for k, g in once.items():
        np.testing.assert_allclose(taught[k], g, atol=1e-5 * scale, err_msg=k)
    student = _gradients([path, narrow], distill=True)
    assert any(np.abs(student[k] - g).max() > 1e-3 * scale for k, g in once.items())


def _losses(folder) -> np.ndarray:
    """The loss column of ``steps.csv`` (global step, epoch, step, loss)."""
    with (folder / "steps.csv").open() as f:
        return np.array([float(row[3]) for row in csv.reader(f)])


def test_a_sandwich_supernet_learns_on_fashion_mnist(tmp_path):
    cfg = SupernetConfig(
        space=SMALL,
        out=str(tmp_path / "run"),
        val_data=None,
        train_limit=9600,
        epochs=1,
        max_steps=75,
        batch_size=128,
        lr=0.1,
        warmup_epochs=0.1,
        label_smoothing=0.0,
        augment="none",
        cs_start_epoch=0,
        cs_warmup=False,
        path_rule="sandwich",
        sandwich_random=1,
        progress=False,
    )
    train(cfg)
    losses = _losses(tmp_path / "run")
    assert len(losses) == 75
    # the mean label loss over the step's three paths; measured 2026-12-06: 2.37 over the first 15 steps, 2.14
    # over the last 15 (lr 0.1 per path, the paths' gradients summed)
    assert losses[-15:].mean() < losses[:15].mean() - 0.12, (losses[:15].mean(), losses[-15:].mean())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["path_rule"], config["sandwich_random"], config["inplace_distill"]) == ("sandwich", 1, True)


def test_sandwich_options_are_checked(tmp_path, capsys):
    base = ["supernet", "--space", "small", "--max-steps", "1", "--no-progress", "-o", str(tmp_path / "run")]
    for extra in (["--sandwich-random", "2"], ["--no-inplace-distill"]):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            "spos-train: error: --sandwich-random and --no-inplace-distill shape sandwich steps: "
            "add --path-rule sandwich"
        )
    assert main([*base, "--path-rule", "sandwich", "--constraint", "random", "--flops-range", "1", "2"]) == 2
    assert "drop --constraint and --block-weights" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
