"""Command-line options that several commands share, declared once so that they are spelled the same.

Every ``add_*`` function adds one option (or one group) to a parser; the ``*_type`` callables are
argparse ``type=`` checkers that reject nonsense values while parsing, before any work is done, with a
message naming the value (argparse prefixes the flag and exits 2).
Old spellings stay as hidden aliases for one release (:func:`add_alias`: ``--out`` for ``-o/--output``,
``--lut`` for ``--latency-table``, ``--data-limit`` for ``--train-limit``, ``--measure-runs`` for
``--repeats``, ``--bits`` for ``--score-bits``): they parse to the same destination, are left out of
``--help`` (:class:`HelpFormatter`), and a command that meets one logs a deprecation warning naming the new
spelling (:func:`take_aliases_used`). Old *values* are kept the same way: ``--runtime ort-cpu`` (and the other
latency-runtime names) for ``--runtime onnxruntime --device cpu``, ``spos-profile --measure gpu`` for
``--measure --device gpu`` (:func:`add_runtime`, :func:`add_measure`).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from spos_deploy.errors import BadInputError
from spos_deploy.runtime.registry import (
    DEFAULT_DEVICE,
    DEFAULT_ENGINE,
    DEVICES,
    ENGINES,
    parse_runtime,
    runtime_for,
    runtime_names,
)
from spos_deploy.space import DEFAULT_REPEATS, LAYOUTS, SPACES, SearchSpace

# ---- value checkers ------------------------------------------------------------------------------


def _number(kind: type, lo: float | None, hi: float | None, lo_open: bool = False) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{text} must be <= {hi:g}")
        return value

    check.__name__ = kind.__name__  # argparse names the type in its messages
    return check


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer within ``[lo, hi]`` (either bound may be open-ended)."""
    return _number(int, lo, hi)


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """A finite float within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    return _number(float, lo, hi, lo_open)


positive_int = int_range(1)
nonneg_int = int_range(0)
positive_float = float_range(0.0, lo_open=True)
nonneg_float = float_range(0.0)
fraction = float_range(0.0, 1.0)

MAX_THREADS = 256
"""Above this, a thread count is a typo rather than a machine (the largest CPUs have 256 threads)."""


def threads_type(text: str) -> int:
    return int_range(1, MAX_THREADS)(text)


threads_type.__name__ = "int"


def gpu_ids(values: Sequence[str] | None) -> list[int]:
    """``--gpus 0 1``, ``--gpus 0,1`` and mixtures, as a list of ids (empty: CPU)."""
    out: list[int] = []
    for v in values or []:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                gid = int(part)
            except ValueError:
                raise BadInputError(f"--gpus {' '.join(map(str, values))}: expected GPU ids like 0 1 or 0,1") from None
            if gid < 0:
                raise BadInputError(f"--gpus: {gid} is not a GPU id")
            out.append(gid)
    if len(set(out)) != len(out):
        raise BadInputError(f"--gpus {' '.join(map(str, values))}: an id is given twice")
    return out


def check_range(name: str, value: Sequence[float] | None) -> tuple[float, float] | None:
    """A ``LO HI`` pair, with ``0 <= LO <= HI``; ``None`` passes through."""
    if value is None:
        return None
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise BadInputError(f"{name} {lo:g} {hi:g}: LO is above HI")
    return lo, hi


def _range_type(text: str) -> float:
    return float_range(0.0)(text)


_range_type.__name__ = "float"

# ---- old spellings: hidden aliases ------------------------------------------------------------------

_ALIASES_USED: list[tuple[str, str]] = []
"""(old, new) spellings met while parsing, for :func:`take_aliases_used`."""

_ALIASED_CLASSES: dict[type, type] = {}


def _aliased_class(cls: type) -> type:
    """``cls`` (an argparse action class) that also records the use of one of its hidden aliases."""
    if cls not in _ALIASED_CLASSES:

        def __call__(self, parser, namespace, values, option_string=None):  # noqa: N807
            if option_string in self.hidden_aliases:
                shown = [s for s in self.option_strings if s not in self.hidden_aliases]
                _ALIASES_USED.append((option_string, max(shown, key=len)))
            return cls.__call__(self, parser, namespace, values, option_string)

        _ALIASED_CLASSES[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
    return _ALIASED_CLASSES[cls]


def add_alias(p: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str) -> argparse.Action:
    """Let ``old`` spell the option ``new`` of ``p`` for one more release: the same action and destination
    (so errors name both spellings), left out of ``--help`` by :class:`HelpFormatter`, its use recorded for
    the deprecation warning (:func:`take_aliases_used`)."""
    actions = p._option_string_actions
    if old in actions:
        raise ValueError(f"{old} already names an option")
    action = actions[new]
    actions[old] = action
    action.option_strings.append(old)
    action.hidden_aliases = (*getattr(action, "hidden_aliases", ()), old)  # type: ignore[attr-defined]
    if type(action) not in _ALIASED_CLASSES.values():
        action.__class__ = _aliased_class(type(action))
    return action


def take_aliases_used() -> list[tuple[str, str]]:
    """The (old, new) spellings met since the last call, each once, in order; forgets them."""
    used = list(dict.fromkeys(_ALIASES_USED))
    _ALIASES_USED.clear()
    return used


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, without the hidden aliases of :func:`add_alias` (usage already shows only an
    option's first spelling), and showing an option whose value is an old spelling only
    (``hidden_value``: ``--measure``, :func:`add_measure`) as the flag it now is."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        hidden = getattr(action, "hidden_aliases", ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(_without_value(action))

    def _format_actions_usage(self, actions: Any, groups: Any) -> str:
        return super()._format_actions_usage([_without_value(a) for a in actions], groups)


def _without_value(action: argparse.Action) -> argparse.Action:
    """``action`` as help shows it: a copy that takes no value where its value is hidden, else the action
    itself (so that argparse still finds it in its mutually exclusive groups)."""
    if not getattr(action, "hidden_value", False):
        return action
    shown = copy.copy(action)
    shown.nargs = 0
    return shown


def use_help_formatter(p: argparse.ArgumentParser) -> None:
    """Make ``p`` and all its sub-command parsers format their help with :class:`HelpFormatter`."""
    p.formatter_class = HelpFormatter
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_help_formatter(sub)


# ---- options -------------------------------------------------------------------------------------


def add_output(p: argparse.ArgumentParser, help: str, required: bool = True, metavar: str = "DIR") -> None:
    """``-o/--output`` (hidden alias ``--out``): where a command writes."""
    p.add_argument("-o", "--output", dest="output", required=required, metavar=metavar, help=help)
    add_alias(p, "--out", "--output")


FORCE_HELP = "replace an existing output: the new one is written beside it and takes its place only once complete"


def add_force(p: argparse.ArgumentParser, help: str = FORCE_HELP) -> None:
    """``--force``: replace an output that exists (a command refuses it otherwise); never with ``--resume``
    (refused by :func:`check_force`)."""
    p.add_argument("--force", action="store_true", help=help)


def check_force(args: argparse.Namespace) -> None:
    """``--force`` replaces an earlier output, ``--resume`` continues it: both at once is refused, so that a
    resumable run is never thrown away by a flag given in passing."""
    if getattr(args, "force", False) and getattr(args, "resume", False):
        raise BadInputError(
            "--force replaces the output, --resume continues it: pass one of them (nothing was written)"
        )


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=nonneg_int, default=default, help=f"random seed (default {default})")


def add_input_size(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--input-size N``: the input height and width (``None`` when not given)."""
    p.add_argument("--input-size", type=positive_int, metavar="N", help=help)


def add_params(p: argparse.ArgumentParser, help: str) -> None:
    """``--params FILE``: trained weights."""
    p.add_argument("--params", metavar="FILE", help=help)


def add_shuffle(p: argparse.ArgumentParser, default: str | None = None, help: str = "channel-shuffle form") -> None:
    """``--shuffle {reshape,conv}``: the channel-shuffle form of the deployed graph."""
    from spos_deploy.deploy.choices import SHUFFLE_FORMS

    suffix = f" (default {default})" if default is not None else ""
    p.add_argument("--shuffle", choices=list(SHUFFLE_FORMS), default=default, help=help + suffix)


def add_repeats(
    p: argparse.ArgumentParser, default: int, help: str, lo: int = 1, dest: str = "repeats"
) -> argparse.Action:
    """``--repeats N``: timed runs of a measurement (at least ``lo``)."""
    return p.add_argument(
        "--repeats", dest=dest, type=int_range(lo), default=default, metavar="N", help=f"{help} (default {default})"
    )


def add_sessions(p: argparse.ArgumentParser, default: int, help: str, lo: int = 1) -> None:
    """``--sessions N``: fresh sessions per network for the deployed latency (``lo`` 0: may be skipped)."""
    p.add_argument("--sessions", type=int_range(lo, 100), default=default, metavar="N", help=help)


def add_samples(p: argparse.ArgumentParser, default: int, help: str) -> None:
    """``--samples N``: random architectures."""
    p.add_argument("--samples", type=positive_int, default=default, metavar="N", help=f"{help} (default {default})")


def add_score_bits(p: argparse.ArgumentParser, dest: str = "score_bits", help: str = "") -> None:
    """``--score-bits {32,16,8}`` (hidden alias ``--bits``): the precision of the MicroNet counts and score."""
    p.add_argument(
        "--score-bits",
        dest=dest,
        type=int,
        choices=[32, 16, 8],
        default=32,
        help=(help or "precision of the MicroNet numbers") + " (default 32)",
    )
    add_alias(p, "--bits", "--score-bits")


def add_batch_size(p: argparse.ArgumentParser, help: str | None = None, default: int = 128) -> None:
    """``--batch-size N``: the minibatch of training or evaluation (``--batch`` is a measurement's batch)."""
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=default,
        metavar="N",
        help=(help or "batch") + f" (default {default})",
    )


def add_allow_table_mismatch(p: argparse.ArgumentParser, help: str = "use a latency table from other hardware") -> None:
    """``--allow-table-mismatch``: use a latency table whose fingerprint is not this machine's."""
    p.add_argument("--allow-table-mismatch", action="store_true", help=help)


def add_plot(p: argparse.ArgumentParser, help: str = "also write the result as a PNG plot") -> None:
    """``--plot PNG``: an optional picture of the result."""
    p.add_argument("--plot", metavar="PNG", help=help)


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` (also set by ``-q/--quiet``): no progress bar on stderr."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (also: -q)")


def add_resume(p: argparse.ArgumentParser, help: str = "continue an interrupted run from its last saved state") -> None:
    p.add_argument("--resume", action="store_true", help=help)


def add_reanchor(p: argparse.ArgumentParser) -> None:
    """``--no-reanchor``: use a latency table's predictions as built, without re-measuring its anchors."""
    p.add_argument(
        "--no-reanchor",
        dest="reanchor",
        action="store_false",
        help="do not re-measure the latency table's anchor networks to follow this machine's speed now",
    )


RAY_LOCAL = "local"
"""``--ray`` without an address (:data:`spos_deploy.cluster.LOCAL`)."""


def add_ray(p: argparse.ArgumentParser, help: str) -> None:
    """``--ray [ADDRESS]``: run the work on Ray, a local instance sized to this machine (no address) or the
    cluster at ``ADDRESS`` (``host:port``, ``ray://host:port`` or ``auto``); docs/distributed.md."""
    p.add_argument("--ray", nargs="?", const=RAY_LOCAL, default=None, metavar="ADDRESS", help=help)


def add_removed(p: argparse.ArgumentParser, flag: str, instead: str, nargs: str | None = None) -> None:
    """A removed option that still parses, only to say in one line what replaced it (exit 2)."""

    class Removed(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            raise BadInputError(f"{option_string} was removed: {instead}")

    p.add_argument(flag, action=Removed, nargs=nargs, help=argparse.SUPPRESS)


def add_gpus(p: argparse.ArgumentParser, help: str = "GPU ids, e.g. 0 1 or 0,1 (default: CPU)") -> None:
    """``--gpus``: read with :func:`gpu_ids`."""
    p.add_argument("--gpus", nargs="+", metavar="ID", default=None, help=help)


def add_threads(p: argparse.ArgumentParser, help: str = "intra-op threads (default: the runtime's own)") -> None:
    p.add_argument("--threads", type=threads_type, help=help)


def add_batch(p: argparse.ArgumentParser, default: int | None = 1, help: str = "batch size") -> None:
    suffix = f" (default {default})" if default is not None else ""
    p.add_argument("--batch", type=positive_int, default=default, help=help + suffix)


def add_ranges(p: argparse.ArgumentParser, kinds: Sequence[str] = ("flops", "params"), required: bool = False) -> None:
    """``--flops-range LO HI``, ``--params-range LO HI``, ``--latency-range LO_MS HI_MS``: read with
    :func:`check_range`."""
    metavars = {"flops": ("LO", "HI"), "params": ("LO", "HI"), "latency": ("LO_MS", "HI_MS")}
    units = {"flops": "FLOPs (paper convention)", "params": "parameters", "latency": "predicted latency in ms"}
    for kind in kinds:
        p.add_argument(
            f"--{kind}-range",
            type=_range_type,
            nargs=2,
            metavar=metavars[kind],
            required=required,
            help=f"only architectures with {units[kind]} in [LO, HI]",
        )


class TableAction(argparse.Action):
    """Stores the file a table option means: a path, or the name of a built or shipped table.

    Resolved while parsing (:func:`spos_deploy.tables.catalog.resolve_table`), so that every command reads
    the same file for the same argument, records its real path, and refuses an unknown name before any
    work, with one line naming the option and the folders searched (exit 2).
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from spos_deploy.tables.catalog import resolve_table

        try:
            path = resolve_table(values)
        except BadInputError as e:
            raise BadInputError(f"{option_string}: {e}") from None
        setattr(namespace, self.dest, str(path))


TABLE_HELP = "a path, or the name of a built or shipped table (spos-lut list)"


def add_tables(p: argparse.ArgumentParser, kinds: Sequence[str] = ("flops", "latency")) -> None:
    """``--flops-table``, ``--micronet-table``, ``--latency-table`` (hidden alias ``--lut``): each a path or a
    table name, resolved by :class:`TableAction`."""
    if "flops" in kinds:
        p.add_argument(
            "--flops-table",
            action=TableAction,
            metavar="TABLE",
            help=f"FLOPs/params table: {TABLE_HELP} (default: computed for the space)",
        )
    if "micronet" in kinds:
        p.add_argument(
            "--micronet-table",
            action=TableAction,
            metavar="TABLE",
            help=f"MicroNet table: {TABLE_HELP} (default: computed for the space)",
        )
    if "latency" in kinds:
        p.add_argument(
            "--latency-table",
            dest="latency_table",
            action=TableAction,
            metavar="TABLE",
            help=f"latency table of this machine: {TABLE_HELP}",
        )
        add_alias(p, "--lut", "--latency-table")


def add_data(p: argparse.ArgumentParser, train_default: str | None, val_default: str | None) -> None:
    """Training and validation data: ``--data``, ``--val-data``, ``--train-limit`` (hidden alias
    ``--data-limit``), ``--val-limit``."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=train_default,
        required=train_default is None,
        help="training images: fashion-mnist[:train|test], an image folder, a .rec or an .npz"
        + (f" (default {train_default})" if train_default else ""),
    )
    g.add_argument(
        "--val-data",
        default=val_default,
        help="validation images" + (f" (default {val_default})" if val_default else ""),
    )
    g.add_argument("--train-limit", type=positive_int, metavar="N", help="use the first N training images")
    add_alias(g, "--data-limit", "--train-limit")
    g.add_argument("--val-limit", type=positive_int, metavar="N", help="use the first N validation images")


def add_version(p: argparse.ArgumentParser) -> None:
    """``--version``: ``spos-deploy X.Y.Z`` on stdout, exit 0, on ``p`` and each of its sub-commands (added to
    every command's parser by :func:`spos_deploy.cli.common.run`, so that no command can lack it or spell it
    differently)."""
    from spos_deploy._version import __version__

    if not any("--version" in a.option_strings for a in p._actions):
        p.add_argument("--version", action="version", version=f"spos-deploy {__version__}", help="print the version")
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_version(sub)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--json``, ``-v/--verbose`` and ``-q/--quiet``: every command has them (``--quiet``: only warnings and
    errors on stderr, no progress bar; the results are printed as ever)."""
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (logs go to stderr)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="only warnings and errors on stderr, no progress bar (the results are still printed)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command draws its progress bars: not with ``--no-progress`` or ``--quiet``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


# ---- the search space ----------------------------------------------------------------------------

SPACE_KEYS = (
    "layout",
    "use_se",
    "last_conv_after_pooling",
    "input_size",
    "num_classes",
    "stage_repeats",
    "stage_out_channels",
    "stage_strides",
    "stem_stride",
    "channel_scales",
    "first_conv_channels",
    "last_conv_channels",
)
"""model.json keys of the search-space configuration: each has an option of the same name."""


def add_space_options(p: argparse.ArgumentParser) -> None:
    """The search-space configuration (defaults: OneShot, SE, last conv after pooling, 224)."""
    g = p.add_argument_group("search-space configuration (defaults: OneShot, SE, last conv after pooling, 224)")
    start = g.add_mutually_exclusive_group()
    start.add_argument("--from-model", metavar="MODEL", help="take the configuration of a model.json or built-in")
    start.add_argument(
        "--space", choices=sorted(SPACES), help="start from a built-in space: imagenet (default) or small (32 px)"
    )
    g.add_argument("--layout", choices=list(LAYOUTS))
    g.add_argument("--se", dest="use_se", action=argparse.BooleanOptionalAction, default=None, help="SE in stages 2-3")
    g.add_argument(
        "--lcap",
        dest="last_conv_after_pooling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="last conv after pooling (MobileNetV3 style)",
    )
    add_input_size(g)
    g.add_argument("--num-classes", type=positive_int)
    g.add_argument("--stage-repeats", type=positive_int, nargs="+")
    g.add_argument("--stage-out-channels", type=positive_int, nargs="+")
    g.add_argument("--stage-strides", type=int, choices=[1, 2], nargs="+", help="stride of each stage's first block")
    g.add_argument("--stem-stride", type=int, choices=[1, 2], help="stride of the stem conv (default 2)")
    g.add_argument("--channel-scales", type=positive_float, nargs="+")
    g.add_argument("--first-conv-channels", type=positive_int)
    g.add_argument("--last-conv-channels", type=positive_int)


def space_from_args(args: argparse.Namespace) -> SearchSpace:
    """The configuration asked for on the command line, validated exactly like a model.json."""
    from spos_deploy.model_spec import ModelSpec, load_spec, spec_from_dict

    base: dict = {}
    if getattr(args, "from_model", None):
        base = load_spec(args.from_model).to_json()
    elif getattr(args, "space", None):
        space = SPACES[args.space]
        n = space.num_positions
        base = ModelSpec(space, (0,) * n, (space.widest_choice,) * n).to_json()
    for key in SPACE_KEYS:
        v = getattr(args, key, None)
        if v is not None:
            base[key] = v
    n = sum(base.get("stage_repeats", DEFAULT_REPEATS))
    base["block_choices"] = [0] * n
    base["channel_choices"] = [len(base.get("channel_scales", range(10))) - 1] * n
    base.pop("name", None)
    base.pop("shuffle", None)
    return spec_from_dict(base, "configuration").space


# ---- from options to the library's config objects -------------------------------------------------------------


def config_from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """An instance of the dataclass ``cls`` whose fields take the parsed options of the same name.

    Options are spelled like the library's fields, so a command maps them once here instead of field by
    field; ``given`` sets the fields whose value is not an option's as parsed (renamed or converted).
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(given)
    return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **given)


# ---- deployment forms ---------------------------------------------------------------------------------------


def add_hswish(p: argparse.ArgumentParser) -> None:
    """``--hswish {mul,op}``: the activation form of a written ONNX model or OpenVINO IR (default: ``op`` for
    OpenVINO, where the one HardSwish op fuses into the convolution before it, ``mul`` elsewhere)."""
    from spos_deploy.deploy.choices import HSWISH_FORMS

    p.add_argument(
        "--hswish",
        choices=HSWISH_FORMS,
        help="h-swish as HardSigmoid(x)*x (mul) or one HardSwish op (op); default op for openvino, mul otherwise",
    )


def add_static_batch(p: argparse.ArgumentParser) -> None:
    """``--static-batch N``: an OpenVINO IR with its input shape fixed to batch ``N`` (default: dynamic)."""
    p.add_argument(
        "--static-batch",
        type=positive_int,
        metavar="N",
        help="fix the OpenVINO IR's input to batch N (OpenVINO folds the shape arithmetic; default: dynamic batch)",
    )


# ---- runtimes and measurement ----------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16", "int8")
OV_HINTS = ("latency", "throughput")
DEFAULT_THROUGHPUT_BATCHES = (8, 32)


class _Device(str):
    """``--device``'s value: the device's name (a ``str`` equal to it), remembering what set it (``origin``:
    None for the default, ``--device``, or the old spelling that implied it, such as ``--runtime ort-cuda``).

    An old spelling that names a device and a ``--device`` that says another are refused whatever their order
    on the command line; this is how each of the two options knows, while parsing, whether the other was given.
    """

    origin: str | None

    def __new__(cls, name: str, origin: str | None) -> _Device:
        value = super().__new__(cls, name)
        value.origin = origin
        return value

    def __reduce__(self) -> tuple[Any, ...]:  # pickled and copied as the plain name
        return (str, (str(self),))


def _said(origin: str, device: str) -> str:
    return f"--device {device}" if origin == "--device" else f"{origin} (--device {device})"


def _set_device(namespace: argparse.Namespace, device: str, origin: str) -> None:
    """Set ``--device`` from ``origin`` (``--device`` or an old spelling), refusing in one line a device that
    something else on the command line gave before."""
    have = getattr(namespace, "device", None)
    given = getattr(have, "origin", None)
    if have is not None and have != device and given not in (None, origin):
        raise BadInputError(f"{_said(origin, device)} contradicts {_said(given, have)}: give one of them")
    namespace.device = _Device(device, origin)


class _EngineChoices(tuple):
    """``--runtime``'s choices: the engines, all that ``--help`` and argparse's refusals list; the old
    latency-runtime spellings (:func:`spos_deploy.runtime.registry.parse_runtime`) are in them too, hidden."""

    def __contains__(self, value: object) -> bool:
        return tuple.__contains__(self, value) or value in runtime_names()


class _RuntimeAction(argparse.Action):
    """Stores the engine; an old latency-runtime spelling also sets the device it names, and is warned about."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        if tuple.__contains__(self.choices, values):  # an engine (or spos-bench's auto)
            setattr(namespace, self.dest, values)
            return
        engine, device = parse_runtime(values)
        old = f"{option_string} {values}"
        _set_device(namespace, device, old)
        setattr(namespace, self.dest, engine)
        _ALIASES_USED.append((old, f"{option_string} {engine} --device {device}"))


class _DeviceAction(argparse.Action):
    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        _set_device(namespace, values, "--device")


def add_runtime(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    default: str | None,
    help: str,
    device_help: str = "where it runs",
    auto: bool = False,
) -> None:
    """``--runtime {onnxruntime,openvino,mxnet}`` and ``--device {cpu,gpu}`` (default cpu): the one spelling of
    a runtime on every command. ``auto`` adds ``--runtime auto`` (spos-bench: chosen from the file);
    ``default`` None: not given unless asked. The old latency-runtime spellings (``ort-cpu``, ``ort-cuda``,
    ``openvino-cpu``, ``mxnet-cpu``, ``mxnet-gpu``) still parse for one release, as that engine and device,
    left out of ``--help``; a ``--device`` that contradicts one is refused in one line. A command that can
    only use some engines refuses the others in one line, so that every command lists the same names."""
    choices = _EngineChoices((*(("auto",) if auto else ()), *ENGINES))
    suffix = f" (default: {default})" if default is not None else ""
    p.add_argument("--runtime", choices=choices, default=default, action=_RuntimeAction, help=help + suffix)
    p.add_argument(
        "--device",
        choices=DEVICES,
        default=_Device(DEFAULT_DEVICE, None),
        action=_DeviceAction,
        help=f"{device_help} (default: {DEFAULT_DEVICE})",
    )


def device_given(args: argparse.Namespace) -> bool:
    """Whether ``--device`` (or an old spelling that names a device) was given rather than defaulted."""
    device = getattr(args, "device", None)
    return device is not None and getattr(device, "origin", "given") is not None


def latency_runtime(args: argparse.Namespace) -> str | None:
    """The latency runtime ``--runtime`` and ``--device`` select (its name, as tables record it), through
    :func:`spos_deploy.runtime.registry.runtime_for`; None when neither was given."""
    if args.runtime is None and not device_given(args):
        return None
    return runtime_for(args.runtime or DEFAULT_ENGINE, args.device or DEFAULT_DEVICE).name


class _MeasureAction(argparse.Action):
    """``--measure``, and its old spelling ``--measure cpu|gpu`` (the device: ``--device`` now)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        if values is not None:
            if values not in DEVICES:
                raise argparse.ArgumentError(
                    self, f"takes no value ({values!r}): it measures on --device; give the model before --measure"
                )
            old = f"{option_string} {values}"
            _set_device(namespace, values, old)
            _ALIASES_USED.append((old, f"{option_string} --device {values}"))
        setattr(namespace, self.dest, True)


def add_measure(p: argparse.ArgumentParser, help: str) -> None:
    """``--measure``: a flag (measure on ``--device``, see :func:`add_runtime`); ``--measure cpu|gpu``, what it
    was until this release, still parses for one release and is left out of ``--help``."""
    action = p.add_argument("--measure", nargs="?", default=False, action=_MeasureAction, help=help)
    action.hidden_value = True  # type: ignore[attr-defined]


def add_precision(p: argparse.ArgumentParser, help: str) -> None:
    """``--precision {fp32,bf16,int8}``: stated, never chosen silently (``None`` when not given)."""
    p.add_argument("--precision", choices=list(PRECISIONS), help=help)


def add_hint(p: argparse.ArgumentParser) -> None:
    """``--hint {latency,throughput}``: OpenVINO's performance hint (``None`` when not given)."""
    p.add_argument("--hint", choices=list(OV_HINTS), help="OpenVINO performance hint (default: latency; openvino only)")


def add_throughput(p: argparse.ArgumentParser) -> None:
    """``--throughput [B ...]``: also images/s at each batch; the flag alone means 8 and 32."""
    p.add_argument(
        "--throughput",
        nargs="*",
        type=positive_int,
        metavar="B",
        help="also report images/s at these batches (the flag alone: "
        + " and ".join(map(str, DEFAULT_THROUGHPUT_BATCHES))
        + ")",
    )


def throughput_batches(value: Sequence[int] | None) -> list[int]:
    """The batches of ``--throughput`` as parsed: none when absent, the defaults for the bare flag."""
    if value is None:
        return []
    return list(dict.fromkeys(value or DEFAULT_THROUGHPUT_BATCHES))


# ---- --target auto ----------------------------------------------------------------------------------------------

AUTO_TARGETS = ("auto",)
TARGET_TABLE_HELP = (
    "auto: the deployed form spos-export --target auto ships for this space here (decided once per space, "
    "threads and machine on a reference network, among the forms a latency table measures, and kept in the "
    "table folder), and its latency table (found, or built here)"
)
AUTO_RUNTIMES = ("onnxruntime", "openvino")
AUTO_ROUNDS = 5
AUTO_REPEATS = 20


TARGET_EXPORT_HELP = (
    "auto: build, check and time every runtime/precision/graph form that applies here and ship the "
    "fastest that passes its checks; --format openvino, --int8, --per-tensor, --shuffle, --hswish and "
    "--static-batch 1 narrow the candidates"
)


def add_target(p: argparse.ArgumentParser, help: str = TARGET_EXPORT_HELP) -> None:
    """``--target auto`` with its budget (``--auto-rounds``, ``--auto-repeats``) and ``--threads`` (added
    here only if the command has none): measure every deployed form here, ship the fastest verified one.
    ``spos-export`` ships it; ``spos-search`` and ``spos-lut build`` use the table of the form it ships."""
    g = p.add_argument_group("--target auto (measure every deployed form on this machine, ship the fastest verified)")
    g.add_argument("--target", choices=AUTO_TARGETS, help=help)
    g.add_argument(
        "--auto-runtimes",
        nargs="+",
        choices=AUTO_RUNTIMES,
        metavar="RUNTIME",
        help=f"auto: the runtimes whose forms are candidates ({', '.join(AUTO_RUNTIMES)}; default: every one "
        "installed here)",
    )
    g.add_argument(
        "--auto-rounds",
        type=positive_int,
        default=AUTO_ROUNDS,
        help=f"interleaved rounds over all candidates (default {AUTO_ROUNDS})",
    )
    g.add_argument(
        "--auto-repeats",
        type=positive_int,
        default=AUTO_REPEATS,
        help=f"timed calls per candidate in each round (default {AUTO_REPEATS})",
    )
    if not any("--threads" in a.option_strings for a in p._actions):
        g.add_argument(
            "--threads", type=threads_type, help="threads the candidates are measured with (default: usable cores)"
        )
