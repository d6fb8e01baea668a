"""Generated bad table files: mutations of a valid FLOPs table and a valid latency table.

Each must be refused by ``spos-lut show`` and ``spos-lut validate`` with exit 2 and one line on stderr that
names the file and the problem, never a traceback: a corrupted entry is not read as "choice not available"
(and shown with exit 0), and a deeply nested file does not end in a RecursionError.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spos_deploy.cli.lut import main
from spos_deploy.space import SearchSpace
from spos_deploy.tables.flops.build import build_flops_table
from spos_deploy.tables.flops.table import FlopsTable
from spos_deploy.tables.latency.table import LatencyTable

SPACE = SearchSpace(input_size=32, num_classes=10, stage_repeats=(1, 1, 1, 1), channel_scales=(1.0, 2.0))
# scale 0.01 leaves no mid channels at the first three positions: their entries must be null
GAPPY = SearchSpace(
    input_size=32,
    num_classes=10,
    stage_repeats=(1, 1, 1, 1),
    stage_out_channels=(32, 64, 128, 256),
    channel_scales=(0.01, 1.0),
)

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: tuple, value: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _drop(*path: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        target = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


COMMON: dict[str, tuple[Mutation, str]] = {
    "unknown kind": (_set(("kind",), "weights"), "kind 'weights'"),
    "no kind": (_drop("kind"), "kind None"),
    "wrong version": (_set(("format_version",), 99), "format_version 99"),
    "version as text": (_set(("format_version",), "1"), "format_version '1'"),
    "no config": (_drop("config"), "'config'"),
    "config not an object": (_set(("config",), [1, 2]), "'config' must be an object"),
    "config with a string size": (_set(("config", "input_size"), "32"), "input_size"),
    "config with an unknown key": (_set(("config", "colour"), "red"), "colour"),
    "config for another shape": (
        _set(("config", "stage_repeats"), [1, 1, 2, 1]),
        "has 4 entries, expected 5 positions",
    ),
    "top level a list": (lambda d: [d], "a JSON list"),
}

FLOPS: dict[str, tuple[Mutation, str]] = {
    **COMMON,
    "no stem": (_drop("stem"), "missing key 'stem'"),
    "stem params text": (_set(("stem", "params"), "many"), "stem: 'params'"),
    "negative head": (_set(("head", "flops"), -1), "head: 'flops'"),
    "no flops": (_drop("flops"), "missing key 'flops'"),
    "flops a string": (_set(("flops",), "abc"), "'flops' must be a list"),
    "negative entry": (_set(("flops", 2, 1, 0), -5), "flops[2][1][0] (position 2, block 1, channel 0) is -5"),
    "NaN entry": (_set(("params", 0, 3, 1), float("nan")), "params[0][3][1] (position 0, block 3, channel 1) is nan"),
    "null entry of a valid choice": (_set(("flops", 3, 0, 1), None), "flops[3][0][1] (position 3, block 0"),
    "text entry": (_set(("flops", 1, 1, 1), "12"), "flops[1][1][1]"),
    "boolean entry": (_set(("flops", 1, 1, 1), True), "flops[1][1][1]"),
    "fractional count": (_set(("params", 1, 2, 0), 10.5), "params[1][2][0]"),
    "infinite entry": (_set(("flops", 0, 0, 0), float("inf")), "flops[0][0][0]"),
    "missing position": (_drop("flops", -1), "flops has 3 entries, expected 4 positions"),
    "missing block": (_drop("params", 2, -1), "params[2] has 3 entries, expected 4 block choices"),
    "extra channel": (lambda d: d["flops"][0][0].append(7), "flops[0][0] has 3 entries, expected 2 channel choices"),
    "row not a list": (_set(("flops", 0, 0), 5), "flops[0][0] must be a list"),
}

LATENCY: dict[str, tuple[Mutation, str]] = {
    **COMMON,
    "no fingerprint": (_drop("fingerprint"), "missing key 'fingerprint'"),
    "fingerprint a list": (_set(("fingerprint",), []), "'fingerprint' must be an object"),
    "stem_ms text": (_set(("stem_ms",), "fast"), "'stem_ms'"),
    "negative head_ms": (_set(("head_ms",), -0.1), "'head_ms'"),
    "NaN entry": (_set(("entries", 1, 2, 0), float("nan")), "entries[1][2][0] (position 1, block 2, channel 0)"),
    "null entry of a valid choice": (_set(("entries", 3, 3, 1), None), "entries[3][3][1] (position 3, block 3"),
    "negative entry": (_set(("entries", 0, 0, 0), -1.0), "entries[0][0][0]"),
    "negative dispersion": (_set(("dispersion", 0, 1, 0), -0.5), "dispersion[0][1][0]"),
    "no entries": (_drop("entries"), "missing key 'entries'"),
    "wrong shape": (_drop("entries", 1, -1), "entries[1] has 3 entries, expected 4 block choices"),
    "NaN slope": (_set(("correction", "slope"), float("nan")), "correction: 'slope'"),
    "correction a number": (_set(("correction",), 1.0), "'correction' must be an object"),
}


@pytest.fixture(scope="module")
def flops_json(tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("fuzz") / "flops.json"
    build_flops_table(SPACE, progress=False).save(path)
    return json.loads(path.read_text())


def _latency_table(space: SearchSpace) -> LatencyTable:
    """A latency table with made-up but well-formed numbers (the format is what is under test)."""
    shape = (space.num_positions, space.num_blocks, space.num_scales)
    entries = np.random.default_rng(0).uniform(0.05, 1.0, shape)
    valid = np.array(space.valid_channels())[:, None, :].repeat(space.num_blocks, axis=1)
    entries[~valid] = np.nan
    fp = {"cpu": "test", "runtime": "onnxruntime", "runtime_option": "ort-cpu", "precision": "fp32", "batch": 1}
    return LatencyTable(space, {**fp, "threads": 1, "shuffle": "reshape"}, 0.1, 0.2, entries, entries * 0.01)


@pytest.fixture(scope="module")
def latency_json() -> dict[str, Any]:
    return _latency_table(SPACE).to_json()


def _refused(capsys, path: Path, needle: str) -> None:
    for argv in (["show", str(path)], ["validate", str(path), "--samples", "1", "--no-progress"]):
        status = main(argv)
        out, err = capsys.readouterr()
        assert status == 2, (argv, err)
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert str(path) in err and needle in err, err


def _write(tmp_path: Path, d: Any) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("name", sorted(FLOPS))
def test_bad_flops_tables(name, flops_json, tmp_path, capsys):
    d = copy.deepcopy(flops_json)
    mutate, needle = FLOPS[name]
    d = mutate(d) or d
    _refused(capsys, _write(tmp_path, d), needle)


@pytest.mark.parametrize("name", sorted(LATENCY))
def test_bad_latency_tables(name, latency_json, tmp_path, capsys):
    d = copy.deepcopy(latency_json)
    mutate, needle = LATENCY[name]
    d = mutate(d) or d
    _refused(capsys, _write(tmp_path, d), needle)


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("nested too deep", b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        ("binary garbage", bytes(range(256)) * 8, "not a text file"),
        ("empty", b"", "invalid JSON"),
        ("not JSON", b"flops: 3\n", "invalid JSON"),
    ],
)
def test_unreadable_files(name, content, needle, tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    _refused(capsys, path, needle)


@pytest.mark.parametrize("kind", ["flops", "latency"])
def test_truncated_files(kind, flops_json, latency_json, tmp_path, capsys):
    text = json.dumps(flops_json if kind == "flops" else latency_json)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    _refused(capsys, path, "invalid JSON")


def test_missing_table_and_folder(tmp_path, capsys):
    _refused(capsys, tmp_path / "none.json", "no such file")
    _refused(capsys, tmp_path, "is a folder")


def test_null_exactly_where_a_choice_does_not_exist(tmp_path, capsys):
    """A choice with 0 mid channels must be null, and one that exists must not be."""
    lat = _latency_table(GAPPY)
    assert not lat.space.channel_valid(0, 0)
    good = _write(tmp_path, lat.to_json())
    assert np.isnan(LatencyTable.load(good).entries[0, :, 0]).all()
    d = lat.to_json()
    d["entries"][0][2][0] = 0.5
    _refused(capsys, _write(tmp_path, d), "entries[0][2][0] (position 0, block 2, channel 0) is 0.5, but that choice")
    flops = build_flops_table(GAPPY, progress=False).to_json()
    assert FlopsTable.from_json(copy.deepcopy(flops)).flops[0, 0, 0] == -1
    flops["flops"][1][0][0] = 1000
    _refused(capsys, _write(tmp_path, flops), "flops[1][0][0] (position 1, block 0, channel 0) is 1000")


def test_shipped_tables_still_load():
    from spos_deploy.tables.files import load_table

    root = Path(__file__).resolve().parents[1] / "spos_deploy" / "lookup_tables"
    tables = [p for p in sorted(root.glob("*.json")) if not p.name.endswith(".validation.json")]
    assert len(tables) >= 9
    for p in tables:
        assert "stem_stride" not in json.loads(p.read_text())["config"]
        load_table(p)
