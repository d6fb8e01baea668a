"""FLOPs tables as files: configuration check, malformed files, vectorized counting, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import load_spec
from spos_deploy.space import SearchSpace
from spos_deploy.tables.flops.build import build_flops_table
from spos_deploy.tables.flops.table import FlopsTable

from .conftest import ROOT, run_cli

SMALL = SearchSpace(input_size=32, num_classes=10)


@pytest.fixture(scope="module")
def small_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "small.json"
    build_flops_table(SMALL, progress=False).save(path)
    return path


def test_table_for_another_configuration_is_refused(small_table):
    with pytest.raises(BadInputError, match="another configuration.*input_size"):
        FlopsTable.load(small_table, expect=SearchSpace(input_size=64, num_classes=10))
    FlopsTable.load(small_table, expect=SMALL)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: d.update(kind="latency"), "not a FLOPs"),
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.pop("stem"), "malformed"),
        (lambda d: d["flops"].pop(), "shape"),
    ],
)
def test_malformed_tables(small_table, tmp_path, mutate, needle):
    d = json.loads(small_table.read_text())
    mutate(d)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    with pytest.raises(BadInputError, match=needle):
        FlopsTable.load(bad)


def test_vectorized_count_equals_a_plain_loop(small_table):
    table = FlopsTable.load(small_table)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 4, (500, 20))
    channels = rng.integers(0, 10, (500, 20))
    flops, params = table.count(blocks, channels)
    for i in range(0, 500, 37):
        f = table.stem_flops + table.head_flops + sum(table.flops[p, blocks[i, p], channels[i, p]] for p in range(20))
        assert flops[i] == f
    mask = table.within(blocks, channels, (np.median(flops), np.inf), (0, np.median(params)))
    assert mask.tolist() == ((flops >= np.median(flops)) & (params <= np.median(params))).tolist()
    single = table.count(list(blocks[0]), list(channels[0]))
    assert (single[0], single[1]) == (flops[0], params[0])


def test_shipped_tables_match_their_names_and_builtins():
    table = FlopsTable.load(
        ROOT / "spos_deploy" / "lookup_tables" / "flops_OneShot_se_lcap_224.json", expect=load_spec("oneshot-s+").space
    )
    spec = load_spec("oneshot-s+")
    assert table.count(spec.block_choices, spec.channel_choices) == (291_475_944, 3_541_829)
    for path in (ROOT / "spos_deploy" / "lookup_tables").glob("flops_*.json"):
        t = FlopsTable.load(path)
        assert path.name == f"flops_{t.space.describe()}.json"


def test_lut_cli_build_validate_show(tmp_path):
    out = tmp_path / "t.json"
    proc = run_cli(
        "spos-lut", "build", "--input-size", "32", "--num-classes", "10", "--no-progress", "-o", str(out), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["input_size"] == 32
    proc = run_cli("spos-lut", "validate", str(out), "--samples", "5", "--no-progress", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["exact"] is True
    proc = run_cli("spos-lut", "build", "--input-size", "48", "-o", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and "input_size" in proc.stderr and not (tmp_path / "x.json").exists()
