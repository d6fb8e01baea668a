"""Generated bad inputs for every command: exit 2, one line naming the problem, no traceback, nothing left.

Families (issue 13): malformed and mutated model.json files, nonsense option values, corrupt weights,
data and table files, bad run folders. Each case runs the command in-process (``main(argv)``) in a fresh
folder and compares the folder's contents before and after.
"""

from __future__ import annotations

import importlib
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.model_spec import BUILTINS

from .conftest import COMMAND_MODULES

ROOT = Path(__file__).resolve().parents[1]
MODULES = COMMAND_MODULES
FLOPS_TABLE = ROOT / "spos_deploy" / "lookup_tables" / "flops_OneShot_se_lcap_32_c10.json"
LOG_PREFIXES = ("DEBUG ", "INFO ", "WARNING ")


@dataclass(frozen=True)
class Case:
    id: str
    prog: str
    argv: Callable[[Path], list[str]]  # given the case's folder (files made by ``setup`` live there)
    setup: Callable[[Path], None] | None = None
    needle: str | None = None  # a word the message must contain (the field, flag or file)


# ---- model.json -----------------------------------------------------------------------------------------------

GOOD = dict(BUILTINS["oneshot-s+"], input_size=32, num_classes=10)
INT_FIELDS = ["input_size", "num_classes", "first_conv_channels", "last_conv_channels", "stem_stride"]
LIST_FIELDS = ["block_choices", "channel_choices", "stage_repeats", "stage_out_channels", "channel_scales"]


def _model_mutations() -> list[tuple[str, str, str]]:
    """(case id, file text, needle) for a broad set of broken model.json files."""
    out: list[tuple[str, str, str]] = []

    def add(name: str, d: object, needle: str) -> None:
        out.append((name, json.dumps(d, allow_nan=True), needle))

    for key in INT_FIELDS:
        for label, bad in [
            ("float", 32.0),
            ("str", "32"),
            ("null", None),
            ("neg", -16),
            ("zero", 0),
            ("huge", 10**15),
            ("list", [32]),
            ("bool", True),
            ("nan", math.nan),
        ]:
            add(f"{key}-{label}", dict(GOOD, **{key: bad}), key)
    for key in LIST_FIELDS:
        for label, bad in [
            ("empty", []),
            ("str", "abc"),
            ("null", None),
            ("dict", {"a": 1}),
            ("nested", [[1, 2]]),
            ("strs", ["a"] * 4),
            ("long", [1] * 300),
        ]:
            add(f"{key}-{label}", dict(GOOD, **{key: bad}), key)
    n = len(GOOD["block_choices"])
    for key, top in [("block_choices", 4), ("channel_choices", 10)]:
        for label, v in [("neg", -1), ("over", top), ("float", 1.5), ("intfloat", 1.0), ("inf", math.inf)]:
            bad = list(GOOD[key])
            bad[random.Random(key + label).randrange(n)] = v
            add(f"{key}-{label}", dict(GOOD, **{key: bad}), key)
        add(f"{key}-short", dict(GOOD, **{key: GOOD[key][:-1]}), key)
        add(f"{key}-longer", dict(GOOD, **{key: GOOD[key] + [0]}), key)
    for label, scales in [
        ("descending", [2.0, 1.0] + [3.0 + i for i in range(8)]),
        ("equal", [1.0] * 10),
        ("zero", [0.0] + [0.1 * i for i in range(1, 10)]),
        ("huge", [1e300] * 10),
    ]:
        add(f"channel_scales-{label}", dict(GOOD, channel_scales=scales), "channel_scales")
    add("stage_strides-bad", dict(GOOD, stage_strides=[3, 2, 2, 2]), "stage_strides")
    add("stage_strides-short", dict(GOOD, stage_strides=[2, 2]), "stage_strides")
    add("stem-indivisible", dict(GOOD, input_size=40), "input_size")
    add("channels-unaligned", dict(GOOD, stage_out_channels=[64, 160, 320, 650]), "stage_out_channels")
    add("channels-shrinking", dict(GOOD, stage_out_channels=[64, 48, 320, 640]), "stage_out_channels")
    add("layout-bogus", dict(GOOD, layout="Bogus"), "layout")
    add("shuffle-bogus", dict(GOOD, shuffle="transpose"), "shuffle")
    add("use_se-str", dict(GOOD, use_se="yes"), "use_se")
    add("unknown-key", dict(GOOD, colour="red"), "colour")
    for key in ("block_choices", "channel_choices"):
        add(f"missing-{key}", {k: v for k, v in GOOD.items() if k != key}, key)
    for label, d in [("list", [GOOD]), ("string", "model"), ("number", 3), ("null", None)]:
        add(f"top-{label}", d, "object")
    text = json.dumps(GOOD)
    out += [
        ("truncated", text[: len(text) // 2], "invalid JSON"),
        ("empty", "", "invalid JSON"),
        ("deep", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("trailing-garbage", text + " }", "invalid JSON"),
    ]
    return out


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text)


def _model_cases() -> list[Case]:
    cases = []
    for i, (name, text, needle) in enumerate(_model_mutations()):
        setup = _write("model.json", text)
        cases.append(
            Case(f"profile-{name}", "spos-profile", lambda d: ["model.json", "--table", "none"], setup, needle)
        )
        # every command that takes a model reads it through the same validation: spread a sample over them
        other = [
            ("bench", "spos-bench", lambda d: ["model.json", "--repeats", "2"]),
            ("export", "spos-export", lambda d: ["model.json", "--random-init", "-o", "out"]),
            ("lut", "spos-lut", lambda d: ["build", "--kind", "flops", "--from-model", "model.json", "-o", "t.json"]),
            ("train", "spos-train", lambda d: ["subnet", "model.json", "-o", "run", "--max-steps", "1"]),
        ][i % 4]
        if i % 3 == 0:
            cases.append(Case(f"{other[0]}-{name}", other[1], other[2], setup, needle))
    return cases


# ---- option values ---------------------------------------------------------------------------------------------

NONSENSE = {"zero": "0", "neg": "-1", "nan": "nan", "inf": "inf", "word": "abc"}


def _option_cases() -> list[Case]:
    table = str(FLOPS_TABLE)
    # (prog, valid argv without the flag, flag, the bad values to try)
    specs: list[tuple[str, list[str], str, list[str]]] = [
        ("spos-bench", ["oneshot-s+"], "--threads", ["0", "-1", "1000", "abc"]),
        ("spos-bench", ["oneshot-s+"], "--batch", ["zero", "neg", "word"]),
        ("spos-bench", ["oneshot-s+"], "--repeats", ["zero", "neg", "word"]),
        ("spos-bench", ["oneshot-s+"], "--warmup", ["neg", "word"]),
        ("spos-export", ["oneshot-s+", "--random-init", "-o", "out"], "--calib-count", ["zero", "neg", "word"]),
        ("spos-export", ["oneshot-s+", "--random-init", "-o", "out"], "--eval-count", ["zero", "neg", "word"]),
        ("spos-export", ["oneshot-s+", "--random-init", "-o", "out"], "--keep-float", ["neg", "word"]),
        ("spos-export", ["oneshot-s+", "--random-init", "-o", "out"], "--input-size", ["zero", "neg", "33"]),
        ("spos-profile", ["oneshot-s+", "--table", "none"], "--measure-runs", ["zero", "neg", "word"]),
        ("spos-profile", ["oneshot-s+", "--table", "none"], "--input-size", ["zero", "neg", "word", "100"]),
        ("spos-lut", ["validate", table], "--samples", ["zero", "neg", "-3", "word"]),
        ("spos-lut", ["validate", table], "--seed", ["neg", "word"]),
        ("spos-lut", ["build", "--kind", "latency", "-o", "t.json"], "--repeats", ["zero", "neg"]),
        ("spos-lut", ["build", "--kind", "latency", "-o", "t.json"], "--batch", ["zero", "neg"]),
        ("spos-lut", ["build", "--kind", "latency", "-o", "t.json"], "--threads", ["0", "1000"]),
        ("spos-lut", ["build", "--kind", "flops", "-o", "t.json"], "--input-size", ["zero", "neg", "33"]),
        ("spos-lut", ["build", "--kind", "flops", "-o", "t.json"], "--num-classes", ["zero", "neg"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--lr", ["zero", "neg", "nan", "inf"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--epochs", ["zero", "neg"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--batch-size", ["zero", "neg"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--label-smoothing", ["neg", "1.5"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--momentum", ["neg", "1.5"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--wd", ["neg", "nan"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--keep", ["zero", "neg"]),
        ("spos-train", ["supernet", "-o", "run", "--max-steps", "1"], "--train-limit", ["zero", "neg"]),
        ("spos-train", ["supernet", "-o", "run"], "--max-steps", ["zero", "neg"]),
        ("spos-train", ["subnet", "oneshot-s+", "-o", "run", "--max-steps", "1"], "--mixup", ["neg", "nan"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--population", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--generations", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--mutation", ["neg", "2"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--budget", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--bn-images", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--batch-size", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--workers", ["zero", "neg"]),
        ("spos-search", ["--supernet", "sn", "-o", "s"], "--latency-max-ms", ["zero", "neg", "nan"]),
    ]
    cases = []
    for prog, base, flag, values in specs:
        for v in values:
            value = NONSENSE.get(v, v)
            cases.append(Case(f"{prog}{flag}={value}", prog, lambda d, b=base, f=flag, x=value: [*b, f, x], None, flag))
    cases.append(
        Case(
            "search-range-inverted",
            "spos-search",
            lambda d: ["--supernet", "sn", "-o", "s", "--flops-range", "5e6", "1e6"],
            _run_folder(_supernet_config()),
            "--flops-range",
        )
    )
    return cases


# ---- files: weights, data, tables, run folders -----------------------------------------------------------------


def _bytes(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _npz(labels: list[int]) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        rng = np.random.default_rng(0)
        np.savez(d / "data.npz", images=rng.random((len(labels), 3, 32, 32), dtype=np.float32), labels=labels)

    return make


def _supernet_config(**space: object) -> dict:
    """The config.json of a real ``spos-train supernet`` run of the small space, with ``space`` changed."""
    from spos_deploy.training.trainer import SupernetConfig

    from spos_deploy.space import SPACES

    d = SupernetConfig(out="sn", space=SPACES["small"]).to_json()
    d["space"].update(space)
    return d


_PARAMS: dict[str, bytes] = {}


def _supernet_params() -> bytes:
    """The weights file of a real small-space supernet (made once)."""
    if not _PARAMS:
        import tempfile

        from spos_deploy.nets.supernet import build_supernet
        from spos_deploy.space import SPACES

        with tempfile.TemporaryDirectory() as t:
            build_supernet(SPACES["small"]).save_parameters(f"{t}/supernet.params")
            _PARAMS["small"] = Path(f"{t}/supernet.params").read_bytes()
    return _PARAMS["small"]


def _run_folder(config: object, state: object | None = None) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / "sn").mkdir()
        (d / "sn" / "config.json").write_text(json.dumps(config))
        (d / "sn" / "supernet.params").write_bytes(_supernet_params() if state is not None else b"\0" * 64)
        if state is not None:
            (d / "s").mkdir()
            (d / "s" / "state.json").write_text(json.dumps(state))

    return make


def _file_cases() -> list[Case]:
    export = ["oneshot-s+", "--input-size", "32", "-o", "out"]
    cases = [
        Case(
            f"export-params-{k}",
            "spos-export",
            lambda d: [*export, "--params", "w.params"],
            _bytes("w.params", b),
            "w.params",
        )
        for k, b in [("empty", b""), ("junk", b"\x00\x01garbage" * 100), ("text", b"not params\n")]
    ]
    cases += [
        Case("export-params-missing", "spos-export", lambda d: [*export, "--params", "none.params"], None, "none"),
        Case(
            "export-eval-labels",
            "spos-export",
            lambda d: ["model.json", "-o", "out", "--random-init", "--eval", "data.npz"],
            lambda d: (_npz([0, 1, 999, -1] * 8)(d), (d / "model.json").write_text(json.dumps(GOOD))),
            "label",
        ),
        Case(
            "export-calib-missing",
            "spos-export",
            lambda d: [*export, "--random-init", "--int8", "--calib", "nowhere/"],
            None,
            "nowhere",
        ),
        Case(
            "export-parent-file",
            "spos-export",
            lambda d: ["oneshot-s+", "--random-init", "-o", "afile/sub"],
            _write("afile", "x"),
            "afile",
        ),
        Case(
            "export-out-exists",
            "spos-export",
            lambda d: ["oneshot-s+", "--random-init", "-o", "out"],
            lambda d: (d / "out").mkdir(),
            "out",
        ),
        Case("bench-onnx-junk", "spos-bench", lambda d: ["m.onnx"], _bytes("m.onnx", b"\x08\x07junk" * 50), "m.onnx"),
        Case("bench-missing", "spos-bench", lambda d: ["nothing.onnx"], None, "nothing.onnx"),
        Case(
            "train-out-is-file",
            "spos-train",
            lambda d: ["supernet", "-o", "afile", "--max-steps", "1"],
            _write("afile", "x"),
            "afile",
        ),
        Case(
            "train-data-missing",
            "spos-train",
            lambda d: ["supernet", "-o", "run", "--data", "nowhere.rec", "--max-steps", "1"],
            None,
            "nowhere",
        ),
        Case(
            "train-data-labels",
            "spos-train",
            lambda d: [
                "supernet",
                "-o",
                "run",
                "--data",
                "data.npz",
                "--input-size",
                "32",
                "--num-classes",
                "10",
                "--max-steps",
                "1",
            ],
            _npz([0, 1, 999, -1] * 8),
            "classes",
        ),
        Case("search-no-supernet", "spos-search", lambda d: ["--supernet", "nowhere", "-o", "s"], None, "nowhere"),
        Case(
            "search-lut-junk",
            "spos-search",
            lambda d: ["--supernet", "sn", "-o", "s", "--lut", "t.json", "--latency-max-ms", "1"],
            lambda d: (_run_folder(_supernet_config())(d), (d / "t.json").write_text("{")),
            "t.json",
        ),
        Case(
            "search-config-layout",
            "spos-search",
            lambda d: ["--supernet", "sn", "-o", "s"],
            _run_folder(_supernet_config(layout="Bogus")),
            "layout",
        ),
        Case(
            "search-config-list",
            "spos-search",
            lambda d: ["--supernet", "sn", "-o", "s"],
            _run_folder([]),
            "config.json",
        ),
        Case(
            "search-state-list",
            "spos-search",
            lambda d: ["--supernet", "sn", "-o", "s", "--resume"],
            _run_folder(_supernet_config(), state=[]),
            "state.json",
        ),
        Case(
            "lut-show-junk", "spos-lut", lambda d: ["show", "t.json"], _bytes("t.json", b"\xff\xfe\x00junk"), "t.json"
        ),
        Case("lut-show-deep", "spos-lut", lambda d: ["show", "t.json"], _write("t.json", "[" * 100_000), "t.json"),
        Case("lut-validate-missing", "spos-lut", lambda d: ["validate", "none.json"], None, "none.json"),
    ]
    table = json.loads(FLOPS_TABLE.read_text())
    for label, mutate in [
        ("negative-entry", lambda t: t["flops"][0][0].__setitem__(0, -5)),
        ("null-entry", lambda t: t["flops"][3][1].__setitem__(4, None)),
        ("nan-entry", lambda t: t["params"][2][0].__setitem__(9, math.nan)),
        ("short-row", lambda t: t["flops"][1].pop()),
        ("kind", lambda t: t.__setitem__("kind", "weights")),
        ("version", lambda t: t.__setitem__("format_version", 999)),
        ("no-config", lambda t: t.pop("config")),
        ("config-layout", lambda t: t["config"].__setitem__("layout", "Bogus")),
    ]:
        t = json.loads(json.dumps(table))
        mutate(t)
        text = json.dumps(t, allow_nan=True)
        cases.append(
            Case(f"lut-show-{label}", "spos-lut", lambda d: ["show", "t.json"], _write("t.json", text), "t.json")
        )
        cases.append(
            Case(
                f"lut-validate-{label}",
                "spos-lut",
                lambda d: ["validate", "t.json", "--samples", "2"],
                _write("t.json", text),
                "t.json",
            )
        )
    return cases


CASES = _model_cases() + _option_cases() + _file_cases()


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        case.setup(tmp_path)
    before = _tree(tmp_path)
    main = importlib.import_module(MODULES[case.prog]).main
    status = main(case.argv(tmp_path))
    out, err = capsys.readouterr()
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES)]
    assert status == 2, err
    assert "Traceback" not in err and out == "", err
    assert len(lines) == 1 and lines[0].startswith(f"{case.prog}: error:"), err
    if case.needle:  # the flag (--input-size) or the field (input_size) it sets
        norm = lines[0].lower().replace("-", "_")
        assert case.needle.lower().lstrip("-").replace("-", "_") in norm, lines[0]
    assert _tree(tmp_path) == before, "the failed command left files behind"


def test_enough_cases():
    assert len(CASES) >= 200
