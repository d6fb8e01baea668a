"""What the table builders share: the uniform networks that cover every position at once.

One uniform network per (block, channel) choice, its graph (or its exported model) split by owner
(``bNN``), gives that choice's entry at every position: a 20-position, 4-block, 10-scale space needs 40
networks, not 800. Pure Python (no MXNet), so the lookup-table modules stay importable without it.
"""

from __future__ import annotations

from collections.abc import Iterator

from tqdm import tqdm

from spos_deploy.model_spec import ModelSpec
from spos_deploy.space import Position, SearchSpace


def uniform_spec(
    space: SearchSpace, block: int, channel: int, shuffle: str = "reshape", name: str = "table"
) -> tuple[ModelSpec, list[Position]]:
    """The uniform network of one (block, channel) choice, and the positions where that channel choice exists.

    Where a scale gives no mid channels at a position (custom spaces), that position uses the widest choice;
    its entry stays invalid.
    """
    valid = [p for p in space.positions() if space.channel_valid(p, channel)]
    L = space.num_positions
    channels = tuple(space.fix_channels([channel] * L))
    return ModelSpec(space, (block,) * L, channels, name=name, shuffle=shuffle), valid


def uniform_networks(
    space: SearchSpace, desc: str, progress: bool = True
) -> Iterator[tuple[int, int, ModelSpec, list[Position]]]:
    """(block, channel, spec, valid positions) for each uniform network, with a progress bar."""
    jobs = [(b, c) for b in range(space.num_blocks) for c in range(space.num_scales)]
    for b, c in tqdm(jobs, desc=desc, unit="choice", disable=not progress):
        spec, valid = uniform_spec(space, b, c)
        yield b, c, spec, valid
