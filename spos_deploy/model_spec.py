"""``model.json``: one architecture of the search space, loaded and validated.

Validation is two steps: a JSON Schema for shapes and types (unknown keys, non-integers), then the
rules that need the whole object (list lengths against the stage repeats, ids against the number of
scales, the input size against the network's total stride). Every failure is a
:class:`BadInputError` whose one-line message names the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from spos_deploy.atomic import read_json
from spos_deploy.errors import BadInputError
from spos_deploy.space import BLOCK_NAMES, DEFAULT_REPEATS, DEFAULT_SCALES, LAYOUTS, SearchSpace

# Upper bounds: far beyond any real network, low enough that a typo fails here with the field's name
# instead of deep inside MXNet.
MAX_POSITIONS = 256
MAX_CHANNELS = 16384
MAX_CLASSES = 1_000_000
MAX_INPUT_SIZE = 4096
MAX_SCALE = 16.0


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


_CHOICES = {"type": "array", "items": _int(0, 1_000), "minItems": 1, "maxItems": MAX_POSITIONS}
_STAGES = {"minItems": 1, "maxItems": 16}

MODEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["block_choices", "channel_choices"],
    "properties": {
        "name": {"type": "string"},
        "layout": {"enum": list(LAYOUTS)},
        "block_choices": _CHOICES,
        "channel_choices": _CHOICES,
        "use_se": {"type": "boolean"},
        "last_conv_after_pooling": {"type": "boolean"},
        "input_size": _int(1, MAX_INPUT_SIZE),
        "num_classes": _int(1, MAX_CLASSES),
        "stage_repeats": {"type": "array", "items": _int(1, MAX_POSITIONS), **_STAGES},
        "stage_out_channels": {"type": "array", "items": _int(1, MAX_CHANNELS), **_STAGES},
        "stage_strides": {"type": "array", "items": {"type": "integer", "enum": [1, 2]}, **_STAGES},
        "stem_stride": {"type": "integer", "enum": [1, 2]},
        "channel_scales": {
            "type": "array",
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SCALE},
            "minItems": 1,
            "maxItems": 64,
        },
        "first_conv_channels": _int(1, MAX_CHANNELS),
        "last_conv_channels": _int(1, MAX_CHANNELS),
        "shuffle": {"enum": ["reshape", "conv"]},
        # Written by our own tools next to the architecture; accepted and ignored.
        "accuracy": {"type": "number"},
        "flops": {"type": "integer"},
        "params": {"type": "integer"},
        "latency_ms": {"type": "number"},
        "measured_latency_ms": {"type": "number"},
        "measured_budget_latency_ms": {"type": "number"},
    },
}

ONESHOT_BLOCKS = [0, 0, 3, 1, 1, 1, 0, 0, 2, 0, 2, 1, 1, 0, 2, 0, 2, 1, 3, 2]
ONESHOT_CHANNELS = [6, 5, 3, 5, 2, 6, 3, 4, 2, 5, 7, 5, 4, 6, 7, 4, 4, 5, 4, 3]

BUILTINS: dict[str, dict[str, Any]] = {
    "oneshot": {
        "name": "oneshot",
        "layout": "OneShot",
        "block_choices": ONESHOT_BLOCKS,
        "channel_choices": ONESHOT_CHANNELS,
        "use_se": False,
        "last_conv_after_pooling": False,
    },
    "oneshot+": {
        "name": "oneshot+",
        "layout": "OneShot",
        "block_choices": ONESHOT_BLOCKS,
        "channel_choices": ONESHOT_CHANNELS,
        "use_se": True,
        "last_conv_after_pooling": True,
    },
    "oneshot-s+": {
        "name": "oneshot-s+",
        "layout": "OneShot",
        "block_choices": [0, 0, 0, 1, 0, 0, 1, 0, 3, 2, 0, 1, 2, 2, 1, 2, 0, 0, 2, 0],
        "channel_choices": [8, 7, 6, 8, 5, 7, 3, 4, 2, 4, 2, 3, 4, 5, 6, 6, 3, 3, 4, 6],
        "use_se": True,
        "last_conv_after_pooling": True,
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: a search space plus a block and a channel choice per position."""

    space: SearchSpace
    block_choices: tuple[int, ...]
    channel_choices: tuple[int, ...]
    name: str = "model"
    shuffle: str = "reshape"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def mids(self) -> list[int]:
        return [self.space.mid(p, c) for p, c in zip(self.space.positions(), self.channel_choices)]

    def with_(self, **changes: Any) -> ModelSpec:
        d = {
            "space": self.space,
            "block_choices": self.block_choices,
            "channel_choices": self.channel_choices,
            "name": self.name,
            "shuffle": self.shuffle,
        }
        d.update(changes)
        return ModelSpec(**d)

    def to_json(self) -> dict[str, Any]:
        """The model.json object (custom-space keys only where they differ from the layout's default)."""
        s = self.space
        d: dict[str, Any] = {
            "name": self.name,
            "layout": s.layout,
            "block_choices": list(self.block_choices),
            "channel_choices": list(self.channel_choices),
            "use_se": s.use_se,
            "last_conv_after_pooling": s.last_conv_after_pooling,
            "input_size": s.input_size,
            "num_classes": s.num_classes,
        }
        if s.stage_repeats != DEFAULT_REPEATS:
            d["stage_repeats"] = list(s.stage_repeats)
        if s.stage_out_channels != LAYOUTS[s.layout]:
            d["stage_out_channels"] = list(s.stage_out_channels)
        if s.channel_scales != DEFAULT_SCALES:
            d["channel_scales"] = list(s.channel_scales)
        if s.first_conv_channels != 16:
            d["first_conv_channels"] = s.first_conv_channels
        if s.last_conv_channels != 1024:
            d["last_conv_channels"] = s.last_conv_channels
        if s.stem_stride != 2:
            d["stem_stride"] = s.stem_stride
        if s.stage_strides is not None:
            d["stage_strides"] = list(s.stage_strides)
        if self.shuffle != "reshape":
            d["shuffle"] = self.shuffle
        return d


EXTRA_KEYS = ("accuracy", "flops", "params", "latency_ms", "measured_latency_ms", "measured_budget_latency_ms")
"""What a search writes beside an architecture: its accuracy, counts, predicted and measured deployed latency."""


def _strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema draft 7 counts ``1.0`` as an integer; a model.json must write integers as integers."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _field_of(error: jsonschema.ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        return "(top level)"
    if error.validator == "required":
        return "(top level)"
    if not path:
        return "(top level)"
    head, rest = path[0], path[1:]
    return head + "".join(f"[{p}]" for p in rest)


_BOUND_WORDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}


def _schema_message(error: jsonschema.ValidationError) -> str:
    v, where = error.validator, _field_of(error)
    got = json.dumps(error.instance)
    if v == "additionalProperties":
        allowed = sorted(MODEL_SCHEMA["properties"])
        extra = sorted(set(error.instance) - set(allowed))
        return f"unknown key(s) {', '.join(map(repr, extra))}; allowed keys: {', '.join(allowed)}"
    if v == "required":
        return f"missing required field {error.message.split(' ')[0]}"
    if v in _BOUND_WORDS:
        return f"field '{where}' must be {_BOUND_WORDS[v]} {error.validator_value:,}, got {got}"
    messages = {
        "type": f"field '{where}' must be of type {error.validator_value}, got {got}",
        "enum": f"field '{where}' must be one of {error.validator_value}, got {got}",
        "minItems": f"field '{where}' must not be empty",
        "maxItems": f"field '{where}' has more than {error.validator_value} entries",
    }
    return messages.get(v, f"field '{where}': {error.message}")


def _check_schema(d: Any) -> None:
    if not isinstance(d, dict):
        raise BadInputError(f"must be a JSON object, got {type(d).__name__}")
    errors = sorted(_Validator(MODEL_SCHEMA).iter_errors(d), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise BadInputError(_schema_message(errors[0]))


def _check_stages(d: dict[str, Any], repeats: tuple[int, ...], channels: tuple[int, ...]) -> None:
    if len(channels) != len(repeats):
        raise BadInputError(
            f"field 'stage_out_channels' has {len(channels)} entries but 'stage_repeats' has {len(repeats)}"
        )
    if "stage_strides" in d and len(d["stage_strides"]) != len(repeats):
        raise BadInputError(
            f"field 'stage_strides' has {len(d['stage_strides'])} entries but 'stage_repeats' has {len(repeats)}"
        )
    if sum(repeats) > MAX_POSITIONS:
        raise BadInputError(f"field 'stage_repeats' adds up to {sum(repeats)} positions, more than {MAX_POSITIONS}")
    # Multiples of 16: MXNet 1.9's oneDNN kernels fail (SIGFPE, "could not construct a sub-memory") on
    # channel splits and depthwise convs that are not 8-channel aligned.
    c_in = d.get("first_conv_channels", 16)
    if c_in % 16:
        raise BadInputError(f"field 'first_conv_channels' must be a multiple of 16, got {c_in}")
    for i, c in enumerate(channels):
        if c % 16:
            raise BadInputError(f"field 'stage_out_channels[{i}]' must be a multiple of 16, got {c}")
        if c <= c_in:
            raise BadInputError(
                f"field 'stage_out_channels[{i}]' must exceed the stage's input channels {c_in} "
                f"(a stride-2 block concatenates its input with the main branch), got {c}"
            )
        c_in = c


def _check_scales(scales: tuple[float, ...]) -> None:
    # Ascending: the channel warm-up widens from the last id down, and "widest" means the last id everywhere.
    for i in range(1, len(scales)):
        if scales[i] <= scales[i - 1]:
            raise BadInputError(
                f"field 'channel_scales' must be strictly ascending, got {scales[i - 1]:g} then {scales[i]:g} "
                f"at [{i - 1}], [{i}]"
            )


def _space_of(d: dict[str, Any]) -> SearchSpace:
    """The search-space part of a schema-valid model.json, with the rules that need several fields."""
    layout = d.get("layout", "OneShot")
    repeats = tuple(d.get("stage_repeats", DEFAULT_REPEATS))
    channels = tuple(d.get("stage_out_channels", LAYOUTS[layout]))
    scales = tuple(float(s) for s in d.get("channel_scales", DEFAULT_SCALES))
    _check_stages(d, repeats, channels)
    _check_scales(scales)
    space = SearchSpace(
        layout=layout,
        use_se=d.get("use_se", True),
        last_conv_after_pooling=d.get("last_conv_after_pooling", True),
        input_size=d.get("input_size", 224),
        num_classes=d.get("num_classes", 1000),
        stage_repeats=repeats,
        stage_out_channels=channels,
        channel_scales=scales,
        first_conv_channels=d.get("first_conv_channels", 16),
        last_conv_channels=d.get("last_conv_channels", 1024),
        stem_stride=d.get("stem_stride", 2),
        stage_strides=tuple(d.get("stage_strides", (2,) * len(repeats))),
    )
    if space.input_size % space.total_stride:
        raise BadInputError(
            f"field 'input_size' must be a multiple of {space.total_stride} (the network's total stride), "
            f"got {space.input_size}"
        )
    return space


def _check_choices(d: dict[str, Any], space: SearchSpace) -> None:
    n = space.num_positions
    for key, top in (("block_choices", len(BLOCK_NAMES)), ("channel_choices", space.num_scales)):
        if len(d[key]) != n:
            raise BadInputError(f"field '{key}' must have {n} entries (sum of stage_repeats), got {len(d[key])}")
        for i, v in enumerate(d[key]):
            if not 0 <= v < top:
                raise BadInputError(f"field '{key}[{i}]' must be in 0..{top - 1}, got {v}")
    for pos, c in zip(space.positions(), d["channel_choices"]):
        if not space.channel_valid(pos, c):
            raise BadInputError(
                f"field 'channel_choices[{pos.index}]' gives 0 mid channels "
                f"(scale {space.channel_scales[c]} of {pos.out_channels // 2})"
            )


def spec_from_dict(d: Any, source: str = "model.json") -> ModelSpec:
    """Validate a parsed model.json object and build the :class:`ModelSpec`.

    Two steps: the JSON Schema (shapes, types, bounds), then the rules that need several fields; every
    failure is one line naming ``source`` and the field.
    """
    try:
        _check_schema(d)
        space = _space_of(d)
        _check_choices(d, space)
    except BadInputError as e:
        raise BadInputError(f"{source}: {e}") from None
    extra = {k: d[k] for k in EXTRA_KEYS if k in d}
    return ModelSpec(
        space=space,
        block_choices=tuple(d["block_choices"]),
        channel_choices=tuple(d["channel_choices"]),
        name=d.get("name", "model"),
        shuffle=d.get("shuffle", "reshape"),
        extra=extra,
    )


def load_spec(ref: str | Path, input_size: int | None = None) -> ModelSpec:
    """Load a model.json path or a built-in name (``oneshot``, ``oneshot+``, ``oneshot-s+``).

    ``input_size`` overrides the file's value (validated the same way).
    """
    ref_s = str(ref)
    if ref_s in BUILTINS:
        d: Any = dict(BUILTINS[ref_s])
        source = f"built-in '{ref_s}'"
    else:
        path = Path(ref_s)
        source = str(path)
        if not path.exists():
            names = ", ".join(BUILTINS)
            raise BadInputError(f"{ref_s}: no such file, and not a built-in model name ({names})")
        if path.is_dir():
            raise BadInputError(f"{ref_s}: is a folder, expected a model.json file")
        d = read_json(path, "model.json")
    if input_size is not None:
        if not isinstance(d, dict):
            raise BadInputError(f"{source}: must be a JSON object")
        d = dict(d, input_size=input_size)
    return spec_from_dict(d, source)
