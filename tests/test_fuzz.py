"""Generated bad inputs for every command: exit 2, one line naming the problem, no traceback, nothing left.

Families: malformed and mutated model.json files, nonsense option values, corrupt weights, data and table
files, bad run folders, OpenVINO IRs cut short or without weights, an unknown
``--auto-runtimes`` name, ``--precision bf16`` on a CPU without native bf16 (simulated through
``SPOS_CPU_CAPABILITIES``), and a kill while NNCF quantizes. Each case runs the command in-process
(``main(argv)``) in a fresh folder and compares the folder's contents before and after; the OpenVINO ones also
run as a user runs them, in a fresh interpreter, where a library's child process could add its own traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.model_spec import BUILTINS

from .conftest import COMMAND_MODULES, TINY_MODEL

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
    env: dict[str, str] | None = None  # environment of the run (a simulated CPU)
    needs: str | None = None  # an optional package the command needs to get as far as the bad input


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


# ---- OpenVINO: IRs, --auto-runtimes, bf16 on a CPU without it ---------------------------------------------------

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
HAS_NNCF = importlib.util.find_spec("nncf") is not None
NO_BF16 = {"SPOS_CPU_CAPABILITIES": "FP32,INT8"}
"""What OpenVINO lists on a CPU without native bf16 (AVX2/AVX-512 without BF16 or AMX)."""

_IR: dict[str, bytes] = {}


def _ir() -> dict[str, bytes]:
    """The .xml and .bin of the tiny model's IR (random weights), made once."""
    if not _IR:
        import tempfile

        from spos_deploy.deploy.onnx import export_onnx
        from spos_deploy.deploy.openvino import write_ir
        from spos_deploy.deploy.transforms import merge_bn
        from spos_deploy.model_spec import spec_from_dict
        from spos_deploy.nets.network import build_subnet

        with tempfile.TemporaryDirectory() as t:
            net = merge_bn(build_subnet(spec_from_dict(dict(TINY_MODEL), "tiny"), seed=0))
            xml = write_ir(export_onnx(net, Path(t) / "m.onnx"), Path(t) / "m.xml")
            _IR.update(xml=xml.read_bytes(), bin=xml.with_suffix(".bin").read_bytes())
    return _IR


def _ir_files(
    xml: Callable[[bytes], bytes] = bytes, weights: Callable[[bytes], bytes] | None = bytes
) -> Callable[[Path], None]:
    """A setup writing model.xml and model.bin from the tiny IR, each passed through a damage function
    (``weights`` None: no model.bin at all)."""

    def make(d: Path) -> None:
        (d / "model.xml").write_bytes(xml(_ir()["xml"]))
        if weights is not None:
            (d / "model.bin").write_bytes(weights(_ir()["bin"]))

    return make


def _openvino_cases() -> list[Case]:
    bench = ["model.xml", "--repeats", "2", "--warmup", "0"]
    ir = [
        ("xml-truncated", _ir_files(xml=lambda b: b[: len(b) // 2]), "model.xml"),
        ("xml-empty", _ir_files(xml=lambda b: b""), "model.xml"),
        ("xml-junk", _ir_files(xml=lambda b: b"\x00\xffnot an IR" * 20), "model.xml"),
        ("bin-short", _ir_files(weights=lambda b: b[:1000]), "model.bin"),
        ("bin-empty", _ir_files(weights=lambda b: b""), "model.bin"),
        ("bin-missing", _ir_files(weights=None), "model.bin"),
    ]
    cases = [
        Case(f"bench-ir-{k}", "spos-bench", lambda d: bench, setup, needle, None, "openvino") for k, setup, needle in ir
    ]
    cases.append(  # not ONNX: OpenVINO is not left to offer it to its other readers (TensorFlow's prints)
        Case(
            "bench-onnx-junk-openvino",
            "spos-bench",
            lambda d: ["m.onnx", "--runtime", "openvino", "--repeats", "2"],
            _bytes("m.onnx", b"\x00\xffjunk" * 50),
            "m.onnx",
            None,
            "openvino",
        )
    )
    auto = ["oneshot-s+", "--random-init", "-o", "out", "--target", "auto", "--auto-runtimes"]
    cases += [
        Case("export-auto-runtimes-unknown", "spos-export", lambda d: [*auto, "tensorrt"], None, "--auto-runtimes"),
        Case("export-auto-runtimes-one-unknown", "spos-export", lambda d: [*auto, "openvino", "tvm"], None, "tvm"),
    ]
    # bf16 where the CPU has none: refused before anything is built or written, naming the missing BF16
    profile = "oneshot-s+ --table none --measure --runtime openvino --precision bf16".split()
    lut = "build --kind latency --runtime openvino --precision bf16 -o t.json".split()
    bf16 = [
        ("bench", "spos-bench", lambda d: [*bench, "--runtime", "openvino", "--precision", "bf16"], _ir_files()),
        ("profile", "spos-profile", lambda d: profile, None),
        ("lut", "spos-lut", lambda d: lut, None),
    ]
    cases += [
        Case(f"{k}-bf16-not-native", prog, argv, setup, "no BF16", NO_BF16, "openvino") for k, prog, argv, setup in bf16
    ]
    return cases


CASES = _model_cases() + _option_cases() + _file_cases() + _openvino_cases()


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    if case.needs is not None and importlib.util.find_spec(case.needs) is None:
        pytest.skip(f"{case.needs} is not installed")
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
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


OV_USER_CASES = [c for c in CASES if c.needs == "openvino" or c.id.startswith("export-auto-runtimes")]


@pytest.mark.skipif(not HAS_OPENVINO, reason="OpenVINO is not installed")
@pytest.mark.parametrize("case", OV_USER_CASES, ids=[c.id for c in OV_USER_CASES])
def test_openvino_bad_input_from_the_shell(case: Case, tmp_path):
    """The same cases as a user meets them, each in a fresh interpreter: what OpenVINO's telemetry or another
    child process prints, and the exit of the whole process, are part of what the user sees."""
    if case.setup is not None:
        case.setup(tmp_path)
    before = _tree(tmp_path)
    env = {**os.environ, **(case.env or {})}
    env.pop("SPOS_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", MODULES[case.prog], *case.argv(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip() and not ln.startswith(LOG_PREFIXES)]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{case.prog}: error:"), proc.stderr
    assert case.needle.lower().lstrip("-") in lines[0].lower(), lines[0]
    assert _tree(tmp_path) == before, "the failed command left files behind"


# ---- a kill while NNCF quantizes ---------------------------------------------------------------------------------

QUANTIZING = "NNCF quantization"
"""The log line ``quantize_for_openvino`` writes as NNCF starts: quantization stages no file when it starts, so
this line is the one reliable sign that the kill lands in it (conftest's ``interrupt_when`` waits for a file)."""


def _int8_export_argv(folder: Path) -> list[str]:
    """An OpenVINO int8 export of the tiny model that takes seconds: 8 calibration and 8 check images."""
    (folder / "model.json").write_text(json.dumps(TINY_MODEL))
    return [
        *("model.json", "--random-init", "-o", "out", "--format", "openvino", "--int8", "--no-bench"),
        *("--calib", "fashion-mnist:train", "--calib-count", "8", "--eval", "fashion-mnist:test", "--eval-count", "8"),
    ]


def _export_env(folder: Path) -> dict[str, str]:
    """The environment of a run: ``TMPDIR`` inside the test's folder, so that the export's temporary work folder
    (the intermediate ONNX files NNCF reads and writes) is checked for leftovers too."""
    (folder / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SPOS_DEBUG"}
    return {**env, "TMPDIR": str(folder / "tmp")}


def _interrupt_at_line(argv: list[str], folder: Path, marker: str, sig: int, delay: float = 0.3) -> tuple[int, str]:
    """Run ``spos-export argv`` in ``folder``, send ``sig`` ``delay`` seconds after its stderr shows ``marker``;
    returns the exit status and the whole stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULES["spos-export"], *argv],
        cwd=folder,
        env=_export_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not seen.is_set() and proc.poll() is None and time.monotonic() < deadline:
        seen.wait(0.05)
    if not seen.is_set():
        proc.kill()
        proc.wait()
        reader.join(10)
        pytest.fail(f"no {marker!r} line before the export ended: {''.join(lines)}")
    time.sleep(delay)
    proc.send_signal(sig)
    try:
        status = proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(10)
    return status, "".join(lines)


def _leftovers(folder: Path) -> list[str]:
    """Staging entries of the atomic writers (``.NAME.spos-tmp-PID-...``) and the export's temporary work
    folders, anywhere under ``folder``."""
    from spos_deploy.atomic import STAGING_TAG

    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if STAGING_TAG in p.name or "spos-export-onnx" in p.name
    )


@pytest.mark.skipif(not (HAS_OPENVINO and HAS_NNCF), reason="OpenVINO and NNCF are not installed")
def test_kill_during_nncf_quantization(tmp_path):
    argv = _int8_export_argv(tmp_path)
    # two delays: a signal soon after the line often lands in a destructor inside NNCF (networkx graphs), where
    # the process must end at once (signals.hard_exit, no ``finally``); a later one unwinds as an exception
    for sig, status, word, delay in [
        (signal.SIGINT, 130, "interrupted", 0.1),
        (signal.SIGTERM, 143, "terminated", 0.4),
    ]:
        got, err = _interrupt_at_line(argv, tmp_path, QUANTIZING, sig, delay)
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith(LOG_PREFIXES)]
        assert got == status and lines == [f"spos-export: {word}"], err
        assert "Traceback" not in err, err
        assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == [], _leftovers(tmp_path)
    # the same export again, to the end: complete, valid, and nothing staged is left anywhere
    proc = subprocess.run(
        [sys.executable, "-m", MODULES["spos-export"], *argv, "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_export_env(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path / "tmp")) == []
    out = tmp_path / "out"
    files = ["model.bin", "model.int8.bin", "model.int8.xml", "model.json", "model.xml", "report.json", "report.md"]
    assert sorted(p.name for p in out.iterdir()) == files
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(proc.stdout) and all(c["passed"] for c in report["checks"])
    assert {f["name"]: f["bytes"] for f in report["files"].values()} == {
        n: (out / n).stat().st_size for n in ("model.xml", "model.bin", "model.int8.xml", "model.int8.bin")
    }
    from spos_deploy.runtime.openvino import ov_compile

    int8 = ov_compile(out / "model.int8.xml", "int8")
    assert int8.int8_layers == report["int8"]["int8_layers"] > 0
    assert ov_compile(out / "model.xml", "fp32").int8_layers == 0
