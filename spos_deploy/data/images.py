"""Real image data for calibration, evaluation and training, read offline.

Every loader returns :class:`LabelledImages`: float32 NCHW arrays that are already normalised, so int8
calibration, accuracy checks and training all see exactly the same preprocessing. Sources:

* ``imagenet-samples``: the 20 real ImageNet validation JPEGs shipped inside the PyPI package foolbox 3.3.4
  (a declared dependency, never imported: we only read its ``data/`` folder);
* an image folder (``root/CLASS/*.jpg`` or a flat folder), an MXNet RecordIO ``.rec`` (what ``im2rec`` makes
  from real ImageNet) or an ``.npz`` of arrays;
* ``fashion-mnist[:train|test]``: the Debian package ``dataset-fashion-mnist`` (IDX files, gzip + numpy).

Bad input raises :class:`BadInputError` with one line naming the file and the problem.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import re
import struct
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from spos_deploy.errors import BadInputError, short_message

IMAGENET_MEAN = (123.68, 116.779, 103.939)  # RGB, 0-255 scale
IMAGENET_STD = (58.393, 57.12, 57.375)  # RGB, 0-255 scale
FASHION_MNIST_MEAN = 0.2860  # on the 0..1 scale, over the training set
FASHION_MNIST_STD = 0.3530
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_INV_STD = (1.0 / np.asarray(IMAGENET_STD, dtype=np.float32)).reshape(3, 1, 1)
_IMAGENET_SAMPLE = re.compile(r"^imagenet_(\d+)_(\d+)\.jpg$")
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_FASHION_SIDE = 28


@dataclass
class LabelledImages:
    """Preprocessed images and their labels: the one shape every consumer (calibration, eval, training) takes."""

    images: np.ndarray  # float32 (N, 3, H, W), already normalised (x - mean) / std
    labels: np.ndarray | None  # int64 (N,); None when the source has no labels
    source: str  # human-readable description, for messages and reports

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise BadInputError(f"{self.source}: images must be (N, 3, H, W), got shape {self.images.shape}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise BadInputError(f"{self.source}: {self.images.shape[0]} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def check_labels(self, num_classes: int, where: str, flag: str | None = None) -> None:
        """Refuse labels that cannot be classes of a ``num_classes``-way model: accuracy against them would
        be a silent 0."""
        if self.labels is None or len(self.labels) == 0:
            return
        bad = self.labels[(self.labels < 0) | (self.labels >= num_classes)]
        if len(bad):
            prefix = f"{flag} {where}" if flag else where
            raise BadInputError(
                f"{prefix}: label {int(bad[0])} is outside 0..{num_classes - 1} (the model has {num_classes} "
                f"classes; {len(bad)} of {len(self.labels)} labels are out of range)"
            )

    def subset(self, n: int) -> LabelledImages:
        """The first ``n`` images (copied, so a small calibration set does not pin a large array in memory)."""
        _check_limit(n, self.source)
        labels = None if self.labels is None else self.labels[:n].copy()
        return LabelledImages(self.images[:n].copy(), labels, self.source)


def _check_limit(limit: int | None, where: str | os.PathLike[str]) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit <= 0):
        raise BadInputError(f"{where}: limit must be a positive integer, got {limit!r}")


def _check_size(input_size: int, where: str | os.PathLike[str]) -> None:
    if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer) or input_size <= 0:
        raise BadInputError(f"{where}: input_size must be a positive integer, got {input_size!r}")


def _normalise_hwc(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) with the ImageNet mean/std."""
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    chw -= _MEAN
    chw *= _INV_STD
    return chw


def centre_crop(a: np.ndarray, size: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """The central ``size`` x ``size`` window of ``a`` along ``axes`` (height, width): a view, not a copy.

    The one centre crop of the toolkit (evaluation transform, validation batches), so an image is cut at
    the same offset, ``(dim - size) // 2``, wherever it is cropped.
    """
    index: list[slice] = [slice(None)] * a.ndim
    for axis in axes:
        dim = a.shape[axis]
        if dim < size:
            raise BadInputError(f"centre crop: dimension {dim} is smaller than the crop {size}")
        off = (dim - size) // 2
        index[axis] = slice(off, off + size)
    return a[tuple(index)]


def _preprocess_pil(img: Image.Image, input_size: int, crop_ratio: float) -> np.ndarray:
    """Resize the shorter side to ``ceil(input_size / crop_ratio)``, center-crop, normalise (the eval transform)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    resize = int(math.ceil(input_size / crop_ratio))
    w, h = img.size
    if w <= h:
        new_w, new_h = resize, max(resize, int(round(h * resize / w)))
    else:
        new_w, new_h = max(resize, int(round(w * resize / h))), resize
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    return _normalise_hwc(centre_crop(np.asarray(img, dtype=np.uint8), input_size, axes=(0, 1)))


def preprocess(img: np.ndarray, input_size: int, crop_ratio: float = 0.875) -> np.ndarray:
    """One uint8 image, (H, W, 3) RGB or (H, W) grey, to a normalised float32 (3, input_size, input_size).

    The standard ImageNet eval transform: bilinear resize of the shorter side to
    ``ceil(input_size / crop_ratio)`` (256 for 224), center crop, grey replicated to 3 channels, then
    ``(x - IMAGENET_MEAN) / IMAGENET_STD``. Why one function: calibration statistics are only valid if they
    see the same transform as evaluation.
    """
    _check_size(input_size, "preprocess")
    if not 0.0 < crop_ratio <= 1.0:
        raise BadInputError(f"preprocess: crop_ratio must be in (0, 1], got {crop_ratio!r}")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise BadInputError(
            f"preprocess: expected a uint8 (H, W, 3) RGB or (H, W) grey image, got {arr.dtype} {arr.shape}"
        )
    if min(arr.shape[:2]) == 0:
        raise BadInputError(f"preprocess: empty image of shape {arr.shape}")
    pil = Image.fromarray(np.ascontiguousarray(arr), mode="L" if arr.ndim == 2 else "RGB")
    return _preprocess_pil(pil, input_size, crop_ratio)


def _decode_file(path: Path, input_size: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            return _preprocess_pil(img, input_size, 0.875)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInputError(f"{path}: unreadable or corrupt image ({short_message(exc)})") from exc


def _stack(arrays: list[np.ndarray], input_size: int) -> np.ndarray:
    out = np.empty((len(arrays), 3, input_size, input_size), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def _decode_files(files: Sequence[Path], input_size: int) -> np.ndarray:
    out = np.empty((len(files), 3, input_size, input_size), dtype=np.float32)
    for i, f in enumerate(files):
        out[i] = _decode_file(f, input_size)
    return out


def _foolbox_data_dir() -> Path:
    spec = importlib.util.find_spec("foolbox")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(
            "imagenet-samples: the package foolbox (a dependency of spos-deploy) is missing; "
            "run `pip install foolbox==3.3.4`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def imagenet_samples(input_size: int = 224) -> LabelledImages:
    """The 20 real ImageNet validation JPEGs that foolbox 3.3.4 ships, labels (0-999) from the file names.

    A small, installable, real-distribution set: enough to sanity-check accuracy and int8 calibration
    without access to ImageNet itself. Sorted by file name.
    """
    _check_size(input_size, "imagenet-samples")
    folder = _foolbox_data_dir()
    try:
        names = sorted(n for n in os.listdir(folder) if _IMAGENET_SAMPLE.match(n))
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot list the foolbox sample images ({exc.strerror})") from exc
    if not names:
        raise BadInputError(f"{folder}: no imagenet_XX_LABEL.jpg files (pip install --force-reinstall foolbox==3.3.4)")
    labels = np.asarray([int(_IMAGENET_SAMPLE.match(n).group(2)) for n in names], dtype=np.int64)
    images = _decode_files([folder / n for n in names], input_size)
    return LabelledImages(images, labels, f"imagenet samples ({len(names)} JPEGs)")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def load_image_folder(path: str | os.PathLike[str], input_size: int, limit: int | None = None) -> LabelledImages:
    """Images under ``path``: a tree ``root/CLASS/*.jpg|jpeg|png`` or a flat folder of images.

    In a tree the label is the index of the class folder in sorted order (the ImageFolder convention, so
    folders named by synset id sort to the usual 0-999); a flat folder has no labels. Images are taken in
    sorted (class, file name) order; ``limit`` keeps the first ``limit`` of them.
    """
    root = Path(path)
    _check_limit(limit, root)
    _check_size(input_size, root)
    if not root.exists():
        raise BadInputError(f"{root}: no such folder")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder")
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
        classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
        if classes:
            files: list[Path] = []
            labels: list[int] = []
            for index, cls in enumerate(classes):
                found = sorted((p for p in cls.iterdir() if _is_image(p)), key=lambda p: p.name)
                files += found
                labels += [index] * len(found)
        else:
            files = [p for p in entries if _is_image(p)]
    except OSError as exc:
        raise BadInputError(f"{exc.filename or root}: cannot list folder ({exc.strerror})") from exc
    if not files:
        raise BadInputError(f"{root}: no images (.jpg, .jpeg, .png) found")
    n = len(files) if limit is None else min(limit, len(files))
    images = _decode_files(files[:n], input_size)
    if classes:
        return LabelledImages(
            images,
            np.asarray(labels[:n], dtype=np.int64),
            f"image folder {root} ({n} images, {len(classes)} classes)",
        )
    return LabelledImages(images, None, f"image folder {root} ({n} images, unlabelled)")


def _decode_record(record: bytes | None, where: str, rec: Path, input_size: int) -> tuple[np.ndarray, int]:
    """One packed record (``IRHeader`` + encoded image) to a preprocessed image and its label."""
    import mxnet as mx

    if record is None:
        raise BadInputError(f"{rec}: truncated or corrupt RecordIO file (nothing at {where})")
    try:
        header, bgr = mx.recordio.unpack_img(record)
    except Exception as exc:  # struct.error or cv2.error on a damaged record
        raise BadInputError(f"{rec}: {where} is corrupt ({type(exc).__name__})") from exc
    if bgr is None or bgr.ndim not in (2, 3) or bgr.size == 0:
        raise BadInputError(f"{rec}: {where} does not decode to an image")
    if bgr.ndim == 3:
        bgr = bgr[:, :, 2::-1]  # cv2 decodes to BGR(A); keep RGB
    label = np.asarray(header.label).reshape(-1)
    if label.size == 0:
        raise BadInputError(f"{rec}: {where} has no label")
    return preprocess(np.ascontiguousarray(bgr), input_size), int(label[0])


def _records(rec: Path, idx: Path, max_n: float) -> Iterator[tuple[bytes | None, str]]:
    """(record, where) pairs: in the index's order when ``idx`` exists, else sequentially to the end."""
    import mxnet as mx

    if idx.is_file():
        reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
        try:
            for n, key in enumerate(reader.keys):
                if n >= max_n:
                    break
                yield reader.read_idx(key), f"index key {key}"
        finally:
            reader.close()
        return
    reader = mx.recordio.MXRecordIO(str(rec), "r")
    try:
        n = 0
        while n < max_n:
            record = reader.read()
            if record is None:
                break
            yield record, f"record {n}"
            n += 1
    finally:
        reader.close()


def load_recordio(path: str | os.PathLike[str], input_size: int, limit: int | None = None) -> LabelledImages:
    """An MXNet RecordIO ``.rec`` of encoded images (``im2rec`` / ``mx.recordio.pack_img``), label from the header.

    The usual way real ImageNet is stored for MXNet. With ``NAME.idx`` beside it, records are read in the
    index's order through ``MXIndexedRecordIO``; without, sequentially. ``limit`` keeps the first records.
    """
    import mxnet as mx  # deferred: importing mxnet costs about a second, and only this loader needs it

    rec = Path(path)
    _check_limit(limit, rec)
    _check_size(input_size, rec)
    if not rec.is_file():
        raise BadInputError(f"{rec}: no such file")
    idx = rec.with_suffix(".idx")
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    try:
        for record, where in _records(rec, idx, math.inf if limit is None else limit):
            image, label = _decode_record(record, where, rec, input_size)
            arrays.append(image)
            labels.append(label)
    except BadInputError:
        raise
    except (mx.base.MXNetError, ValueError, OSError) as exc:
        where = idx if isinstance(exc, ValueError) else rec
        raise BadInputError(f"{where}: truncated or corrupt RecordIO data (after {len(arrays)} records)") from exc
    if not arrays:
        raise BadInputError(f"{rec}: no records")
    return LabelledImages(
        _stack(arrays, input_size),
        np.asarray(labels, dtype=np.int64),
        f"recordio {rec} ({len(arrays)} images{', indexed' if idx.is_file() else ''})",
    )


def _first_key(keys: Sequence[str], names: Sequence[str]) -> str | None:
    return next((k for k in names if k in keys), None)


def _read_npz(file: Path) -> tuple[np.ndarray, np.ndarray | None, str, str | None]:
    """The images array, the labels array (or None) and their keys, read from an ``.npz`` file."""
    try:
        with np.load(file, allow_pickle=False) as npz:
            keys = list(npz.files)
            image_key = _first_key(keys, ("images", "data", "x"))
            if image_key is None:
                raise BadInputError(f"{file}: no images array (expected key 'images', 'data' or 'x'; found {keys})")
            label_key = _first_key(keys, ("labels", "label", "y"))
            return npz[image_key], None if label_key is None else npz[label_key], image_key, label_key
    except BadInputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInputError(f"{file}: not a readable .npz ({type(exc).__name__}: {short_message(exc)})") from exc


def _npz_images(file: Path, images: np.ndarray, key: str, input_size: int | None) -> tuple[np.ndarray, str]:
    """Normalised float32 NCHW images from either .npz layout, and the layout's name."""
    shape = images.shape
    if images.dtype.kind == "f" and images.ndim == 4 and shape[1] == 3:
        if input_size is not None and shape[2:] != (input_size, input_size):
            raise BadInputError(
                f"{file}: images are {shape[2]}x{shape[3]} but input_size is {input_size} (shape {shape})"
            )
        if not np.all(np.isfinite(images)):
            raise BadInputError(f"{file}: '{key}' contains NaN or infinite values")
        return np.ascontiguousarray(images, dtype=np.float32), "normalised NCHW"
    if images.dtype == np.uint8 and (images.ndim == 3 or (images.ndim == 4 and shape[3] == 3)):
        if input_size is None:
            raise BadInputError(f"{file}: uint8 images of shape {shape} need an input_size to be preprocessed")
        out = np.empty((len(images), 3, input_size, input_size), dtype=np.float32)
        for i in range(len(images)):
            out[i] = preprocess(images[i], input_size)
        return out, "uint8 NHWC" if images.ndim == 4 else "uint8 grey"
    raise BadInputError(
        f"{file}: '{key}' has dtype {images.dtype} and shape {shape}; expected float (N, 3, H, W) "
        "already normalised, or uint8 (N, H, W, 3) / (N, H, W)"
    )


def load_npz(path: str | os.PathLike[str], input_size: int | None = None, limit: int | None = None) -> LabelledImages:
    """Arrays from an ``.npz``: images under ``images``/``data``/``x``, labels under ``labels``/``label``/``y``.

    Two layouts: float (N, 3, H, W) arrays that are already normalised are taken as they are (H and W must
    equal ``input_size`` when given); uint8 (N, H, W, 3) RGB or (N, H, W) grey images are run through
    :func:`preprocess`, which needs ``input_size``.
    """
    file = Path(path)
    _check_limit(limit, file)
    if input_size is not None:
        _check_size(input_size, file)
    if not file.is_file():
        raise BadInputError(f"{file}: no such file")
    images, labels, image_key, label_key = _read_npz(file)
    n_all = images.shape[0] if images.ndim else 0
    if n_all == 0:
        raise BadInputError(f"{file}: '{image_key}' holds no images (shape {images.shape})")
    if labels is not None:
        if labels.shape != (n_all,):
            raise BadInputError(f"{file}: '{label_key}' has shape {labels.shape}, expected ({n_all},)")
        if labels.dtype.kind not in "iuf" or (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
            raise BadInputError(f"{file}: '{label_key}' must hold integer class ids, got {labels.dtype}")
    n = n_all if limit is None else min(limit, n_all)
    out, layout = _npz_images(file, images[:n], image_key, input_size)
    out_labels = None if labels is None else labels[:n].astype(np.int64)
    return LabelledImages(out, out_labels, f"npz {file} ({n} images, {layout})")


def _read_idx(path: Path, magic: int, dims: int, limit: int | None) -> np.ndarray:
    """Read an IDX (MNIST format) .gz file: big-endian magic, counts, then uint8 data; only ``limit`` items."""
    header_len = 4 + 4 * dims
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(header_len)
            if len(header) != header_len:
                raise BadInputError(f"{path}: truncated IDX header")
            got_magic, *sizes = struct.unpack(f">{1 + dims}I", header)
            if got_magic != magic:
                raise BadInputError(f"{path}: not an IDX file of the expected kind (magic {got_magic}, want {magic})")
            count = sizes[0] if limit is None else min(limit, sizes[0])
            item = int(np.prod(sizes[1:], dtype=np.int64))
            data = f.read(count * item)
    except BadInputError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BadInputError(f"{path}: unreadable or corrupt gzip file ({type(exc).__name__})") from exc
    if len(data) != count * item:
        raise BadInputError(f"{path}: truncated, {len(data)} bytes where {count * item} were expected")
    return np.frombuffer(data, dtype=np.uint8).reshape(count, *sizes[1:])


def _fashion_file(root: Path, split: str, kind: str) -> Path:
    prefix = "train" if split == "train" else "t10k"
    suffix = "images-idx3-ubyte.gz" if kind == "images" else "labels-idx1-ubyte.gz"
    return root / f"{prefix}-{suffix}"


def fashion_mnist(
    split: str = "train",
    input_size: int = 32,
    limit: int | None = None,
    normalize: str = "dataset",
    *,
    root: str | os.PathLike[str] = FASHION_MNIST_DIR,
) -> LabelledImages:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (60,000 train / 10,000 test, 10 classes).

    Real, installable training data for the small (32 x 32, 10-class) configuration. 28 x 28 grey images
    are zero-padded (centered, never resized, so strokes keep their scale) to ``input_size`` when it is at
    least 28, or bilinearly resized down when smaller, then replicated to 3 channels. ``normalize``:
    ``"dataset"`` uses Fashion-MNIST's own mean/std (0.2860 / 0.3530 on 0..1), ``"imagenet"`` the
    ImageNet ones (on 0..255), ``"none"`` leaves 0..1.
    """
    where = f"fashion-mnist:{split}"
    if split not in ("train", "test"):
        raise BadInputError(f"{where}: split must be 'train' or 'test'")
    if normalize not in ("dataset", "imagenet", "none"):
        raise BadInputError(f"{where}: normalize must be 'dataset', 'imagenet' or 'none', got {normalize!r}")
    _check_limit(limit, where)
    _check_size(input_size, where)
    folder = Path(root)
    images_file = _fashion_file(folder, split, "images")
    labels_file = _fashion_file(folder, split, "labels")
    for f in (images_file, labels_file):
        if not f.is_file():
            raise BadInputError(f"{f}: missing; install Fashion-MNIST with `apt-get install dataset-fashion-mnist`")
    raw = _read_idx(images_file, _IDX_IMAGES_MAGIC, 3, limit)
    labels = _read_idx(labels_file, _IDX_LABELS_MAGIC, 1, limit)
    if raw.shape[1:] != (_FASHION_SIDE, _FASHION_SIDE):
        raise BadInputError(f"{images_file}: images are {raw.shape[1]}x{raw.shape[2]}, expected 28x28")
    if len(labels) != len(raw):
        raise BadInputError(f"{labels_file}: {len(labels)} labels for {len(raw)} images")
    if labels.size and labels.max() > 9:
        raise BadInputError(f"{labels_file}: label {int(labels.max())} out of range 0-9")

    n = len(raw)
    if input_size >= _FASHION_SIDE:
        grey = np.zeros((n, input_size, input_size), dtype=np.float32)
        top = (input_size - _FASHION_SIDE) // 2
        grey[:, top : top + _FASHION_SIDE, top : top + _FASHION_SIDE] = raw
    else:
        grey = np.empty((n, input_size, input_size), dtype=np.float32)
        for i in range(n):
            grey[i] = np.asarray(Image.fromarray(raw[i]).resize((input_size, input_size), Image.BILINEAR))
    images = np.empty((n, 3, input_size, input_size), dtype=np.float32)
    if normalize == "imagenet":
        for c in range(3):
            images[:, c] = (grey - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    else:
        grey *= 1.0 / 255.0
        if normalize == "dataset":
            grey -= FASHION_MNIST_MEAN
            grey *= 1.0 / FASHION_MNIST_STD
        images[:] = grey[:, None]
    return LabelledImages(images, labels.astype(np.int64), f"fashion-mnist {split} ({n} images, {input_size}px)")


_FASHION_REF = re.compile(r"^fashion-mnist(?::(train|test))?$")


def load_images(ref: str, input_size: int, limit: int | None = None) -> LabelledImages:
    """Load images named by ``ref``, the one string commands take for ``--data``.

    ``imagenet-samples``, ``fashion-mnist[:train|test]`` (default train), a ``.rec``, an ``.npz`` or a
    folder of images.
    """
    ref = str(ref)
    _check_limit(limit, ref)
    if ref == "imagenet-samples":
        data = imagenet_samples(input_size)
        return data if limit is None or limit >= len(data) else data.subset(limit)
    match = _FASHION_REF.match(ref)
    if match:
        return fashion_mnist(match.group(1) or "train", input_size, limit)
    path = Path(ref)
    loaders: dict[str, Callable[..., LabelledImages]] = {".rec": load_recordio, ".npz": load_npz}
    if not path.exists():
        raise BadInputError(f"{ref}: no such file or folder (nor imagenet-samples, fashion-mnist[:train|test])")
    if path.is_dir():
        return load_image_folder(path, input_size, limit)
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise BadInputError(f"{ref}: unknown data format (expected a .rec, an .npz or a folder of images)")
    return loader(path, input_size, limit)
