"""The SPOS search space: layouts, positions and the one mid-channel rule.

Everything here is pure Python so that counting, lookup tables and search logic can use it without
building a network. A :class:`SearchSpace` is the *configuration* a lookup table is made for; a
:class:`~spos_deploy.model_spec.ModelSpec` is one architecture inside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

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

    @property
    def main_in(self) -> int:
        """Channels entering the main branch (half the input after the split at stride 1)."""
        return self.in_channels // 2 if self.stride == 1 else self.in_channels

    @property
    def main_out(self) -> int:
        """Channels leaving the main branch; the project half fills the rest."""
        proj = self.in_channels // 2 if self.stride == 1 else self.in_channels
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
        size = self.input_size // 2
        c_in = self.first_conv_channels
        idx = 0
        for stage, (repeats, c_out) in enumerate(zip(self.stage_repeats, self.stage_out_channels)):
            for r in range(repeats):
                stride = 2 if r == 0 else 1
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
                    )
                )
                c_in, size, idx = c_out, out_size, idx + 1
        return out

    def mid(self, position: Position | int, channel_choice: int) -> int:
        pos = position if isinstance(position, Position) else self.positions()[position]
        return mid_channels(pos.out_channels, self.channel_scales[channel_choice])

    def to_config(self) -> dict[str, Any]:
        d = asdict(self)
        d["stage_repeats"] = list(self.stage_repeats)
        d["stage_out_channels"] = list(self.stage_out_channels)
        d["channel_scales"] = list(self.channel_scales)
        return d

    @classmethod
    def from_config(cls, d: dict[str, Any]) -> SearchSpace:
        d = dict(d)
        for key in ("stage_repeats", "stage_out_channels", "channel_scales"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def describe(self) -> str:
        """Short name used in table file names, e.g. ``OneShot_se_lcap_224``."""
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
