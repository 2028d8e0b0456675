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
