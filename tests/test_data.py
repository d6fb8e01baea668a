"""Real image data: foolbox's ImageNet JPEGs, folders, RecordIO and npz built from them, Fashion-MNIST.

Nothing is mocked: every file is real data, or real data written to tmp_path the way users make theirs.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from spos_deploy.data.images import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LabelledImages,
    fashion_mnist,
    imagenet_samples,
    load_image_folder,
    load_images,
    load_npz,
    load_recordio,
    preprocess,
)
from spos_deploy.errors import BadInputError

SIZE = 64  # small input size keeps the tests fast; the transform is the same at 224


def _sample_files() -> list[Path]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None:
        pytest.fail("foolbox is not installed: `pip install --no-deps foolbox==3.3.4` (./run.sh does this)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return sorted(folder.glob("imagenet_*.jpg"), key=lambda p: p.name)


def _label(p: Path) -> int:
    return int(re.match(r"imagenet_\d+_(\d+)\.jpg", p.name).group(1))


@pytest.fixture(scope="module")
def jpegs() -> list[Path]:
    files = _sample_files()
    assert len(files) == 20
    return files


@pytest.fixture(scope="module")
def samples() -> LabelledImages:
    return imagenet_samples(SIZE)


def _unnormalise(chw: np.ndarray) -> np.ndarray:
    """float32 (3, H, W) normalised -> float (H, W, 3) on 0..255, to compare against known pixels."""
    return chw.transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ---------------------------------------------------------------- imagenet samples and preprocess


def test_imagenet_samples_real_labels_shape_and_normalisation(jpegs: list[Path]) -> None:
    data = imagenet_samples(224)
    assert len(data) == 20
    assert data.images.shape == (20, 3, 224, 224) and data.images.dtype == np.float32
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [_label(p) for p in jpegs]
    assert data.labels.tolist()[:3] == [243, 559, 438]
    assert "20" in data.source
    channel_mean = data.images.mean(axis=(0, 2, 3))
    channel_std = data.images.std(axis=(0, 2, 3))
    assert np.all(np.abs(channel_mean) < 0.3), channel_mean
    assert np.all((channel_std > 0.7) & (channel_std < 1.3)), channel_std
    # 20 different photographs, not one image repeated
    assert min(np.abs(data.images[i] - data.images[i + 1]).mean() for i in range(19)) > 0.1


def test_imagenet_samples_other_size_and_subset(samples: LabelledImages) -> None:
    assert samples.images.shape == (20, 3, SIZE, SIZE)
    sub = samples.subset(5)
    assert len(sub) == 5 and sub.labels.tolist() == samples.labels[:5].tolist()
    np.testing.assert_array_equal(sub.images, samples.images[:5])
    with pytest.raises(BadInputError, match="limit"):
        samples.subset(0)


def test_preprocess_center_crop_without_resize_keeps_exact_pixels() -> None:
    h, w = 100, 200
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:, :, 0] = np.arange(w)[None, :]  # R encodes the column
    img[:, :, 1] = np.arange(h)[:, None]  # G encodes the row
    img[:, :, 2] = 77
    # shorter side 100 == ceil(50 / 0.5): no resize, only the centered 50 x 50 crop
    out = preprocess(img, 50, crop_ratio=0.5)
    assert out.shape == (3, 50, 50) and out.dtype == np.float32
    px = np.rint(_unnormalise(out))
    np.testing.assert_array_equal(px[0, :, 0], np.arange(75, 125))
    np.testing.assert_array_equal(px[:, 0, 1], np.arange(25, 75))
    assert np.all(px[:, :, 2] == 77)


def test_preprocess_resizes_shorter_side_then_crops_center() -> None:
    # 80 x 160, left half red, right half blue; input 32 at ratio 0.8 -> resize to 40 x 80, crop columns 24..56,
    # so the red/blue edge (column 40 after resizing) lands in the middle of the crop
    img = np.zeros((80, 160, 3), dtype=np.uint8)
    img[:, :80, 0] = 255
    img[:, 80:, 2] = 255
    out = preprocess(img, 32, crop_ratio=0.8)
    assert out.shape == (3, 32, 32)
    px = _unnormalise(out)
    assert np.allclose(px[:, :14, 0], 255, atol=1) and np.allclose(px[:, :14, 2], 0, atol=1)
    assert np.allclose(px[:, 18:, 0], 0, atol=1) and np.allclose(px[:, 18:, 2], 255, atol=1)
    # the default ratio 0.875 maps 224 to a 256 resize
    big = np.full((300, 400, 3), 128, dtype=np.uint8)
    assert preprocess(big, 224).shape == (3, 224, 224)


def test_preprocess_resize_is_bilinear_not_nearest() -> None:
    # a 1-pixel checkerboard halved by a (filtering) bilinear resize averages to mid grey; nearest would keep 0/255
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    px = _unnormalise(preprocess(np.stack([board] * 3, axis=-1), 28))  # 64 -> ceil(28 / 0.875) = 32, crop 28
    assert np.allclose(px, 127.5, atol=2), (px.min(), px.max())


def test_preprocess_grey_and_mean_image() -> None:
    grey = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) % 251).astype(np.uint8)
    px = _unnormalise(preprocess(grey, 40, crop_ratio=1.0))
    np.testing.assert_allclose(px[:, :, 0], px[:, :, 1], atol=1e-3)
    np.testing.assert_allclose(px[:, :, 0], px[:, :, 2], atol=1e-3)
    np.testing.assert_allclose(px[:, :, 0], grey[:, 10:50], atol=1e-3)
    mean_img = np.broadcast_to(np.rint(IMAGENET_MEAN).astype(np.uint8), (48, 48, 3))
    assert np.abs(preprocess(mean_img, 32)).max() < 0.01


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((3, 10, 10, 3), np.uint8)],
    ids=["rgba", "float", "batch"],
)
def test_preprocess_rejects_wrong_arrays(bad: np.ndarray) -> None:
    with pytest.raises(BadInputError, match=r"preprocess: expected a uint8"):
        preprocess(bad, 8)


# ---------------------------------------------------------------- image folders


def test_image_folder_tree_labels_follow_sorted_class_folders(
    tmp_path: Path, jpegs: list[Path], samples: LabelledImages
) -> None:
    # classes named so that sorted order differs from creation order; files spread over them
    layout = {"n300": jpegs[0:3], "n100": jpegs[3:5], "n200": jpegs[5:9]}
    for cls, files in layout.items():
        (tmp_path / cls).mkdir()
        for f in files:
            shutil.copy(f, tmp_path / cls / f.name)
    (tmp_path / "n100" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, SIZE)
    assert data.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert "3 classes" in data.source
    # sorted (class, file name) order: n100 = jpegs[3:5], n200 = jpegs[5:9], n300 = jpegs[0:3]; same decode
    order = [3, 4, 5, 6, 7, 8, 0, 1, 2]
    np.testing.assert_array_equal(data.images, samples.images[order])
    limited = load_image_folder(tmp_path, SIZE, limit=4)
    assert limited.labels.tolist() == [0, 0, 1, 1]


def test_image_folder_flat_has_no_labels(tmp_path: Path, jpegs: list[Path], samples: LabelledImages) -> None:
    for f in jpegs[:4]:
        shutil.copy(f, tmp_path / f.name.replace(".jpg", ".JPEG"))
    data = load_image_folder(tmp_path, SIZE)
    assert data.labels is None and len(data) == 4
    np.testing.assert_array_equal(data.images, samples.images[:4])


# ---------------------------------------------------------------- RecordIO


def _write_rec(tmp_path: Path, jpegs: list[Path], indexed: bool) -> Path:
    import cv2
    import mxnet as mx

    rec = tmp_path / "val.rec"
    writer = (
        mx.recordio.MXIndexedRecordIO(str(tmp_path / "val.idx"), str(rec), "w")
        if indexed
        else mx.recordio.MXRecordIO(str(rec), "w")
    )
    for i, f in enumerate(jpegs):
        header = mx.recordio.IRHeader(0, float(_label(f)), i, 0)
        packed = mx.recordio.pack_img(header, cv2.imread(str(f)), quality=95, img_fmt=".jpg")
        writer.write_idx(i, packed) if indexed else writer.write(packed)
    writer.close()
    return rec


@pytest.mark.parametrize("indexed", [True, False], ids=["with-idx", "without-idx"])
def test_recordio_round_trips_labels_and_images(
    tmp_path: Path, jpegs: list[Path], samples: LabelledImages, indexed: bool
) -> None:
    rec = _write_rec(tmp_path, jpegs, indexed)
    assert (tmp_path / "val.idx").exists() == indexed
    data = load_recordio(rec, SIZE)
    assert len(data) == 20 and data.images.shape == samples.images.shape
    assert data.labels.tolist() == samples.labels.tolist()
    assert ("indexed" in data.source) == indexed
    # pack_img re-encodes at JPEG quality 95: not bit-identical, but the same photographs in RGB order
    for a, b in zip(data.images, samples.images):
        assert _corr(a, b) > 0.99
        assert np.abs(a - b).mean() < 0.05
    # a BGR/RGB swap would show: channel means must match per channel
    np.testing.assert_allclose(data.images.mean(axis=(2, 3)), samples.images.mean(axis=(2, 3)), atol=0.02)
    limited = load_recordio(rec, SIZE, limit=3)
    assert limited.labels.tolist() == samples.labels[:3].tolist()


# ---------------------------------------------------------------- npz


def test_npz_normalised_nchw_is_taken_as_is(tmp_path: Path, samples: LabelledImages) -> None:
    path = tmp_path / "calib.npz"
    np.savez(path, data=samples.images, label=samples.labels.astype(np.int32))
    data = load_npz(path, SIZE)
    np.testing.assert_array_equal(data.images, samples.images)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == samples.labels.tolist()
    assert len(load_npz(path, limit=7)) == 7  # input_size optional for this layout


def test_npz_uint8_nhwc_and_grey_are_preprocessed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(5, 40, 50, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", x=rgb, y=np.arange(5))
    data = load_npz(tmp_path / "rgb.npz", 32)
    assert data.images.shape == (5, 3, 32, 32) and data.labels.tolist() == [0, 1, 2, 3, 4]
    for i in range(5):
        np.testing.assert_array_equal(data.images[i], preprocess(rgb[i], 32))
    grey = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", images=grey)
    g = load_npz(tmp_path / "grey.npz", 24, limit=2)
    assert g.labels is None and g.images.shape == (2, 3, 24, 24)
    np.testing.assert_array_equal(g.images[1], preprocess(grey[1], 24))


# ---------------------------------------------------------------- Fashion-MNIST

needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="needs `apt-get install dataset-fashion-mnist` (./run.sh installs it)"
)


def _idx_header(path: Path, n: int) -> tuple[int, ...]:
    with gzip.open(path, "rb") as f:
        return struct.unpack(f">{n}I", f.read(4 * n))


def _raw_fashion(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz", "rb") as f:
        images = np.frombuffer(f.read(16 + n * 784)[16:], np.uint8).reshape(n, 28, 28)
    with gzip.open(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(8 + n)[8:], np.uint8)
    return images, labels


@needs_fashion
def test_fashion_mnist_counts() -> None:
    assert _idx_header(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz", 2) == (2049, 60000)
    assert _idx_header(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz", 4) == (2051, 60000, 28, 28)
    assert _idx_header(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", 2) == (2049, 10000)
    test = fashion_mnist("test", input_size=28, limit=None)  # the whole test split is small enough
    assert len(test) == 10000 and test.images.shape == (10000, 3, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    train = fashion_mnist("train", input_size=32, limit=2000)
    assert len(train) == 2000 and train.images.shape == (2000, 3, 32, 32)
    assert set(train.labels.tolist()) == set(range(10))
    assert len(load_images("fashion-mnist:test", 32, limit=10)) == 10
    assert "train" in load_images("fashion-mnist", 32, limit=3).source


@needs_fashion
@pytest.mark.parametrize("input_size", [28, 32, 36, 33])
def test_fashion_mnist_padding_keeps_the_item_centred(input_size: int) -> None:
    raw, raw_labels = _raw_fashion("train", 50)
    data = fashion_mnist("train", input_size=input_size, limit=50)
    assert data.labels.tolist() == raw_labels.tolist()
    top = (input_size - 28) // 2
    expected = (raw / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    for c in range(3):
        np.testing.assert_allclose(data.images[:, c, top : top + 28, top : top + 28], expected, atol=1e-5)
    border = np.ones((input_size, input_size), bool)
    border[top : top + 28, top : top + 28] = False
    np.testing.assert_allclose(data.images[:, :, border], -FASHION_MNIST_MEAN / FASHION_MNIST_STD, atol=1e-6)
    # the item's centre of mass stays near the image centre (no shift introduced by padding)
    ink = np.clip(data.images[:, 0] * FASHION_MNIST_STD + FASHION_MNIST_MEAN, 0, None).sum(axis=0)
    rows, cols = np.indices(ink.shape)
    centre = ((rows * ink).sum() / ink.sum(), (cols * ink).sum() / ink.sum())
    assert np.allclose(centre, (input_size - 1) / 2, atol=1.5), centre


@needs_fashion
def test_fashion_mnist_other_normalisations_and_small_size() -> None:
    raw, _ = _raw_fashion("test", 8)
    plain = fashion_mnist("test", input_size=28, limit=8, normalize="none")
    np.testing.assert_allclose(plain.images[:, 1], raw / 255.0, atol=1e-6)
    small = fashion_mnist("test", input_size=16, limit=8)
    assert small.images.shape == (8, 3, 16, 16)


# ---------------------------------------------------------------- dispatch


def test_load_images_dispatch(tmp_path: Path, jpegs: list[Path], samples: LabelledImages) -> None:
    assert load_images("imagenet-samples", SIZE, limit=4).labels.tolist() == samples.labels[:4].tolist()
    assert len(load_images("imagenet-samples", SIZE)) == 20
    rec = _write_rec(tmp_path, jpegs[:3], indexed=True)
    assert load_images(str(rec), SIZE).labels.tolist() == samples.labels[:3].tolist()
    np.savez(tmp_path / "a.npz", images=samples.images[:2])
    assert len(load_images(str(tmp_path / "a.npz"), SIZE)) == 2
    folder = tmp_path / "flat"
    folder.mkdir()
    shutil.copy(jpegs[0], folder)
    assert load_images(str(folder), SIZE).labels is None


# ---------------------------------------------------------------- bad input: one line, naming the file


def _raises(fn, *args, name: str, **kwargs) -> str:
    with pytest.raises(BadInputError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert name in msg, msg
    assert "\n" not in msg, msg
    return msg


def test_missing_paths(tmp_path: Path) -> None:
    _raises(load_image_folder, tmp_path / "nope", SIZE, name="nope")
    _raises(load_recordio, tmp_path / "nope.rec", SIZE, name="nope.rec")
    _raises(load_npz, tmp_path / "nope.npz", SIZE, name="nope.npz")
    _raises(load_images, str(tmp_path / "gone.rec"), SIZE, name="gone.rec")
    (tmp_path / "data.csv").write_text("1,2\n")
    assert "unknown data format" in _raises(load_images, str(tmp_path / "data.csv"), SIZE, name="data.csv")


def test_empty_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty_root"
    empty.mkdir()
    assert "no images" in _raises(load_image_folder, empty, SIZE, name="empty_root")
    (empty / "cls_a").mkdir()
    (empty / "cls_a" / "readme.txt").write_text("x")
    _raises(load_images, str(empty), SIZE, name="empty_root")


def test_corrupt_and_truncated_images_name_the_file(tmp_path: Path, jpegs: list[Path]) -> None:
    shutil.copy(jpegs[0], tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg at all" * 20)
    msg = _raises(load_image_folder, tmp_path, SIZE, name="broken.jpg")
    assert "corrupt" in msg
    (tmp_path / "broken.jpg").unlink()
    data = jpegs[1].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])  # a truncated JPEG, wrongly named .png
    _raises(load_image_folder, tmp_path, SIZE, name="cut.png")


def test_corrupt_and_truncated_recordio(tmp_path: Path, jpegs: list[Path]) -> None:
    import mxnet as mx

    garbage = tmp_path / "garbage.rec"
    garbage.write_bytes(b"definitely not RecordIO " * 50)
    _raises(load_recordio, garbage, SIZE, name="garbage.rec")

    rec = _write_rec(tmp_path, jpegs[:4], indexed=True)
    blob = rec.read_bytes()
    cut = tmp_path / "cut.rec"
    cut.write_bytes(blob[: len(blob) // 2])
    assert "truncated" in _raises(load_recordio, cut, SIZE, name="cut.rec")  # sequential read
    shutil.copy(tmp_path / "val.idx", tmp_path / "cut.idx")
    assert "truncated" in _raises(load_recordio, cut, SIZE, name="cut.rec")  # indexed read past the end

    bad_payload = tmp_path / "payload.rec"
    writer = mx.recordio.MXRecordIO(str(bad_payload), "w")
    writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, 3.0, 0, 0), b"not an encoded image"))
    writer.close()
    _raises(load_recordio, bad_payload, SIZE, name="payload.rec")

    empty = tmp_path / "empty.rec"
    empty.write_bytes(b"")
    _raises(load_recordio, empty, SIZE, name="empty.rec")


def test_bad_npz(tmp_path: Path, samples: LabelledImages) -> None:
    np.savez(tmp_path / "nokey.npz", pixels=samples.images[:2])
    assert "'images'" in _raises(load_npz, tmp_path / "nokey.npz", SIZE, name="nokey.npz")
    np.savez(tmp_path / "small.npz", images=samples.images[:2])
    assert "input_size" in _raises(load_npz, tmp_path / "small.npz", SIZE * 2, name="small.npz")
    np.savez(tmp_path / "rank.npz", images=np.zeros((2, 8), np.float32))
    _raises(load_npz, tmp_path / "rank.npz", SIZE, name="rank.npz")
    np.savez(tmp_path / "labels.npz", images=samples.images[:3], labels=np.arange(2))
    _raises(load_npz, tmp_path / "labels.npz", SIZE, name="labels.npz")
    np.savez(tmp_path / "uint8.npz", images=np.zeros((2, 10, 10, 3), np.uint8))
    _raises(load_npz, tmp_path / "uint8.npz", None, name="uint8.npz")  # needs an input_size
    (tmp_path / "text.npz").write_text("not a zip")
    _raises(load_npz, tmp_path / "text.npz", SIZE, name="text.npz")


@pytest.mark.parametrize("limit", [0, -3])
def test_non_positive_limit(tmp_path: Path, jpegs: list[Path], limit: int) -> None:
    shutil.copy(jpegs[0], tmp_path / "one.jpg")
    np.savez(tmp_path / "l.npz", images=np.zeros((2, 3, SIZE, SIZE), np.float32))
    rec = _write_rec(tmp_path, jpegs[:1], indexed=False)
    for fn, path in [(load_image_folder, tmp_path), (load_npz, tmp_path / "l.npz"), (load_recordio, rec)]:
        assert "limit" in _raises(fn, path, SIZE, limit=limit, name=str(path))
    assert "limit" in _raises(load_images, "imagenet-samples", SIZE, limit=limit, name="imagenet-samples")
    assert "limit" in _raises(fashion_mnist, "train", 32, limit=limit, name="fashion-mnist")


def test_fashion_mnist_missing_package_and_bad_split(tmp_path: Path) -> None:
    msg = _raises(fashion_mnist, "train", 32, 5, root=tmp_path, name="train-images-idx3-ubyte.gz")
    assert "apt-get install dataset-fashion-mnist" in msg
    _raises(fashion_mnist, "validation", 32, 5, name="validation")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(struct.pack(">4I", 2051, 100, 28, 28)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">2I", 2049, 100)))
    assert "truncated" in _raises(fashion_mnist, "train", 32, 5, root=tmp_path, name="train-images-idx3-ubyte.gz")


def test_centre_crop_is_the_one_crop_of_preprocess_and_eval_batches() -> None:
    """One centre crop: the eval transform (HWC) and validation batches (NCHW) cut at (dim - size) // 2."""
    from spos_deploy.data.batches import Dataset, eval_batches
    from spos_deploy.data.images import centre_crop

    rgb = np.random.default_rng(3).integers(0, 256, (40, 37, 3), dtype=np.uint8)
    np.testing.assert_array_equal(centre_crop(rgb, 32, axes=(0, 1)), rgb[4:36, 2:34])
    # crop_ratio 1 at the image's own shorter side: no resize, so preprocess is exactly the crop, normalised
    expected = (rgb[4:36, 2:34].transpose(2, 0, 1).astype(np.float32) - np.reshape(IMAGENET_MEAN, (3, 1, 1))) / (
        np.reshape(IMAGENET_STD, (3, 1, 1))
    )
    np.testing.assert_allclose(preprocess(rgb, 32, crop_ratio=32 / 37), expected, rtol=1e-5, atol=1e-6)
    batch = np.random.default_rng(4).standard_normal((3, 3, 37, 37)).astype(np.float32)
    ds = Dataset(batch, np.zeros(3, np.int64), 32, "test", small=False)
    (images, _), *_ = list(eval_batches(ds, 8))
    np.testing.assert_array_equal(images, batch[:, :, 2:34, 2:34])
    with pytest.raises(BadInputError, match="smaller than the crop"):
        centre_crop(batch, 40)


def test_labels_outside_the_model_classes_are_refused() -> None:
    images = np.zeros((3, 3, 8, 8), np.float32)
    LabelledImages(images, np.array([0, 9, 5]), "ok").check_labels(10, "ok.npz")
    with pytest.raises(BadInputError, match=r"--eval data.npz: label 999 is outside 0..9"):
        LabelledImages(images, np.array([0, 999, -1]), "x").check_labels(10, "data.npz", "--eval")
    with pytest.raises(BadInputError, match="label -1"):
        LabelledImages(images, np.array([0, 1, -1]), "x").check_labels(10, "data.npz")


def test_training_augmentation_modes() -> None:
    """crop-flip shifts content (pad + random crop); flip only mirrors whole images; none is the identity."""
    from spos_deploy.data.batches import Dataset, load_dataset, train_batches

    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    labels = np.arange(64) % 10
    outs = {}
    for mode in ("crop-flip", "flip", "none"):
        ds = Dataset(images, labels, 32, "synthetic", True, mode)
        _, x, y = next(train_batches(ds, 64, epoch=0, seed=0))
        order = np.random.default_rng([0, 0]).permutation(64)
        outs[mode] = (x, images[order])
        assert x.shape == (64, 3, 32, 32) and (y == labels[order]).all()
    x, src = outs["none"]
    assert np.array_equal(x, src)
    x, src = outs["flip"]
    same, mirrored = (x == src).all(axis=(1, 2, 3)), (x == src[..., ::-1]).all(axis=(1, 2, 3))
    assert (same | mirrored).all() and same.any() and mirrored.any()
    x, src = outs["crop-flip"]
    assert not ((x == src).all(axis=(1, 2, 3)) | (x == src[..., ::-1]).all(axis=(1, 2, 3))).all()
    with pytest.raises(BadInputError, match="--augment"):
        load_dataset("fashion-mnist", 32, train=True, limit=8, augment="rotate")
