"""model.json: built-ins, custom spaces, and malformed inputs (exit 2, one line naming the problem)."""

from __future__ import annotations

import json

import pytest

from spos_deploy.cli import profile as profile_cli
from spos_deploy.errors import BadInputError
from spos_deploy.model_spec import BUILTINS, load_spec, spec_from_dict
from spos_deploy.space import mid_channels

from .conftest import run_cli

GOOD = dict(BUILTINS["oneshot-s+"])


def test_builtins_have_the_published_mid_channels():
    spec = load_spec("oneshot-s+")
    assert spec.mids == [57, 51, 44, 57, 96, 128, 64, 80, 96, 160, 96, 128, 160, 192, 224, 224, 256, 256, 320, 448]
    assert load_spec("oneshot").mids[:4] == [44, 38, 25, 38]
    assert not load_spec("oneshot").space.use_se and load_spec("oneshot+").space.use_se


def test_mid_channel_rule_truncates_after_floor_division():
    assert mid_channels(64, 1.8) == 57
    assert [mid_channels(48, s) for s in (0.2, 0.4, 0.6, 0.8, 1.0)] == [4, 9, 14, 19, 24]


def test_round_trip_and_custom_space():
    d = {
        "layout": "ShuffleNetV2+",
        "block_choices": [0, 1, 2, 3, 0, 1],
        "channel_choices": [0, 1, 2, 0, 1, 2],
        "stage_repeats": [2, 2, 2],
        "stage_out_channels": [32, 64, 128],
        "channel_scales": [0.5, 1.0, 2.0],
        "input_size": 32,
        "num_classes": 10,
        "shuffle": "conv",
    }
    spec = spec_from_dict(d)
    assert spec.space.num_positions == 6 and spec.shuffle == "conv"
    again = spec_from_dict(spec.to_json())
    assert again == spec


def _with(**changes):
    d = dict(GOOD)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return d


_DROP = object()

MALFORMED = [
    ("unknown key", _with(colour="red"), "colour"),
    ("missing block_choices", _with(block_choices=_DROP), "block_choices"),
    ("block list too short", _with(block_choices=[0] * 19), "block_choices"),
    ("channel list too long", _with(channel_choices=[0] * 21), "channel_choices"),
    ("block id out of range", _with(block_choices=[4] + [0] * 19), "block_choices[0]"),
    ("negative block id", _with(block_choices=[0] * 19 + [-1]), "block_choices[19]"),
    ("channel id out of range", _with(channel_choices=[10] + [0] * 19), "channel_choices[0]"),
    ("float block id", _with(block_choices=[0.5] + [0] * 19), "block_choices[0]"),
    ("string channel id", _with(channel_choices=["1"] + [0] * 19), "channel_choices[0]"),
    ("input size not multiple of 32", _with(input_size=100), "input_size"),
    ("input size wrong type", _with(input_size="224"), "input_size"),
    ("zero input size", _with(input_size=0), "input_size"),
    ("unknown layout", _with(layout="MobileNet"), "layout"),
    ("use_se not boolean", _with(use_se="yes"), "use_se"),
    ("shuffle form unknown", _with(shuffle="gather"), "shuffle"),
    ("stage lists disagree", _with(stage_out_channels=[64, 160, 320]), "stage_out_channels"),
    ("unaligned stage channels", _with(stage_out_channels=[72, 160, 320, 640]), "stage_out_channels[0]"),
    ("stage narrower than its input", _with(stage_out_channels=[64, 48, 320, 640]), "stage_out_channels[1]"),
    ("unaligned first conv", _with(first_conv_channels=8), "first_conv_channels"),
    ("scale giving zero channels", _with(channel_scales=[0.01, 1.0], channel_choices=[0] * 20), "channel_choices[0]"),
    ("num_classes negative", _with(num_classes=-3), "num_classes"),
    ("not an object", [1, 2, 3], "JSON object"),
]


@pytest.mark.parametrize("label,obj,needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_model_json_exit_2_one_line(label, obj, needle, tmp_path, capsys):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(BadInputError):
        load_spec(path)
    code = profile_cli.main([str(path), "--table", "none"])
    out, err = capsys.readouterr()
    assert code == 2, label
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err


def test_invalid_json_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{"block_choices": [0, 0,')
    assert profile_cli.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "invalid JSON" in err and err.count("\n") == 1
    assert profile_cli.main([str(tmp_path / "absent.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_malformed_through_the_real_command(tmp_path):
    """The installed entry point, in a fresh interpreter: exit 2, one line, no traceback."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(_with(block_choices=[0] * 3)))
    proc = run_cli("spos-profile", str(path), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "block_choices" in proc.stderr and "Traceback" not in proc.stderr


# ---- integer-valued floats, upper bounds, deep nesting; ascending scales --------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"input_size": 32.0}, "input_size"),
        ({"num_classes": 10.0}, "num_classes"),
        ({"block_choices": [1.0] + GOOD["block_choices"][1:]}, "block_choices[0]"),
        ({"channel_choices": GOOD["channel_choices"][:-1] + [6.0]}, "channel_choices[19]"),
        ({"stage_repeats": [4.0, 4, 8, 4]}, "stage_repeats[0]"),
        ({"first_conv_channels": 16.0}, "first_conv_channels"),
        ({"stem_stride": 1.0}, "stem_stride"),
    ],
)
def test_integer_valued_floats_are_refused(changes, field):
    with pytest.raises(BadInputError, match=rf"field '{__import__('re').escape(field)}' must be of type integer"):
        spec_from_dict(_with(**changes))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"num_classes": 10**12}, "num_classes"),
        ({"input_size": 10**6}, "input_size"),
        ({"channel_scales": [1e300] * 10}, "channel_scales[0]"),
        ({"last_conv_channels": 10**9}, "last_conv_channels"),
        ({"stage_out_channels": [64, 160, 320, 10**8]}, "stage_out_channels[3]"),
    ],
)
def test_values_beyond_any_real_network_name_the_field(changes, field):
    with pytest.raises(BadInputError) as e:
        spec_from_dict(_with(**changes))
    msg = str(e.value)
    assert f"'{field}'" in msg and "must be <=" in msg and len(msg) < 200


def test_channel_scales_must_ascend():
    with pytest.raises(BadInputError, match="'channel_scales' must be strictly ascending, got 2 then 1"):
        spec_from_dict(_with(channel_scales=[2.0, 1.0] + [3.0 + i for i in range(8)]))
    with pytest.raises(BadInputError, match="strictly ascending"):
        spec_from_dict(_with(channel_scales=[0.5] * 10))


def test_deeply_nested_json_is_one_line(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(BadInputError, match="nested too deeply"):
        load_spec(p)


# ---- the small-image geometry: stem stride and per-stage strides ---------------------------------------------


def test_geometry_keys_round_trip_and_shape_the_positions():
    spec = spec_from_dict(_with(input_size=32, num_classes=10, stem_stride=1, stage_strides=[1, 2, 2, 1]))
    sp = spec.space
    assert sp.total_stride == 4
    pos = sp.positions()
    assert [(p.in_size, p.out_size) for p in pos if p.reduce] == [(32, 32), (32, 16), (16, 8), (8, 8)]
    assert all(p.reduce == (p.index in (0, 4, 8, 16)) for p in pos)
    assert spec_from_dict(spec.to_json()) == spec
    assert "custom" in sp.describe()
    # the default geometry is written exactly as before (shipped tables and exports keep their config)
    default = load_spec("oneshot-s+")
    assert "stem_stride" not in default.space.to_config() and "stage_strides" not in default.to_json()
    assert spec_from_dict(_with(stage_strides=[2, 2, 2, 2])).space == default.space


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"stem_stride": 3}, "'stem_stride' must be one of [1, 2]"),
        ({"stage_strides": [2, 2, 2]}, "'stage_strides' has 3 entries but 'stage_repeats' has 4"),
        ({"stage_strides": [2, 2, 0, 2]}, "'stage_strides[2]' must be one of [1, 2]"),
        (
            {"input_size": 36, "stem_stride": 1, "stage_strides": [1, 2, 2, 2]},
            "multiple of 8 (the network's total stride)",
        ),
    ],
)
def test_bad_geometry_values(changes, needle):
    with pytest.raises(BadInputError) as e:
        spec_from_dict(_with(**changes))
    assert needle in str(e.value)
