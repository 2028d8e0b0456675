"""CIFAR datasets on the compiled reader, torchvision-style, and their long-tailed subsets.

Images are uint8 CHW tensors (torchvision v2 transforms take them as they are); `.data`
holds all of them as one (N, 3, 32, 32) tensor, decoded once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from _ltfast import RecordReader
from ltfast.download import download_and_extract
from ltfast.kernels import class_counts
from ltfast.longtail import check_imbalance, long_tail_subset


class DatasetError(RuntimeError):
    """Data files that are present but damaged; the message names the file and the fix."""


class CIFAR10(Dataset):
    """CIFAR-10 from the official binary version under `root/cifar-10-batches-bin/`."""

    base_folder = "cifar-10-batches-bin"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    filename = "cifar-10-binary.tar.gz"
    tgz_md5 = "c32a1d4ab5d03f1284b67883e8d87530"
    train_files: ClassVar[tuple[str, ...]] = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    test_files: ClassVar[tuple[str, ...]] = ("test_batch.bin",)
    label_bytes = 1
    num_classes = 10

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ):
        self.root = Path(root).expanduser()
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        if download and not self._intact():
            download_and_extract(self.url, self.root, self.filename, self.tgz_md5, self.base_folder)
        reader = self._open()
        self.classes = self._class_names()
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        labels = self._labels(reader)
        self.indices = self._select(labels)
        self.data = torch.from_numpy(reader.decode(self.indices))
        selected = labels[self.indices]
        self.targets: list[int] = selected.tolist()
        self.class_counts = class_counts(selected, len(self.classes))

    # ----- what subclasses change ---------------------------------------------------------

    @property
    def meta_file(self) -> str:
        return "batches.meta.txt"

    def _labels(self, reader: RecordReader) -> np.ndarray:
        return reader.labels

    def _select(self, labels: np.ndarray) -> np.ndarray:
        """Positions of the split that this dataset keeps (all of them here)."""
        return np.arange(len(labels), dtype=np.int64)

    # ----- files --------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.root / self.base_folder

    def _paths(self) -> list[Path]:
        return [
            self.folder / name for name in (self.train_files if self.train else self.test_files)
        ]

    def _open(self) -> RecordReader:
        needed = [*self._paths(), self.folder / self.meta_file]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{type(self).__name__} data not found: missing {', '.join(missing)}. Pass "
                f"download=True to fetch {self.url}, or unpack that archive into {self.root}"
            )
        try:
            return RecordReader(self._paths(), label_bytes=self.label_bytes)
        except ValueError as error:
            raise self._damaged(str(error)) from error

    def _damaged(self, what: str) -> DatasetError:
        return DatasetError(
            f"{type(self).__name__} data in {self.folder} is corrupted: {what}. Delete the "
            f"folder and pass download=True to fetch it again"
        )

    def _intact(self) -> bool:
        try:
            self._open()
            self._class_names()
        except (OSError, DatasetError):
            return False
        return True

    def _class_names(self) -> list[str]:
        """The class names, one per line of the meta file, checked against the label count."""
        path = self.folder / self.meta_file
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = "\0"
        if "\0" in text:
            raise self._damaged(f"{path} is not a text file of class names")
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if len(names) != self.num_classes:
            raise self._damaged(
                f"{path} names {len(names)} classes, expected {self.num_classes} (one per line)"
            )
        return names

    # ----- the Dataset protocol -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.targets)

    def _item(self, image: torch.Tensor, target: int) -> tuple[Any, Any]:
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._item(self.data[index], self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """A whole batch with one gather (DataLoader calls this when it exists)."""
        images = self.data[torch.as_tensor(indices, dtype=torch.int64)]
        return [
            self._item(image, self.targets[i]) for image, i in zip(images, indices, strict=True)
        ]

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Root location: {self.root}",
            f"    Split: {'Train' if self.train else 'Test'}",
        ]
        lines += [f"    {line}" for line in self.extra_repr().splitlines()]
        for name in ("transform", "target_transform"):
            if getattr(self, name) is not None:
                lines.append(f"    {name}: {getattr(self, name)}")
        return "\n".join(lines)


class CIFAR100(CIFAR10):
    """CIFAR-100 from `root/cifar-100-binary/`; `label` picks the "fine" or "coarse" labels."""

    base_folder = "cifar-100-binary"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
    filename = "cifar-100-binary.tar.gz"
    tgz_md5 = "03b5dce01913d631647c71ecec9e9cb8"
    train_files = ("train.bin",)
    test_files = ("test.bin",)
    label_bytes = 2

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        label: str = "fine",
    ):
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
        self.label = label
        self.num_classes = 100 if label == "fine" else 20
        super().__init__(root, train, transform, target_transform, download)

    @property
    def meta_file(self) -> str:
        return f"{self.label}_label_names.txt"

    def _labels(self, reader: RecordReader) -> np.ndarray:
        return reader.labels if self.label == "fine" else reader.coarse_labels

    def extra_repr(self) -> str:
        return f"Labels: {self.label}"


class _LongTail(CIFAR10):
    """The standard long-tailed training subset (see ltfast.longtail); the test split stays
    balanced. `.indices` are the kept positions in the full split."""

    def __init__(
        self,
        root: str | Path,
        imb_factor: float = 0.01,
        imb_type: str = "exp",
        seed: int = 0,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        **kwargs: Any,
    ):
        check_imbalance(imb_factor, imb_type)
        self.imb_factor, self.imb_type, self.seed = imb_factor, imb_type, seed
        super().__init__(root, train, transform, target_transform, download, **kwargs)

    def _select(self, labels: np.ndarray) -> np.ndarray:
        if not self.train:
            return super()._select(labels)
        return long_tail_subset(
            labels, len(self.classes), self.imb_factor, self.imb_type, self.seed
        )

    def extra_repr(self) -> str:
        lines = [
            super().extra_repr(),
            f"Imbalance: {self.imb_type}, factor {self.imb_factor}, seed {self.seed}",
        ]
        return "\n".join(line for line in lines if line)


class LongTailCIFAR10(_LongTail, CIFAR10):
    """CIFAR-10-LT: `LongTailCIFAR10(root, imb_factor=0.01)` is the 12,406-image set."""


class LongTailCIFAR100(_LongTail, CIFAR100):
    """CIFAR-100-LT: `LongTailCIFAR100(root, imb_factor=0.01)` is the 10,847-image set."""
