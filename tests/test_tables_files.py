"""spos-lut on every table kind: the MicroNet kind end to end, the new geometry keys, output refusal, argument
checks and the contract keys of ``validate --json``. In-process (``spos_deploy.cli.lut.main``), tiny spaces."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.cli.lut import main
from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import SearchSpace
from spos_deploy.tables.catalog import TABLES_ENV, resolve_table, shipped_tables_dir, user_tables_dir
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
    """A table from ``build --kind micronet`` is shown and validated as a MicroNet table (not refused as not FLOPs)."""
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
    """validate --json on a FLOPs table has the contract keys (mape, max_error, within_5/10, kendall_tau, ...)."""
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
    """-o FILE never replaces an existing file without --force; -o FOLDER writes the table into it by name; a path
    under a file is refused before any work."""
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
    """Counts no command can use (--samples 0 would validate nothing and say exact) are refused by argparse."""
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


# ---- tables by name, the per-user folder -----------------------------------------------------------------------


@pytest.fixture
def tables_home(tmp_path, monkeypatch):
    """An empty per-user table folder and an empty current folder (returned: the user folder)."""
    user, cwd = tmp_path / "user-tables", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv(TABLES_ENV, str(user))
    monkeypatch.chdir(cwd)
    return user


def test_a_table_is_found_by_path_then_user_folder_then_shipped(tables_home, capsys):
    """``spos-lut show lookup_tables/NAME.json`` (as the README writes it) works outside the repository too."""
    shipped = shipped_tables_dir() / "flops_OneShot_se_lcap_32_c10.json"
    for spec in ("flops_OneShot_se_lcap_32_c10", shipped.name, f"lookup_tables/{shipped.name}", str(shipped)):
        assert resolve_table(spec) == shipped, spec
    tables_home.mkdir()
    mine = tables_home / shipped.name
    shutil.copy(shipped, mine)
    assert resolve_table("flops_OneShot_se_lcap_32_c10") == mine  # a table built here shadows a shipped one
    Path("flops_OneShot_se_lcap_32_c10.json").write_bytes(shipped.read_bytes())
    assert resolve_table("flops_OneShot_se_lcap_32_c10.json") == Path("flops_OneShot_se_lcap_32_c10.json")
    status, out, err = _lut(capsys, "show", "flops_OneShot_se_lcap_224")
    assert status == 0 and out.startswith(str(shipped_tables_dir() / "flops_OneShot_se_lcap_224.json")), err


@pytest.mark.parametrize("spec", ["no_such_table", "no_such_table.json", "some/folder/t.json"])
def test_an_unknown_table_is_one_line_naming_where_it_was_looked_for(spec, tables_home, capsys):
    for command in ("show", "validate"):
        status, out, err = _lut(capsys, command, spec)
        lines = err.strip().splitlines()
        assert (
            status == 2 and out == "" and len(lines) == 1 and lines[0].startswith(f"spos-lut: error: {spec}: no such")
        )
        if "/" not in spec:
            assert str(tables_home) in lines[0] and str(shipped_tables_dir()) in lines[0]
    assert list(Path.cwd().iterdir()) == [] and not tables_home.exists()


def test_table_options_take_names_and_refuse_unknown_ones(tables_home, capsys):
    from spos_deploy.search.cli import build_parser
    from spos_deploy.search.cli import main as search_main

    lut = "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc"
    args = build_parser().parse_args(
        ["--supernet", "s", "-o", "o", "--lut", lut, "--flops-table", "flops_OneShot_se_lcap_32_c10"]
    )
    assert args.latency_table == str(shipped_tables_dir() / f"{lut}.json")
    assert args.flops_table == str(shipped_tables_dir() / "flops_OneShot_se_lcap_32_c10.json")
    assert search_main(["--supernet", "s", "-o", "o", "--micronet-table", "nope"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spos-search: error: --micronet-table: nope: no such file"), lines
    assert list(Path.cwd().iterdir()) == []


def test_build_without_output_writes_to_the_user_folder_never_the_current_one(tables_home, capsys):
    status, out, err = _lut(capsys, "build", *space_args(**TINY), "--no-progress", "--json")
    name = f"flops_{SearchSpace(**TINY).describe()}"
    assert status == 0 and json.loads(out)["table"] == str(tables_home / f"{name}.json"), err
    assert list(Path.cwd().iterdir()) == []
    status, out, err = _lut(capsys, "build", *space_args(**TINY), "--no-progress")
    assert status == 2 and str(tables_home / f"{name}.json") in err  # exists: refused, not replaced
    (tables_home / "junk.json").write_text("{")
    status, out, err = _lut(capsys, "list", "--json")
    assert status == 0, err
    listed = json.loads(out)
    assert listed["user_dir"] == str(tables_home) and listed["shipped_dir"] == str(shipped_tables_dir())
    by = {(t["source"], t["name"]): t for t in listed["tables"]}
    assert by[("user", name)]["kind"] == "flops" and by[("user", name)]["config"] == SearchSpace(**TINY).describe()
    assert "invalid JSON" in by[("user", "junk")]["error"]
    shipped = {n for s, n in by if s == "shipped"}
    assert "flops_OneShot_se_lcap_224" in shipped and not any(n.endswith(".validation") for n in shipped)
    assert by[("shipped", "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc")]["setup"].startswith(
        "onnxruntime on cpu int8"
    )
    status, out, err = _lut(capsys, "list")
    assert status == 0 and name in out and f"user tables: {tables_home}" in out


def test_the_user_folder_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(TABLES_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert user_tables_dir() == tmp_path / "data" / "spos-deploy" / "tables"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # invalid by the XDG spec: ignored
    assert user_tables_dir() == tmp_path / "home" / ".local" / "share" / "spos-deploy" / "tables"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert user_tables_dir() == tmp_path / "home" / ".local" / "share" / "spos-deploy" / "tables"
    monkeypatch.setenv(TABLES_ENV, str(tmp_path / "mine"))
    assert user_tables_dir() == tmp_path / "mine"


def test_validation_plots_of_shipped_tables_go_to_the_user_folder(tables_home, tmp_path):
    """The shipped folder belongs to the installation (site-packages): nothing is written there."""
    from spos_deploy.cli.lut import _default_plot

    lut = shipped_tables_dir() / "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc.json"
    assert _default_plot(lut) == tables_home / "latency_small_32_c10_ort-cpu_int8_b1_t2_amd-epyc.validation.png"
    mine = tmp_path / "t.json"
    assert _default_plot(mine) == tmp_path / "t.validation.png"
