"""Synthetic CIFAR binary files for tests, and a plain-NumPy decoder to check ltfast against.

Each image encodes its global record index and every byte position, so a wrong record, a
wrong order or a misplaced byte shows up exactly.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torchvision.datasets

from ltfast.integrity import write_manifest

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
    # Their digests, as ltfast records them for data it writes (else the official ones apply).
    write_manifest(folder, [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"])
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


def write_python_version(
    binary_root: Path, root: Path, cifar100: bool = False, coarse: bool = True
) -> Path:
    """torchvision's python version (pickles) of the binary files under `binary_root`, written
    to `root/cifar-10-batches-py/` or `root/cifar-100-python/`; returns `root`. `coarse=False`
    leaves CIFAR-100's coarse labels and names out (all torchvision reads is the fine ones)."""
    if cifar100:
        source, folder = binary_root / "cifar-100-binary", root / "cifar-100-python"
        batches, label_bytes = {"train": "train.bin", "test": "test.bin"}, 2
        meta_name = "meta"
        meta = {
            f"{kind}_label_names": (source / f"{kind}_label_names.txt").read_text().split()
            for kind in ("fine", "coarse")[: 2 if coarse else 1]
        }
    else:
        source, folder = binary_root / "cifar-10-batches-bin", root / "cifar-10-batches-py"
        batches = {f"data_batch_{i}": f"data_batch_{i}.bin" for i in range(1, 6)}
        batches["test_batch"], label_bytes, meta_name = "test_batch.bin", 1, "batches.meta"
        meta = {"label_names": (source / "batches.meta.txt").read_text().split()}
    folder.mkdir(parents=True)
    for name, binary in batches.items():
        labels, images = reference_decode([source / binary], label_bytes)
        entry: dict = {"batch_label": name, "data": images.reshape(len(images), -1)}
        if cifar100:
            entry["fine_labels"] = labels[:, 1].tolist()
            if coarse:
                entry["coarse_labels"] = labels[:, 0].tolist()
        else:
            entry["labels"] = labels[:, 0].tolist()
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / meta_name).write_bytes(pickle.dumps(meta))
    return root


def trust_python_version(monkeypatch, root: Path, cifar100: bool = False) -> None:
    """Makes torchvision's md5 table (which ltfast checks against too) name the files of the
    test's python version, as the official table names the official files."""
    kind = torchvision.datasets.CIFAR100 if cifar100 else torchvision.datasets.CIFAR10
    folder = root / kind.base_folder

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    for listing in ("train_list", "test_list"):
        monkeypatch.setattr(kind, listing, [[n, md5(n)] for n, _ in getattr(kind, listing)])
    monkeypatch.setattr(kind, "meta", {**kind.meta, "md5": md5(kind.meta["filename"])})
