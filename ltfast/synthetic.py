"""CIFAR-10 binary files written from arrays: the built-in synthetic dataset and benchmark data.

The files have the official layout (`cifar-10-batches-bin/`, five 10,000-record training
batches, `test_batch.bin`, `batches.meta.txt`), so everything downstream runs the real
decode path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_records(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Writes CIFAR-10 records: one label byte, then the image's 3072 CHW bytes."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    labels = np.asarray(labels)
    if images.shape[1] != 3072 or labels.shape != (len(images),):
        raise ValueError(
            f"expected images (N, 3, 32, 32) and labels (N,), got {images.shape} and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"CIFAR-10 labels must be in 0..9, got {labels.min()}..{labels.max()}")
    records = np.empty((len(images), 3073), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = images
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
    return folder


def random_cifar10(
    root: Path, train_size: int = 50_000, test_size: int = 10_000, seed: int = 0
) -> Path:
    """CIFAR-10-sized files of uniform random pixels and labels (for benchmarks)."""
    rng = np.random.default_rng(seed)

    def split(size: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, 256, (size, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size)

    return write_cifar10(root, split(train_size), split(test_size))
