"""Few-shot sub-supernets (``spos-train supernet --init-from DIR``): a sub-supernet starts from the trained
one-shot supernet's weights, and a supernet of another space is refused before anything is written."""

from __future__ import annotations

import dataclasses

import mxnet as mx
import numpy as np
from spos_deploy.training.cli import main
from spos_deploy.training.trainer import SupernetConfig, train

from spos_deploy.space import SPACES

SMALL = SPACES["small"]


def _supernet(folder, space=SMALL, lr: float = 0.1, steps: int = 3, **kw) -> None:
    cfg = SupernetConfig(
        space=space,
        out=str(folder),
        val_data=None,
        train_limit=1280,
        epochs=1,
        max_steps=steps,
        batch_size=64,
        lr=lr,
        warmup_epochs=0.1,
        eval_paths=1,
        bn_batches=1,
        progress=False,
        **kw,
    )
    train(cfg)


def _weights(folder) -> dict[str, np.ndarray]:
    """The learned weights (not BN's running statistics, which every train-mode forward moves)."""
    saved = mx.nd.load(str(folder / "supernet.params"))
    return {k: v.asnumpy() for k, v in saved.items() if not k.endswith(("running_mean", "running_var"))}


def test_a_sub_supernet_starts_from_the_one_shot_weights(tmp_path):
    _supernet(tmp_path / "one-shot", seed=0)
    _supernet(tmp_path / "sub", lr=0.0, steps=1, seed=5, init_from=str(tmp_path / "one-shot"))
    _supernet(tmp_path / "fresh", lr=0.0, steps=1, seed=5)
    one_shot, sub, fresh = (_weights(tmp_path / n) for n in ("one-shot", "sub", "fresh"))
    assert one_shot.keys() == sub.keys()
    for k, v in one_shot.items():
        np.testing.assert_array_equal(sub[k], v, err_msg=k)
    assert any(not np.array_equal(fresh[k], v) for k, v in one_shot.items())  # the seed alone would differ


def test_init_from_another_space_or_nothing_is_one_line(tmp_path, capsys):
    other = dataclasses.replace(SMALL, num_classes=12)
    _supernet(tmp_path / "other", space=other, steps=1)
    base = ["supernet", "--space", "small", "--max-steps", "1", "--no-progress", "-o", str(tmp_path / "run")]
    assert main([*base, "--init-from", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"spos-train: error: --init-from {tmp_path / 'other'}: trained for another configuration")
    assert len(err.splitlines()) == 1
    assert main([*base, "--init-from", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"spos-train: error: --init-from {tmp_path / 'none'}: no such run folder or .params file"
    assert not (tmp_path / "run").exists()
