"""Zero-cost proxies (:mod:`spos_deploy.search.proxies`) of real networks of the small space on real Fashion-MNIST
images, and how ``benchmarks.supernet_ranking`` ranks them beside the supernet."""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from spos_deploy.search import proxies

from benchmarks import supernet_ranking
from benchmarks.record import results_dir
from spos_deploy.data.images import FASHION_MNIST_DIR, fashion_mnist
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.network import build_subnet
from spos_deploy.space import SPACES

SMALL = SPACES["small"]
L = SMALL.num_positions
SHAPE = (3, SMALL.input_size, SMALL.input_size)
BLOCKS = (0, 1, 2, 3, 0)
NARROW, MID, WIDE = 0, 4, SMALL.widest_choice  # channel scales 0.2, 1.0, 2.0

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="needs `apt-get install dataset-fashion-mnist` (./run.sh installs it)"
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return fashion_mnist("train", SMALL.input_size, limit=16).images


def net_of(blocks=BLOCKS, channel: int = MID, seed: int = 0) -> mx.gluon.Block:
    spec = ModelSpec(SMALL, tuple(blocks), tuple(SMALL.fix_channels([channel] * L)))
    return build_subnet(spec, seed=seed, ctx=mx.cpu())


def params_of(net: mx.gluon.Block) -> dict[str, np.ndarray]:
    return {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}


def test_synflow_uses_no_data_leaves_the_network_as_it_was_and_grows_with_every_width(images) -> None:
    net = net_of()
    before = params_of(net)
    score = proxies.synflow(net, SHAPE)
    assert np.isfinite(score)
    after = params_of(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # weights and BN statistics restored
    assert proxies.synflow(net, SHAPE) == score
    # only the shape of the batch counts: its all-ones input replaces the images
    assert proxies.PROXIES["synflow"](net, images) == score == proxies.PROXIES["synflow"](net, -3 * images[:2])
    # with every parameter positive, wider mid channels only add flow: narrow < mid < wide, same blocks and seed
    narrow, wide = proxies.synflow(net_of(channel=NARROW), SHAPE), proxies.synflow(net_of(channel=WIDE), SHAPE)
    assert narrow < score < wide


def test_naswot_is_a_set_function_of_distinct_images_and_needs_hooks(images) -> None:
    net = net_of()
    before = params_of(net)
    score = proxies.naswot(net, images)
    assert np.isfinite(score)
    assert all(np.array_equal(v, params_of(net)[k]) for k, v in before.items())  # BN running stats untouched
    perm = np.random.default_rng(0).permutation(len(images))
    # det(P K P^T) = det(K); the convolutions' float32 sums may take another order for an image at another
    # place in the batch, flipping the sign of an activation within rounding of zero (seen on a 2-core AMD EPYC:
    # 160.72219 against 160.72210); a score that depended on the order would move by far more
    assert proxies.naswot(net, images[perm]) == pytest.approx(score, rel=1e-5)
    twice = np.concatenate([images[:8], images[:8]])  # two identical codes: K singular
    assert proxies.naswot(net, twice) < proxies.naswot(net, images[:16]) and proxies.naswot(net, twice) == -np.inf
    net.hybridize()
    with pytest.raises(ValueError, match="hybridized"):
        proxies.naswot(net, images)


def test_jacob_cov_is_finite_reproducible_and_tells_architectures_and_duplicates_apart(images) -> None:
    score = proxies.jacob_cov(net_of(), images)
    assert np.isfinite(score)
    assert proxies.jacob_cov(net_of(), images) == pytest.approx(score, rel=1e-9)  # same seed, built again
    assert proxies.jacob_cov(net_of(blocks=(3, 2, 1, 0, 3)), images) != pytest.approx(score, rel=1e-6)
    twice = np.concatenate([images[:8], images[:8]])  # identical Jacobian rows: eigenvalues 0, the 1/k penalty
    assert proxies.jacob_cov(net_of(), twice) < score - 1e4


def test_proxy_scores_average_over_inits_deterministically_and_refuse_bad_input(images) -> None:
    first = proxies.proxy_scores(SMALL, BLOCKS, [MID] * L, images, seeds=(0, 1))
    assert set(first) == set(proxies.PROXIES) and all(np.isfinite(v) for v in first.values())
    assert proxies.proxy_scores(SMALL, BLOCKS, [MID] * L, images, seeds=(0, 1)) == first
    one = [proxies.proxy_scores(SMALL, BLOCKS, [MID] * L, images, ["synflow"], seeds=(s,))["synflow"] for s in (0, 1)]
    assert first["synflow"] == pytest.approx(np.mean(one), rel=1e-12) and one[0] != one[1]
    with pytest.raises(BadInputError, match="unknown zero-cost proxy 'grasp'"):
        proxies.proxy_scores(SMALL, BLOCKS, [MID] * L, images, ["synflow", "grasp"])
    with pytest.raises(BadInputError, match="must be"):
        proxies.proxy_scores(SMALL, BLOCKS, [MID] * L, images[:, :, :28, :28])
    with pytest.raises(BadInputError, match="block choices"):
        proxies.proxy_scores(SMALL, BLOCKS[:3], [MID] * 3, images)


# ---- benchmarks.supernet_ranking ------------------------------------------------------------------------------
def test_a_rescore_adds_the_zero_cost_proxies_beside_the_recorded_rows_and_ranks_them(tmp_path: Path) -> None:
    record = json.loads((results_dir("supernet_ranking") / "supernet_ranking_e3.json").read_text())
    record["architectures"] = rows = record["architectures"][:3]
    recorded = json.loads(json.dumps(rows))
    got = supernet_ranking.with_zero_cost(record, rows, tmp_path)
    assert record["architectures"] == recorded  # what was measured is not rewritten
    kept = record["zero_cost_proxies"]["scores"]
    assert set(kept) == {r["key"] for r in rows}
    assert all(r[k] == kept[r["key"]][k] for r in got for k in supernet_ranking.ZERO_COST)
    cached = json.loads((tmp_path / "proxies.json").read_text())["scores"]
    assert cached == kept
    # an earlier rescore's scores are used as they are (no --out: nothing computed, nothing written)
    again = supernet_ranking.with_zero_cost(json.loads(json.dumps(record)), recorded, None)
    assert again == got
    stats = supernet_ranking.ranking_stats(got)
    assert set(stats["proxies"]) == set(supernet_ranking.PROXIES) and stats["proxies_missing"] == []
    assert stats["lead_over_best_proxy"]["proxy"] in supernet_ranking.PROXIES
    table = supernet_ranking.stats_table(stats) + supernet_ranking.arch_table(got)
    assert all(w in table for w in ("SynFlow (zero-cost) (all)", "NASWOT (zero-cost) (all)", "| jacob_cov"))
    got[0] = got[0] | {"naswot": None}  # undefined for one architecture (an older record: absent)
    stats = supernet_ranking.ranking_stats(got)
    assert "naswot" not in stats["proxies"] and stats["proxies_missing"] == ["naswot"]
    assert "Not ranked (not computed for every architecture): naswot." in supernet_ranking.verdict(stats)
