"""The default recipe of ``spos-train supernet``, one per built-in search space.

A supernet recipe that suits 224-px ImageNet (the seed project's: lr 0.2 after a one-epoch warm-up, label
smoothing, random crops, channel search from the first epoch) keeps the small-image supernet from learning
what it can in its 20-minute budget: every one of those choices measured worse at 32 px (docs/supernet.md).
So the options the recipes set have no parser default; they are filled from the recipe of the space the run
trains, and an option given on the command line always wins.
"""

from __future__ import annotations

from typing import Any

from spos_deploy.space import SPACES, SearchSpace

FULL_WIDTH = None
"""``cs_start_epoch`` of a recipe that never starts channel selection: every path at full width."""

SUPERNET_RECIPES: dict[str, dict[str, Any]] = {
    "imagenet": {
        "epochs": 5,
        "batch_size": 128,
        "lr": 0.2,
        "warmup_epochs": 1.0,
        "label_smoothing": 0.1,
        "augment": "crop-flip",
        "cs_start_epoch": 0,
    },
    "small": {
        "epochs": 13,
        "batch_size": 128,
        "lr": 0.3,
        "warmup_epochs": 0.5,
        "label_smoothing": 0.0,
        "augment": "none",
        "cs_start_epoch": FULL_WIDTH,
    },
}
"""Per built-in space; any other configuration (a custom one) trains with ImageNet's."""

RECIPE_KEYS = tuple(SUPERNET_RECIPES["imagenet"])


def recipe_name(space: SearchSpace) -> str:
    """The built-in space ``space`` is, or ``imagenet`` for a custom configuration."""
    return next((name for name, builtin in SPACES.items() if builtin == space), "imagenet")


def resolve_supernet_options(given: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The recipe's values of the options in ``given`` that are None (not given); the others as given.

    A full-width recipe's channel selection starts after the last epoch, so it never starts.
    """
    recipe = SUPERNET_RECIPES[recipe_name(space)]
    out = {k: recipe[k] if given.get(k) is None else given[k] for k in RECIPE_KEYS}
    if out["cs_start_epoch"] is FULL_WIDTH:
        out["cs_start_epoch"] = out["epochs"]
    return out
