"""Training and validation batches with per-dataset augmentation, deterministic and resumable.

Images are loaded with :mod:`spos_deploy.data.images` (Fashion-MNIST from the Debian package, MXNet RecordIO,
image folders, .npz). Each epoch's order and each batch's augmentation come from a generator seeded by
(seed, epoch, step), so a run resumed at step k sees exactly the batches an uninterrupted run would.

Augmentation: Fashion-MNIST and other small images: random crop from a 4-pixel zero-padded image and a
horizontal flip. ImageNet-style sources (RecordIO, folders): loaded at 1/0.875 of the input size, random
crop of the input size and a horizontal flip; validation uses the centre crop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from spos_deploy.data.images import LabelledImages, centre_crop, load_images
from spos_deploy.errors import BadInputError

SMALL_PAD = 4
AUGMENTATIONS = ("crop-flip", "flip", "none")  # what --augment takes: random crop and flip, flip only, nothing


@dataclass
class Dataset:
    images: np.ndarray  # (N, 3, H, W) normalised; H >= input_size (crop margin for large-image sources)
    labels: np.ndarray
    input_size: int
    source: str
    small: bool  # small-image augmentation (pad + crop) instead of crop from a larger image
    augment: str = "crop-flip"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1


def load_dataset(
    ref: str, input_size: int, train: bool, limit: int | None = None, augment: str = "crop-flip"
) -> Dataset:
    """Load a labelled dataset for training (with crop margin) or validation (centre crop)."""
    if augment not in AUGMENTATIONS:
        raise BadInputError(f"--augment {augment}: use one of {', '.join(AUGMENTATIONS)}")
    small = ref.startswith("fashion-mnist") or input_size <= 64
    if ref.startswith("fashion-mnist") and ":" not in ref:
        ref = f"fashion-mnist:{'train' if train else 'test'}"
    size = input_size if (small or not train) else int(np.ceil(input_size / 0.875))
    data: LabelledImages = load_images(ref, size, limit=limit)
    if data.labels is None:
        raise BadInputError(f"{ref}: training needs labelled images (class folders, .rec labels, npz labels)")
    if len(data) == 0:
        raise BadInputError(f"{ref}: no images")
    return Dataset(data.images, data.labels.astype(np.int64), input_size, data.source, small, augment)


def _augment(
    batch: np.ndarray, size: int, small: bool, rng: np.random.Generator, augment: str = "crop-flip"
) -> np.ndarray:
    n = len(batch)
    if augment != "crop-flip":  # no random crop: the centre (the whole image for small sources)
        out = centre_crop(batch, size)
        if augment == "flip":
            flip = rng.random(n) < 0.5
            out = np.where(flip[:, None, None, None], out[..., ::-1], out)
        return np.ascontiguousarray(out, dtype=np.float32)
    if small:
        padded = np.pad(batch, ((0, 0), (0, 0), (SMALL_PAD, SMALL_PAD), (SMALL_PAD, SMALL_PAD)))
        margin = 2 * SMALL_PAD + batch.shape[2] - size
    else:
        padded = batch
        margin = batch.shape[2] - size
    ys = rng.integers(0, margin + 1, n)
    xs = rng.integers(0, margin + 1, n)
    flip = rng.random(n) < 0.5
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        crop = padded[i, :, ys[i] : ys[i] + size, xs[i] : xs[i] + size]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)  # the last partial batch is dropped: constant batch shapes for hybridized graphs


def train_batches(
    ds: Dataset, batch_size: int, epoch: int, seed: int, start_step: int = 0, shard: int = 0, num_shards: int = 1
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(step, images, labels) of one epoch from ``start_step`` on; each worker of a sharded run sees its share."""
    order = np.random.default_rng([seed, epoch]).permutation(len(ds))[shard::num_shards]
    for step in range(start_step, steps_per_epoch(len(order), batch_size)):
        idx = order[step * batch_size : (step + 1) * batch_size]
        rng = np.random.default_rng([seed, epoch, step, shard])
        yield step, _augment(ds.images[idx], ds.input_size, ds.small, rng, ds.augment), ds.labels[idx]


def eval_batches(ds: Dataset, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(0, len(ds), batch_size):
        yield centre_crop(ds.images[i : i + batch_size], ds.input_size), ds.labels[i : i + batch_size]
