"""Synthetic CIFAR binary files for tests, and a plain-NumPy decoder to check ltfast against.

Each image encodes its global record index and every byte position, so a wrong record, a
wrong order or a misplaced byte shows up exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PIXELS = 3072


def encoded_images(first_index: int, count: int) -> np.ndarray:
    """(count, 3072) uint8: record i's byte p is (p + 7 * i) % 251, and bytes 0..2 spell i."""
    index = np.arange(first_index, first_index + count, dtype=np.int64)[:, None]
    position = np.arange(PIXELS, dtype=np.int64)[None, :]
    images = ((position + 7 * index) % 251).astype(np.uint8)
    for byte in range(3):
        images[:, byte] = (index[:, 0] >> (8 * byte)) & 0xFF
    return images


def write_records(path: Path, label_columns: list[np.ndarray], images: np.ndarray) -> Path:
    """Writes records of `label_columns` bytes (one column per label byte) followed by pixels."""
    labels = np.stack([np.asarray(c, dtype=np.uint8) for c in label_columns], axis=1)
    path.write_bytes(np.concatenate([labels, images], axis=1).tobytes())
    return path


def reference_decode(paths: list[Path], label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, label_bytes) int64, images (N, 3, 32, 32) uint8), read with plain NumPy."""
    raw = np.concatenate([np.fromfile(p, dtype=np.uint8) for p in paths])
    records = raw.reshape(-1, label_bytes + PIXELS)
    labels = records[:, :label_bytes].astype(np.int64)
    return labels, records[:, label_bytes:].reshape(-1, 3, 32, 32).copy()


CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def balanced_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """Every class `per_class` times, in a random order (like the real files)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


def make_cifar10_root(root: Path, per_class: int = 100, test_per_class: int = 10) -> Path:
    """root/cifar-10-batches-bin/ with five training files, a test file and the class names."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    labels = balanced_labels(10, per_class, seed=1)
    first = 0
    for number, part in enumerate(np.array_split(labels, 5), start=1):
        write_records(folder / f"data_batch_{number}.bin", [part], encoded_images(first, len(part)))
        first += len(part)
    test = balanced_labels(10, test_per_class, seed=2)
    write_records(folder / "test_batch.bin", [test], encoded_images(0, len(test)))
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    return root


def make_cifar100_root(root: Path, per_class: int = 10) -> Path:
    """root/cifar-100-binary/ with train.bin, test.bin and both name files; coarse = fine // 5."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    for name, count, seed in (("train.bin", per_class, 3), ("test.bin", 2, 4)):
        fine = balanced_labels(100, count, seed)
        write_records(folder / name, [fine // 5, fine], encoded_images(0, len(fine)))
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine_{i}" for i in range(100)) + "\n")
    (folder / "coarse_label_names.txt").write_text(
        "\n".join(f"coarse_{i}" for i in range(20)) + "\n"
    )
    return root
