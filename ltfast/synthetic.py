"""CIFAR binary files written from arrays: the built-in synthetic dataset, benchmark data, and
the records of torchvision's python version converted (see ltfast.python_version).

The files have the official layout (`cifar-10-batches-bin/`, five 10,000-record training
batches, `test_batch.bin`, `batches.meta.txt`), so everything downstream runs the real
decode path.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ltfast.integrity import MANIFEST, write_manifest

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_records(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes CIFAR binary records: the label bytes (`labels` (N,) for CIFAR-10's one label,
    (N, 2) for CIFAR-100's coarse and fine labels), then the image's 3072 CHW bytes."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    labels = np.asarray(labels)
    labels = labels.reshape(len(labels), -1) if labels.ndim else labels
    if images.shape[1] != 3072 or labels.ndim != 2 or len(labels) != len(images):
        raise ValueError(
            f"expected images (N, 3, 32, 32) and labels (N,) or (N, k), got {images.shape} and "
            f"{labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must be bytes (0..255), got {labels.min()}..{labels.max()}")
    width = labels.shape[1]
    records = np.empty((len(images), width + 3072), dtype=np.uint8)
    records[:, :width] = labels
    records[:, width:] = images
    records.tofile(path)


def write_cifar10(
    root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> Path:
    """Writes `root/cifar-10-batches-bin/` from (images, labels) pairs; returns the folder.

    The training records are split over the five batch files as evenly as they go.
    """
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = train
    for name, part in zip(TRAIN_FILES, np.array_split(np.arange(len(labels)), 5), strict=True):
        write_records(folder / name, images[part], labels[part])
    write_records(folder / TEST_FILE, *test)
    (folder / "batches.meta.txt").write_text("\n".join(CLASSES) + "\n\n")
    write_manifest(folder, [*TRAIN_FILES, TEST_FILE])
    return folder


def random_cifar10(
    root: Path, train_size: int = 50_000, test_size: int = 10_000, seed: int = 0
) -> Path:
    """CIFAR-10-sized files of uniform random pixels and balanced labels in random order
    (for benchmarks)."""
    rng = np.random.default_rng(seed)

    def split(size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(size) % 10)
        return rng.integers(0, 256, (size, 3, 32, 32), dtype=np.uint8), labels

    return write_cifar10(root, split(train_size), split(test_size))


# One colour per class, far enough apart that a small network separates them in an epoch or
# two, close enough (with the jitter below) that it must also read the stripes.
PALETTE = np.array(
    [
        [0.85, 0.25, 0.25], [0.25, 0.75, 0.30], [0.25, 0.35, 0.85], [0.85, 0.80, 0.25],
        [0.70, 0.30, 0.80], [0.25, 0.80, 0.80], [0.90, 0.55, 0.20], [0.55, 0.55, 0.55],
        [0.45, 0.25, 0.15], [0.95, 0.60, 0.75],
    ]
)  # fmt: skip


def learnable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3, 32, 32) uint8: class colour (jittered) times stripes of a class frequency and
    orientation with random phase, plus pixel noise."""
    count = len(labels)
    y, x = np.mgrid[0:32, 0:32] / 32.0
    angle = labels * (np.pi / 10) + rng.normal(0, 0.15, count)
    frequency = 1.5 + (labels % 4) * 0.75
    phase = rng.uniform(0, 2 * np.pi, count)
    along = x[None] * np.cos(angle)[:, None, None] + y[None] * np.sin(angle)[:, None, None]
    stripes = np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    colour = PALETTE[labels] + rng.normal(0, 0.12, (count, 3))
    image = colour[:, :, None, None] * (0.65 + 0.35 * stripes[:, None])
    image += rng.normal(0, 0.08, image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def learnable_cifar10(root: Path, per_class: int = 500, seed: int = 0) -> Path:
    """The built-in offline dataset: `root/synthetic-{per_class}-{seed}/` holding a balanced,
    learnable 10-class set as CIFAR-10 binary files (`per_class` training and `per_class // 5`
    test images per class). Written once, atomically; returns the data root."""
    target = Path(root) / f"synthetic-{per_class}-{seed}"
    if (target / FOLDER / TEST_FILE).is_file():
        if not (target / FOLDER / MANIFEST).is_file():  # generated before ltfast kept digests
            write_manifest(target / FOLDER, [*TRAIN_FILES, TEST_FILE])
        return target
    rng = np.random.default_rng(seed)

    def split(size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(10), size))
        return learnable_images(labels, rng), labels

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
    try:
        write_cifar10(scratch, split(per_class), split(max(per_class // 5, 1)))
        scratch.rename(target)
    except OSError:
        if not (target / FOLDER / TEST_FILE).is_file():  # not another process's finished copy
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
