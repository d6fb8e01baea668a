"""The SPOS search space: layouts, positions and the one mid-channel rule.

Everything here is pure Python and numpy (no MXNet) so that counting, lookup tables and search logic can use
it without building a network. A :class:`SearchSpace` is the *configuration* a lookup table is made for; a
:class:`~spos_deploy.model_spec.ModelSpec` is one architecture inside it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

BLOCK_NAMES = ("SNB-3", "SNB-5", "SNB-7", "SXB-3")
"""Block choice ids 0..3: ShuffleNetV2 block 3x3/5x5/7x7 and ShuffleXception 3x3."""

BLOCK_KERNELS = (3, 5, 7, 3)
BLOCK_KINDS = ("snb", "snb", "snb", "sxb")

LAYOUTS: dict[str, tuple[int, ...]] = {
    "OneShot": (64, 160, 320, 640),
    "ShuffleNetV2+": (48, 128, 256, 512),
}
DEFAULT_SCALES = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
DEFAULT_REPEATS = (4, 4, 8, 4)


def part_key(index: int) -> str:
    """The name of searchable position ``index`` as a network part (``b05``), in graphs, tables and reports."""
    return f"b{index:02d}"


_PART_PREFIX = re.compile(r"^b(\d+)_")


def owner(name: str) -> str:
    """Which part of a network a graph op (by its name) belongs to: ``stem``, ``head``, ``bNN`` or ``other``.

    Parts name their ops ``stem_...``, ``head_...`` and ``bNN_...`` (:func:`part_key` plus ``_``).
    """
    m = _PART_PREFIX.match(name)
    if m:
        return part_key(int(m.group(1)))
    if name.startswith("stem_"):
        return "stem"
    if name.startswith("head_"):
        return "head"
    return "other"


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round *up* to a multiple of ``divisor`` (used for SE widths and the V2+ last conv only)."""
    return int(math.ceil(x / divisor) * divisor)


def mid_channels(c_out: int, scale: float) -> int:
    """The single mid-channel rule used everywhere: ``int((C_out // 2) * scale)``.

    The seed project rounded to a multiple of 8 in the supernet only, so its supernet paths were not
    the subnets it trained; here supernet masks, fixed subnets and tables all use this function.
    """
    return int((c_out // 2) * scale)


def se_channels(c: int) -> int:
    """Squeeze width of an SE module on ``c`` channels (ratio 4, rounded up to a multiple of 8)."""
    return make_divisible(c // 4)


@dataclass(frozen=True)
class Position:
    """One searchable position: its stage, stride, channel counts and spatial sizes."""

    index: int
    stage: int
    stride: int
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    use_se: bool
    act: str  # "relu" or "hswish"
    reduce: bool = False  # first block of a stage: two branches on the whole input, no channel split

    @property
    def main_in(self) -> int:
        """Channels entering the main branch (half the input after the channel split)."""
        return self.in_channels if self.reduce else self.in_channels // 2

    @property
    def main_out(self) -> int:
        """Channels leaving the main branch; the projection (or the split-off half) fills the rest."""
        proj = self.in_channels if self.reduce else self.in_channels // 2
        return self.out_channels - proj


@dataclass(frozen=True)
class SearchSpace:
    """A search-space configuration: layout x SE x last-conv variant x input size (and custom sizes).

    ``to_config()`` is what lookup tables and exports record and compare.
    """

    layout: str = "OneShot"
    use_se: bool = True
    last_conv_after_pooling: bool = True
    input_size: int = 224
    num_classes: int = 1000
    stage_repeats: tuple[int, ...] = DEFAULT_REPEATS
    stage_out_channels: tuple[int, ...] = field(default_factory=lambda: LAYOUTS["OneShot"])
    channel_scales: tuple[float, ...] = DEFAULT_SCALES
    first_conv_channels: int = 16
    last_conv_channels: int = 1024
    stem_stride: int = 2
    stage_strides: tuple[int, ...] | None = None  # None: every stage starts with stride 2

    def __post_init__(self) -> None:
        # One spelling per geometry, so equal spaces compare (and hash, and name their tables) equal.
        if self.stage_strides is not None:
            strides = tuple(int(v) for v in self.stage_strides)
            object.__setattr__(self, "stage_strides", None if all(v == 2 for v in strides) else strides)

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride of each stage's first block."""
        return self.stage_strides if self.stage_strides is not None else (2,) * len(self.stage_repeats)

    @property
    def total_stride(self) -> int:
        """Input size / last feature-map size; the input size must be a multiple of it."""
        return self.stem_stride * math.prod(self.strides)

    # ---- derived --------------------------------------------------------------------------
    @property
    def num_positions(self) -> int:
        return sum(self.stage_repeats)

    @property
    def num_blocks(self) -> int:
        return len(BLOCK_NAMES)

    @property
    def num_scales(self) -> int:
        return len(self.channel_scales)

    @property
    def last_conv_variant(self) -> str:
        """``lcap`` (MobileNetV3 style), ``v2plus`` (ShuffleNetV2+ style) or ``original``."""
        if self.last_conv_after_pooling:
            return "lcap"
        return "v2plus" if self.use_se else "original"

    def stage_act(self, stage: int) -> str:
        """Activation of a stage: ReLU everywhere without SE; with SE, hard-swish from stage 1 on."""
        return "hswish" if (self.use_se and stage >= 1) else "relu"

    @property
    def stem_act(self) -> str:
        return "hswish" if self.use_se else "relu"

    def positions(self) -> list[Position]:
        out: list[Position] = []
        size = self.input_size // self.stem_stride
        c_in = self.first_conv_channels
        idx = 0
        for stage, (repeats, c_out, first_stride) in enumerate(
            zip(self.stage_repeats, self.stage_out_channels, self.strides)
        ):
            for r in range(repeats):
                stride = first_stride if r == 0 else 1
                out_size = size // stride
                out.append(
                    Position(
                        index=idx,
                        stage=stage,
                        stride=stride,
                        in_channels=c_in,
                        out_channels=c_out,
                        in_size=size,
                        out_size=out_size,
                        use_se=self.use_se and stage >= 2,
                        act=self.stage_act(stage),
                        reduce=r == 0,
                    )
                )
                c_in, size, idx = c_out, out_size, idx + 1
        return out

    def mid(self, position: Position | int, channel_choice: int) -> int:
        pos = position if isinstance(position, Position) else self.positions()[position]
        return mid_channels(pos.out_channels, self.channel_scales[channel_choice])

    # ---- channel choices -------------------------------------------------------------------------
    @property
    def widest_choice(self) -> int:
        """The channel-choice id of the largest scale (the supernet's built width)."""
        return max(range(self.num_scales), key=lambda c: self.channel_scales[c])

    def channel_valid(self, position: Position | int, channel_choice: int) -> bool:
        """A channel choice exists at a position when it leaves at least one mid channel."""
        return self.mid(position, channel_choice) >= 1

    def valid_channels(self) -> list[list[bool]]:
        """``[position][channel choice]``: which channel choices exist (custom spaces can lack narrow ones)."""
        return [[self.channel_valid(p, c) for c in range(self.num_scales)] for p in self.positions()]

    def fix_channels(self, channels: Any) -> Any:
        """``channels`` with every choice a position lacks replaced by the widest choice: one architecture
        (``[L]``) as a list of ints, or many (``[N, L]``, vectorised) as an int array."""
        c = np.asarray(channels, dtype=np.int64)
        valid = np.array(self.valid_channels(), bool)
        fixed = np.where(valid[np.arange(c.shape[-1]), c], c, self.widest_choice)
        return fixed.tolist() if c.ndim == 1 else fixed

    def to_config(self) -> dict[str, Any]:
        """The configuration as JSON; the geometry keys only where they differ from the 224 px default,
        so tables and exports made before those keys existed keep their exact configuration."""
        d = asdict(self)
        d["stage_repeats"] = list(self.stage_repeats)
        d["stage_out_channels"] = list(self.stage_out_channels)
        d["channel_scales"] = list(self.channel_scales)
        if self.stem_stride == 2:
            del d["stem_stride"]
        if self.stage_strides is None:
            del d["stage_strides"]
        else:
            d["stage_strides"] = list(self.stage_strides)
        return d

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> SearchSpace:
        d = dict(d)
        for key in ("stage_repeats", "stage_out_channels", "channel_scales", "stage_strides"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def describe(self) -> str:
        """Short name used in table file names, e.g. ``OneShot_se_lcap_224``."""
        for name, builtin in SPACES.items():
            if self == builtin and name != "imagenet":
                return f"{name}_{self.input_size}_c{self.num_classes}"
        parts = [self.layout.replace("+", "plus"), "se" if self.use_se else "nose", self.last_conv_variant]
        parts.append(str(self.input_size))
        if self.num_classes != 1000:
            parts.append(f"c{self.num_classes}")
        default = SearchSpace(layout=self.layout, stage_out_channels=LAYOUTS.get(self.layout, self.stage_out_channels))
        custom = (
            self.stage_repeats != default.stage_repeats
            or self.stage_out_channels != default.stage_out_channels
            or self.channel_scales != default.channel_scales
            or self.first_conv_channels != default.first_conv_channels
            or self.last_conv_channels != default.last_conv_channels
            or self.stem_stride != default.stem_stride
            or self.stage_strides != default.stage_strides
        )
        if custom:
            import hashlib
            import json

            digest = hashlib.sha1(json.dumps(self.to_config(), sort_keys=True).encode()).hexdigest()[:8]
            parts.append(f"custom{digest}")
        return "_".join(parts)


def space_for_layout(layout: str, **kwargs: Any) -> SearchSpace:
    """The default space of a layout, with the layout's stage channels filled in."""
    return SearchSpace(layout=layout, stage_out_channels=LAYOUTS[layout], **kwargs)


SMALL_SPACE = SearchSpace(
    layout="OneShot",
    use_se=False,
    last_conv_after_pooling=False,
    input_size=32,
    num_classes=10,
    stage_repeats=(1, 1, 2, 1),
    stage_out_channels=(32, 64, 128, 256),
    first_conv_channels=16,
    last_conv_channels=512,
    stem_stride=2,
    stage_strides=(1, 2, 2, 1),
)
"""The small-image space (28-32 px inputs, e.g. Fashion-MNIST padded to 32): feature maps 16-16-8-4-4,
5 positions, no SE, last conv before pooling.

At 32 px the 224-px geometry leaves the last stages at 2x2 and 1x1, where every path's channels mean
something different and a shared head cannot serve them all; each of these choices was measured
(docs/supernet.md)."""

SPACES: dict[str, SearchSpace] = {"imagenet": SearchSpace(), "small": SMALL_SPACE}
"""Built-in search spaces by name (``--space NAME`` in every command that takes a configuration)."""
