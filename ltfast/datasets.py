"""CIFAR datasets on the compiled reader, with torchvision's contract, and their long-tailed
subsets.

By default `ltfast.CIFAR10` behaves as `torchvision.datasets.CIFAR10`: a `VisionDataset` whose
`.data` is a uint8 (N, 32, 32, 3) NumPy array, `.targets` a list, and whose items are PIL
images passed through `transform` / `target_transform` (or a joint `transforms`). The fast
path is opt-in: `output="tensor"` hands out uint8 (3, 32, 32) tensors, fetches a batch with
one gather (`__getitems__`), and `tensors()` gives the whole split at once for
ltfast.loader.DeviceLoader. No item is ever a view into `.data`, so an in-place transform
cannot change the dataset.

`root` may hold the binary version (`cifar-10-batches-bin/`, `cifar-100-binary/`), read
directly, or torchvision's python version (`cifar-10-batches-py/`, `cifar-100-python/`),
converted once into the binary version beside it (ltfast.python_version). Files are
md5-checked once per version (ltfast.integrity), each through this module's
`check_integrity`, the name torchvision's test harness patches; `check_integrity=False` skips
the checks.

`torchvision.datasets.wrap_dataset_for_transforms_v2` wraps these datasets as it wraps its own
CIFAR classes (an item passes through unchanged, then the transforms): ltfast adds its base
class to torchvision's table of wrappers, under torchvision's CIFAR-10 factory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.datasets import VisionDataset
from torchvision.datasets.vision import StandardTransform
from torchvision.tv_tensors._dataset_wrapper import WRAPPER_FACTORIES

from _ltfast import RecordReader
from ltfast.download import download_and_extract
from ltfast.integrity import IntegrityError, check_integrity, verify, write_manifest
from ltfast.kernels import class_counts
from ltfast.longtail import SUBSETS, check_imbalance, long_tail_subset
from ltfast.provenance import data_digests
from ltfast.python_version import ConversionError, convert, python_folder

OUTPUTS = ("pil", "tensor")


class DatasetError(RuntimeError):
    """Data files that are present but damaged; the message names the file and the fix."""


class CIFAR10(VisionDataset):
    """CIFAR-10 under `root` (binary or python version; see the module's docstring).

    `output="pil"` (default): items as torchvision's, PIL images. `output="tensor"`: uint8
    (3, 32, 32) tensors, for v2 transforms and the fast loaders.
    """

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
        *,
        transforms: Callable | None = None,
        output: str = "pil",
        check_integrity: bool = True,
    ):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        super().__init__(Path(root).expanduser(), transforms, transform, target_transform)
        self.train, self.output, self.check_integrity = train, output, check_integrity
        if download and not self._intact():
            download_and_extract(self.url, self.root, self.filename, self.tgz_md5, self.base_folder)
            write_manifest(self.folder, [*self.train_files, *self.test_files])
        reader = self._open()
        self.classes = self._class_names()
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        labels = self._labels(reader)
        self.indices = self._select(labels)
        self.data: np.ndarray = reader.decode(self.indices, layout="NHWC")
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
        """The reader of this split's files: converted from torchvision's python version
        first if that is all `root` holds, and md5-checked unless check_integrity=False."""
        python = python_folder(self.root, self.base_folder)
        if _absent_or_empty(self.folder) and python.is_dir():
            md5_check = check_integrity if self.check_integrity else None
            try:
                convert(self.root, self.base_folder, md5_check)
            except (IntegrityError, ConversionError) as error:
                raise DatasetError(str(error)) from None
        needed = [*self._paths(), self.folder / self.meta_file]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise FileNotFoundError(self._not_found(missing, python))
        try:  # the reader's size and label checks name the common damage most precisely
            reader = RecordReader(self._paths(), label_bytes=self.label_bytes)
            if self.check_integrity and not all(check_integrity(p) for p in self._paths()):
                verify(self._paths())  # names the file
        except ValueError as error:  # IntegrityError is one
            raise self._damaged(str(error)) from error
        return reader

    def _not_found(self, missing: list[str], python: Path) -> str:
        found = f"{type(self).__name__} data not found: missing {', '.join(missing)}"
        if python.is_dir():  # the folder holds something, so the conversion did not run
            return (
                f"{found}. {python} (torchvision's python version) is converted only into a "
                f"folder that is absent or empty, and {self.folder} holds other files: move it "
                f"away and ltfast converts {python.name}/ into it"
            )
        return (
            f"{found}. Pass download=True to fetch {self.url}, unpack that archive into "
            f"{self.root}, or point root at a folder holding torchvision's {python.name}/"
        )

    def digests(self) -> dict[str, str]:
        """The md5 of each file this split reads, for a run's provenance."""
        return data_digests([*self._paths(), self.folder / self.meta_file], self.check_integrity)

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

    def _item(self, image: Any, target: int) -> tuple[Any, Any]:
        # As torchvision's CIFAR10: `transform` and `target_transform` are read at each item,
        # so setting them after construction works; a joint `transforms` replaces both (as in
        # VisionDataset, whose `transforms` otherwise wraps the two, read too early to use).
        if self.transforms is not None and not isinstance(self.transforms, StandardTransform):
            return self.transforms(image, target)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """(image, target): a PIL image, or with output="tensor" a new uint8 (3, 32, 32)
        tensor; then the transforms."""
        pixels = self.data[index]
        if self.output == "pil":
            return self._item(Image.fromarray(pixels), self.targets[index])
        return self._item(torch.from_numpy(pixels).permute(2, 0, 1).clone(), self.targets[index])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """A whole batch (the DataLoader calls this when it exists): with output="tensor",
        one gather into a new (B, 3, 32, 32) tensor; PIL images one by one otherwise."""
        if self.output == "pil":
            return [self[i] for i in indices]
        batch = torch.from_numpy(self.data[np.asarray(indices, dtype=np.int64)])
        images = batch.permute(0, 3, 1, 2).contiguous()
        return [
            self._item(image, self.targets[i]) for image, i in zip(images, indices, strict=True)
        ]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split at once, for loaders that batch on the device: images as a uint8
        (N, 3, 32, 32) tensor and targets as int64. The images share `.data`'s memory (NHWC
        strides; `.contiguous()` copies) and must not be written to."""
        images = torch.from_numpy(self.data).permute(0, 3, 1, 2)
        return images, torch.as_tensor(self.targets, dtype=torch.int64)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


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
        *,
        label: str = "fine",
        **options: Any,
    ):
        """`options`: transforms, output, check_integrity (see CIFAR10)."""
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
        self.label = label
        self.num_classes = 100 if label == "fine" else 20
        super().__init__(root, train, transform, target_transform, download, **options)

    @property
    def meta_file(self) -> str:
        return f"{self.label}_label_names.txt"

    def _labels(self, reader: RecordReader) -> np.ndarray:
        return reader.labels if self.label == "fine" else reader.coarse_labels

    def _open(self) -> RecordReader:
        try:
            return super()._open()
        except FileNotFoundError:
            fine = self.folder / "fine_label_names.txt"
            if self.label == "coarse" and fine.is_file():
                raise DatasetError(
                    f"{self.folder} has no coarse labels: it was converted from a python version "
                    f"whose pickles hold only the fine ones (all torchvision reads). "
                    f"label='coarse' needs the official cifar-100-python/ or binary archive"
                ) from None
            raise

    def extra_repr(self) -> str:  # torchvision's, with the label line only where it differs
        labels = "" if self.label == "fine" else f"\nLabels: {self.label}"
        return f"{super().extra_repr()}{labels}"


def _absent_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


# torchvision's v2 wrapper finds a dataset's factory by its classes; ltfast's CIFAR datasets
# get the one torchvision's CIFAR10 has (items unchanged, then the transforms).
WRAPPER_FACTORIES.register(CIFAR10)(WRAPPER_FACTORIES[torchvision.datasets.CIFAR10])


class _LongTail(CIFAR10):
    """The standard long-tailed training subset (see ltfast.longtail); the test split stays
    balanced. `.indices` are the kept positions in the full split. LDAM-DRW's names work too
    (`IMBALANCECIFAR10(root, imb_type=, imb_factor=, rand_number=, ...)`, as keywords), with
    its `get_cls_num_list()`, and give the same images in the same order."""

    def __init__(
        self,
        root: str | Path,
        imb_factor: float = 0.01,
        imb_type: str = "exp",
        seed: int | None = None,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        *,
        rand_number: int | None = None,
        subset: str = "ldam",
        **options: Any,
    ):
        """`seed` (alias `rand_number`, LDAM-DRW's name) picks the subset; default 0.
        `subset`: "ldam" (the standard) or "first_n" (each class's first images in file
        order; see ltfast.longtail). `options`: transforms, output, check_integrity, and
        CIFAR100's label."""
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
        if seed is not None and rand_number is not None and seed != rand_number:
            raise ValueError(
                f"seed ({seed}) and rand_number ({rand_number}) name the same thing; pass one"
            )
        check_imbalance(imb_factor, imb_type)
        self.imb_factor, self.imb_type, self.subset = imb_factor, imb_type, subset
        self.seed = next((s for s in (seed, rand_number) if s is not None), 0)
        super().__init__(root, train, transform, target_transform, download, **options)

    def _select(self, labels: np.ndarray) -> np.ndarray:
        if not self.train:
            return super()._select(labels)
        return long_tail_subset(
            labels, len(self.classes), self.imb_factor, self.imb_type, self.seed, self.subset
        )

    @property
    def cls_num(self) -> int:
        """LDAM-DRW's name for the number of classes."""
        return len(self.classes)

    def get_cls_num_list(self) -> list[int]:
        """Training images per class, LDAM-DRW's `get_cls_num_list()`."""
        return self.class_counts.tolist()

    def extra_repr(self) -> str:
        imbalance = (
            f"Imbalance: {self.imb_type}, factor {self.imb_factor}, subset {self.subset}, "
            f"seed {self.seed}"
        )
        return f"{super().extra_repr()}\n{imbalance}"


class LongTailCIFAR10(_LongTail, CIFAR10):
    """CIFAR-10-LT: `LongTailCIFAR10(root, imb_factor=0.01)` is the 12,406-image set."""


class LongTailCIFAR100(_LongTail, CIFAR100):
    """CIFAR-100-LT: `LongTailCIFAR100(root, imb_factor=0.01)` is the 10,847-image set."""
