"""Graph counting against the seed's reference table and the published model totals."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from spos_deploy.counting.flops import count
from spos_deploy.counting.graph import graph_ops, load_symbol, symbol_from_block
from spos_deploy.model_spec import ModelSpec, load_spec
from spos_deploy.nets.network import SposNet
from spos_deploy.space import SearchSpace, space_for_layout
from spos_deploy.tables.flops.build import build_flops_table, count_spec_parts
from spos_deploy.tables.flops.table import FlopsTable


def _units(x: float) -> int:
    return int(round(x * 1e6))


def test_reference_table_reproduced_to_the_unit(reference_table):
    space = SearchSpace.from_config(
        {
            "layout": reference_table["config"]["channels_layout"],
            "use_se": reference_table["config"]["use_se"],
            "last_conv_after_pooling": reference_table["config"]["last_conv_after_pooling"],
            "input_size": reference_table["config"]["input_size"],
            "stage_repeats": reference_table["config"]["stage_repeats"],
            "stage_out_channels": reference_table["config"]["stage_out_channels"],
            "channel_scales": reference_table["config"]["channel_scales"],
            "first_conv_channels": reference_table["config"]["first_conv_out_channel"],
            "last_conv_channels": reference_table["config"]["last_conv_out_channel"],
        }
    )
    table = build_flops_table(space, progress=False)
    ref_flops = np.vectorize(_units)(np.array(reference_table["flops"]["nas_block"]))
    ref_params = np.vectorize(_units)(np.array(reference_table["params"]["nas_block"]))
    assert ref_flops.shape == (20, 4, 10)
    mismatch = np.argwhere((ref_flops != table.flops) | (ref_params != table.params))
    assert mismatch.size == 0, f"entries differ at {mismatch[:5].tolist()}"
    assert table.stem_flops == _units(reference_table["flops"]["input_block"]) == 5_419_008
    assert table.stem_params == _units(reference_table["params"]["input_block"]) == 464
    assert table.head_flops == _units(reference_table["flops"]["output_block"]) == 1_712_744
    assert table.head_params == _units(reference_table["params"]["output_block"]) == 1_681_384


@pytest.mark.parametrize(
    "name,flops,params",
    [("oneshot", 327_909_096, 3_433_579), ("oneshot+", 297_058_024, 3_742_955), ("oneshot-s+", 291_475_944, 3_541_829)],
)
@pytest.mark.parametrize("shuffle", ["reshape", "conv"])
def test_builtin_totals(name, flops, params, shuffle):
    spec = load_spec(name).with_(shuffle=shuffle)
    c = count(graph_ops(symbol_from_block(SposNet(spec)), (1, 3, 224, 224)))
    assert (c.flops, c.params) == (flops, params)


def test_oneshot_s_plus_per_block_counts_match_the_seed():
    parts = count_spec_parts(load_spec("oneshot-s+"))
    assert (parts["b00"].flops, parts["b00"].params) == (22_883_392, 4_949)
    assert (parts["b16"].flops, parts["b16"].params) == (25_409_296, 325_968)
    assert (parts["b19"].flops, parts["b19"].params) == (14_314_128, 344_784)


def test_counting_an_exported_symbol_file_equals_counting_the_block(tmp_path):
    spec = load_spec("oneshot+")
    net = SposNet(spec)
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.export(str(tmp_path / "m"))
    from_file = count(graph_ops(load_symbol(str(tmp_path / "m-symbol.json")), (1, 3, 224, 224)))
    assert (from_file.flops, from_file.params) == (297_058_024, 3_742_955)


CONFIGS = [
    space_for_layout("OneShot"),
    space_for_layout("OneShot", use_se=False, last_conv_after_pooling=False),
    space_for_layout("ShuffleNetV2+", use_se=True, last_conv_after_pooling=False),
    SearchSpace(input_size=32, num_classes=10),
    SearchSpace(
        input_size=64, stage_repeats=(2, 3, 2), stage_out_channels=(32, 64, 128), channel_scales=(0.25, 1.0, 1.5)
    ),
]


def covering_choices(space: SearchSpace, extra: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Block and channel choices of networks that use every (position, block, channel) entry at least once:
    network k puts choice ``(k + 7 p) mod (blocks x scales)`` at position p (a bijection over k at every
    position, and neighbours differ), then ``extra`` random networks for other neighbourhoods."""
    L, B, S = space.num_positions, space.num_blocks, space.num_scales
    k = (np.arange(B * S)[:, None] + 7 * np.arange(L)[None, :]) % (B * S)
    rng = np.random.default_rng(seed)
    blocks = np.vstack([k // S, rng.integers(0, B, (extra, L))])
    channels = np.vstack([k % S, rng.integers(0, S, (extra, L))])
    return blocks, channels


@pytest.mark.slow  # 32-60 graph walks per configuration (200 random ones checked fewer entries, 4x slower)
@pytest.mark.parametrize("space", CONFIGS, ids=[s.describe() for s in CONFIGS])
def test_table_counting_equals_graph_counting(space, tmp_path):
    table = build_flops_table(space, progress=False)
    table.save(tmp_path / "t.json")
    table = FlopsTable.load(tmp_path / "t.json", expect=space)
    blocks, channels = covering_choices(space, extra=20)
    used = {(p, b, c) for bs, cs in zip(blocks, channels) for p, (b, c) in enumerate(zip(bs, cs))}
    assert len(used) == space.num_positions * space.num_blocks * space.num_scales  # every entry is checked
    t_flops, t_params = table.count(blocks, channels)
    for i in range(len(blocks)):
        spec = ModelSpec(space, tuple(map(int, blocks[i])), tuple(map(int, channels[i])))
        parts = count_spec_parts(spec)
        assert sum(p.flops for p in parts.values()) == t_flops[i]
        assert sum(p.params for p in parts.values()) == t_params[i]
