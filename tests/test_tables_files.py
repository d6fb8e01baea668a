"""spos-lut on every table kind: the MicroNet kind end to end, the new geometry keys, output refusal, argument
checks and the contract keys of ``validate --json``. In-process (``spos_deploy.cli.lut.main``), tiny spaces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spos_deploy.cli.lut import main
from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import SearchSpace
from spos_deploy.tables.core import random_architectures, width_level_architectures
from spos_deploy.tables.flops.build import build_flops_table, count_spec_parts
from spos_deploy.tables.flops.table import FlopsTable
from spos_deploy.tables.flops.validate import validate_flops_table
from spos_deploy.tables.micronet.build import build_micronet_table
from spos_deploy.tables.micronet.table import MicroNetTable
from spos_deploy.tables.micronet.validate import validate_micronet_table

from .conftest import space_args

TINY = {"input_size": 32, "num_classes": 10, "stage_repeats": (1, 1, 1, 1), "channel_scales": (1.0, 2.0)}
# the small-image geometry: no stem stride, the first stage keeps its size (32 -> 32 -> 32 -> 16 -> 8 -> 4)
GEO = SearchSpace(
    input_size=32,
    num_classes=10,
    stem_stride=1,
    stage_strides=(1, 2, 2, 2),
    stage_repeats=(1, 1, 2, 1),
    stage_out_channels=(32, 64, 128, 256),
    first_conv_channels=16,
)
CONTRACT = {"samples", "mape", "max_error", "within_5", "within_10", "kendall_tau", "table", "fingerprint"}


def _lut(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one in-process ``spos-lut`` call (argparse's exit included)."""
    try:
        status = main(list(argv))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_micronet_table_builds_shows_and_validates(tmp_path, capsys):
    """Issue 12: ``build --kind micronet`` wrote a table that show and validate refused as not FLOPs."""
    path = tmp_path / "m.json"
    status, _, err = _lut(capsys, "build", "--kind", "micronet", *space_args(**TINY), "-o", str(path), "--no-progress")
    assert status == 0, err
    status, out, err = _lut(capsys, "show", str(path))
    assert status == 0, err
    assert "MicroNet table" in out and "max score" in out
    status, out, err = _lut(capsys, "validate", str(path), "--samples", "3", "--no-progress", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert CONTRACT <= set(result) and result["kind"] == "micronet" and result["exact"] is True
    assert result["mape"] < 1e-7 and result["fingerprint"] is None
    status, out, _ = _lut(capsys, "show", str(path), "--json")
    assert status == 0 and json.loads(out)["kind"] == "micronet"


def test_flops_validate_json_has_the_contract_keys(tmp_path, capsys):
    """Issue 13 (5): validate --json on a FLOPs table lacked mape, max_error, within_5/10, kendall_tau, fingerprint."""
    path = tmp_path / "f.json"
    build_flops_table(SearchSpace(**TINY), progress=False).save(path)
    status, out, err = _lut(capsys, "validate", str(path), "--samples", "4", "--no-progress", "--json")
    assert status == 0, err
    r = json.loads(out)
    assert CONTRACT <= set(r) and r["exact"] is True and r["samples"] == 4
    assert (r["mape"], r["max_error"], r["within_5"], r["within_10"]) == (0.0, 0.0, 1.0, 1.0)
    assert r["fingerprint"] is None and r["kendall_tau"] == pytest.approx(1.0)
    assert set(r["by_quantity"]) == {"flops", "params"}


def test_new_geometry_keys_count_exactly_in_every_table(tmp_path):
    """stem_stride / stage_strides: FLOPs table = graph counts, MicroNet table = graph profiles; files round-trip."""
    flops = build_flops_table(GEO, progress=False)
    flops.save(tmp_path / "f.json")
    flops = FlopsTable.load(tmp_path / "f.json", expect=GEO)
    assert flops.space == GEO and "stem_stride" in json.loads((tmp_path / "f.json").read_text())["config"]
    report = validate_flops_table(flops, 25, seed=3, progress=False)
    assert report["exact"] and report["mismatches"] == []
    blocks, channels = random_architectures(GEO, 5, seed=4)
    for b, c in zip(blocks, channels):
        parts = count_spec_parts(ModelSpec(GEO, tuple(map(int, b)), tuple(map(int, c))))
        assert flops.count(b, c) == (sum(p.flops for p in parts.values()), sum(p.params for p in parts.values()))
    micro = build_micronet_table(GEO, progress=False)
    micro.save(tmp_path / "m.json")
    micro = MicroNetTable.load(tmp_path / "m.json", expect=GEO)
    report = validate_micronet_table(micro, 6, seed=5, progress=False)
    assert report["exact"], report["mismatches"][:1]
    assert math.isclose(report["by_quantity"]["score_8"]["max_error"], 0.0, abs_tol=1e-7)


def test_existing_output_is_refused_before_any_work(tmp_path, capsys):
    """Issue 13 (6): -o FILE silently replaced an unrelated file; -o FOLDER failed after the build."""
    precious = tmp_path / "precious.json"
    precious.write_text("my notes\n")
    for kind in ("flops", "micronet"):
        status, _, err = _lut(
            capsys, "build", "--kind", kind, *space_args(**TINY), "-o", str(precious), "--no-progress"
        )
        assert status == 2 and "exists; choose another --output or pass --force" in err
        assert len(err.strip().splitlines()) == 1 and precious.read_text() == "my notes\n"
    status, _, err = _lut(capsys, "build", *space_args(**TINY), "-o", str(precious), "--force", "--no-progress")
    assert status == 0, err
    assert FlopsTable.load(precious).space == SearchSpace(**TINY)
    folder = tmp_path / "tables"
    folder.mkdir()
    status, out, err = _lut(capsys, "build", *space_args(**TINY), "-o", str(folder), "--no-progress", "--json")
    assert status == 0, err
    written = folder / f"flops_{SearchSpace(**TINY).describe()}.json"
    assert json.loads(out)["table"] == str(written) and FlopsTable.load(written)
    (tmp_path / "a-file").write_text("")
    status, _, err = _lut(capsys, "build", "--kind", "latency", "-o", str(tmp_path / "a-file" / "t.json"))
    assert status == 2 and "is a file" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "T", "--samples", "0"],
        ["validate", "T", "--samples", "-3"],
        ["validate", "T", "--samples", "many"],
        ["validate", "T", "--rounds", "0"],
        ["validate", "T", "--seed", "-1"],
        ["build", "--kind", "latency", "--repeats", "2"],
        ["build", "--kind", "latency", "--batch", "0"],
        ["build", "--kind", "latency", "--threads", "0"],
        ["build", "--kind", "latency", "--threads", "257"],
        ["build", "--kind", "latency", "--calibration-networks", "-1"],
        ["build", "--input-size", "0"],
        ["build", "--channel-scales", "nan"],
    ],
)
def test_nonsense_numbers_are_refused_by_argparse(argv, tmp_path, capsys):
    """Issue 13 (4): --samples 0 validated nothing and said exact; --samples -3 died in numpy."""
    out_file = tmp_path / "o.json"
    argv = [str(tmp_path / "t.json") if a == "T" else a for a in argv]
    extra = ["-o", str(out_file)] if argv[0] == "build" else ["--no-progress"]
    status, out, err = _lut(capsys, *argv, *extra)
    assert status == 2 and out == "" and "Traceback" not in err
    assert f"argument {argv[-2]}" in err and argv[-1] in err and len(err.strip().splitlines()) == 1
    assert not out_file.exists()


def test_random_architectures_exist_in_the_space():
    space = SearchSpace(**{**TINY, "channel_scales": (0.01, 1.0)})  # scale 0.01 leaves 0 mid channels early on
    blocks, channels = random_architectures(space, 200, seed=0)
    valid = np.array(space.valid_channels())
    assert valid[np.arange(space.num_positions)[None, :], channels].all()
    assert [space.fix_channels(c) for c in channels.tolist()] == channels.tolist()


def test_width_level_architectures_cluster_around_one_level_and_span_the_widths():
    from spos_deploy.space import SPACES

    space = SPACES["small"]
    blocks, channels = width_level_architectures(space, 2000, seed=1)
    rank = np.argsort(np.argsort(space.channel_scales))[channels]  # 0 narrowest ... num_scales-1 widest
    assert (rank.max(axis=1) - rank.min(axis=1) <= 2).all()  # every position within one choice of one level
    assert set(rank.mean(axis=1).round()) == set(range(space.num_scales))  # every level drawn
    assert (rank.max(axis=1) == 0).any() and (rank.min(axis=1) == space.num_scales - 1).any()
    assert blocks.min() == 0 and blocks.max() == space.num_blocks - 1
    uniform = np.argsort(np.argsort(space.channel_scales))[random_architectures(space, 2000, seed=1)[1]]
    assert rank.mean(axis=1).std() > 2 * uniform.mean(axis=1).std()  # uniform choices average out
    same = width_level_architectures(space, 2000, seed=1)
    assert (same[0] == blocks).all() and (same[1] == channels).all()
