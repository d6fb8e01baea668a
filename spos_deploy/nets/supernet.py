"""The supernet: all four choice blocks at every position, with channel selection by masks.

Each choice block is built at its widest mid width (the largest scale, by the same
``int((C_out // 2) * scale)`` rule as fixed subnets) and hybridizes on its own; a path picks one
block per position and a mask per position. :func:`extract_subnet` copies a path's weights into the
equivalent fixed subnet (leading slices of the wide weights), which then computes the same outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import mxnet as mx
import numpy as np
from mxnet.gluon import Block, nn

from spos_deploy.model_spec import ModelSpec
from spos_deploy.nets.blocks import ChoiceBlock
from spos_deploy.nets.network import Head, SposNet, Stem, initialize_spos, position_prefix
from spos_deploy.space import BLOCK_NAMES, SearchSpace


class SposSupernet(Block):
    """Supernet over a :class:`SearchSpace`. ``forward(x, blocks, channels)`` runs one path."""

    def __init__(
        self, space: SearchSpace, shuffle: str = "reshape", mask_mode: str = "bn", crop: bool = True, **kwargs
    ):
        """``mask_mode``/``crop``: the fast training forms (default) or the plain ones (for comparisons)."""
        kwargs.setdefault("prefix", "")
        super().__init__(**kwargs)
        self.space = space
        self.shuffle = shuffle
        self.positions = space.positions()
        self.max_mids = [space.mid(p, space.widest_choice) for p in self.positions]
        with self.name_scope():
            self.stem = Stem(space, prefix="stem_")
            self.choices = nn.Sequential(prefix="")
            with self.choices.name_scope():
                for pos, m in zip(self.positions, self.max_mids):
                    row = nn.HybridSequential(prefix=f"{position_prefix(pos.index)}")
                    with row.name_scope():
                        for b in range(len(BLOCK_NAMES)):
                            row.add(
                                ChoiceBlock(
                                    pos, b, m, shuffle, masked=True, crop=crop, mask_mode=mask_mode, prefix=f"c{b}_"
                                )
                            )
                    self.choices.add(row)
            self.head = Head(space, prefix="head_")
        self._masks: dict[tuple[int, int, str], mx.nd.NDArray] = {}

    def mask(self, position: int, channel_choice: int, ctx: mx.Context) -> mx.nd.NDArray:
        """0/1 mask (max_mid,) with the chosen number of leading channels on (cached)."""
        key = (position, channel_choice, str(ctx))
        if key not in self._masks:
            m = np.zeros(self.max_mids[position], dtype=np.float32)
            m[: self.space.mid(self.positions[position], channel_choice)] = 1
            self._masks[key] = mx.nd.array(m, ctx=ctx)
        return self._masks[key]

    def choice_block(self, position: int, block_choice: int) -> ChoiceBlock:
        return self.choices[position][block_choice]

    def hybridize_blocks(self, active: bool = True, **kwargs) -> None:
        """Hybridize stem, head and every choice block: a path is then a chain of static graphs."""
        self.stem.hybridize(active, **kwargs)
        self.head.hybridize(active, **kwargs)
        for row in self.choices:
            for block in row:
                block.hybridize(active, **kwargs)

    def forward(self, x, blocks: Sequence[int], channels: Sequence[int]):
        x = self.stem(x)
        ctx = x.context
        for i, (b, c) in enumerate(zip(blocks, channels)):
            x = self.choice_block(i, int(b))(x, self.mask(i, int(c), ctx))
        return self.head(x)


def build_supernet(
    space: SearchSpace, shuffle: str = "reshape", seed: int | None = 0, ctx=None, **kwargs
) -> SposSupernet:
    net = SposSupernet(space, shuffle, **kwargs)
    initialize_spos(net, seed=seed, ctx=ctx)
    return net


def _copy_sliced(src: dict[str, mx.gluon.Parameter], dst: dict[str, mx.gluon.Parameter]) -> None:
    for key, p_dst in dst.items():
        p_src = src[key]
        shape = p_dst.shape
        data = p_src.data().asnumpy()
        sl = tuple(slice(0, s) for s in shape)
        p_dst.set_data(mx.nd.array(data[sl]))


def extract_subnet(supernet: SposSupernet, spec: ModelSpec, ctx: mx.Context | None = None) -> SposNet:
    """The fixed subnet of ``spec`` carrying the supernet path's weights (BN statistics included).

    The subnet uses the supernet's shuffle form; :mod:`spos_deploy.deploy.transforms` converts it.
    """
    if spec.space != supernet.space:
        raise ValueError("the architecture belongs to another search space than the supernet")
    net = SposNet(spec.with_(shuffle=supernet.shuffle))
    net.initialize(ctx=ctx)
    _copy_sliced(supernet.stem._collect_params_with_prefix(), net.stem._collect_params_with_prefix())
    _copy_sliced(supernet.head._collect_params_with_prefix(), net.head._collect_params_with_prefix())
    for i, b in enumerate(spec.block_choices):
        _copy_sliced(
            supernet.choice_block(i, b)._collect_params_with_prefix(),
            net.features[i]._collect_params_with_prefix(),
        )
    return net
