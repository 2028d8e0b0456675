"""torchvision's download, the CIFAR "python version" (pickled batches in
`cifar-10-batches-py/` or `cifar-100-python/`), converted once into the binary version that
the compiled reader reads (`cifar-10-batches-bin/`, `cifar-100-binary/`), beside it.

The pickles are md5-checked against torchvision's own table before they are unpickled (an
unpickled file can run code); the binary folder is written into a hidden temporary folder and
renamed into place when complete, with a manifest of its files' digests (ltfast.integrity).
The python version's records are in the binary version's order, and its pixels in the same
CHW byte order, so the conversion is a copy.
"""

from __future__ import annotations

import pickle
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets

from ltfast.download import md5sum
from ltfast.integrity import IntegrityError, write_manifest
from ltfast.synthetic import write_records


@dataclass(frozen=True)
class PythonVersion:
    folder: str  # torchvision's folder
    batches: dict[str, str]  # pickle -> binary file
    label_keys: tuple[str, ...]  # the label columns of a binary record, in order
    meta: str  # the pickle of class names
    names: dict[str, str]  # key of the meta pickle -> binary version's text file
    torchvision_class: type[torchvision.datasets.CIFAR10]  # holds the official md5s

    def official_md5(self) -> dict[str, str]:
        listed = self.torchvision_class.train_list + self.torchvision_class.test_list
        meta = self.torchvision_class.meta
        return {**{name: md5 for name, md5 in listed}, meta["filename"]: meta["md5"]}


# Keyed by the binary version's folder.
VERSIONS = {
    "cifar-10-batches-bin": PythonVersion(
        folder="cifar-10-batches-py",
        batches={
            **{f"data_batch_{i}": f"data_batch_{i}.bin" for i in range(1, 6)},
            "test_batch": "test_batch.bin",
        },
        label_keys=("labels",),
        meta="batches.meta",
        names={"label_names": "batches.meta.txt"},
        torchvision_class=torchvision.datasets.CIFAR10,
    ),
    "cifar-100-binary": PythonVersion(
        folder="cifar-100-python",
        batches={"train": "train.bin", "test": "test.bin"},
        label_keys=("coarse_labels", "fine_labels"),
        meta="meta",
        names={
            "coarse_label_names": "coarse_label_names.txt",
            "fine_label_names": "fine_label_names.txt",
        },
        torchvision_class=torchvision.datasets.CIFAR100,
    ),
}


class ConversionError(ValueError):
    """A python-version folder that cannot be converted; the message names the file."""


def python_folder(root: Path, binary_folder: str) -> Path:
    return root / VERSIONS[binary_folder].folder


def convert(root: Path, binary_folder: str, check_integrity: bool = True) -> Path:
    """Writes `root/binary_folder` from the python version in `root` and returns it. With
    `check_integrity`, every pickle's md5 must be torchvision's first."""
    version = VERSIONS[binary_folder]
    source, target = root / version.folder, root / binary_folder
    if check_integrity:
        _check_md5(source, version)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    try:
        written = scratch / binary_folder
        written.mkdir()
        for name, binary in version.batches.items():
            images, labels = _read_batch(source / name, version.label_keys)
            write_records(written / binary, images, labels)
        names = _read_names(source / version.meta, version.names)
        for key, filename in version.names.items():
            (written / filename).write_text("".join(f"{name}\n" for name in names[key]))
        write_manifest(written, list(version.batches.values()))
        if not target.exists():  # else another process converted it meanwhile
            written.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"ltfast: converted {source} (torchvision's python version) into {target}, once; "
        f"from now on ltfast reads {target}",
        file=sys.stderr,
    )
    return target


def _check_md5(source: Path, version: PythonVersion) -> None:
    for name, expected in version.official_md5().items():
        path = source / name
        if not path.is_file():
            raise FileNotFoundError(f"{source} is incomplete: it has no {name}")
        found = md5sum(path)
        if found != expected:
            raise IntegrityError(
                f"{path} is not torchvision's file: md5 {found}, expected {expected}. Delete "
                f"{source} and download again, or pass check_integrity=False to convert it "
                f"anyway"
            )


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            found = pickle.load(file, encoding="latin1")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} is incomplete: it has no {path.name}") from None
    except Exception as error:  # unpickling raises many types
        raise ConversionError(f"{path} is not a CIFAR python-version pickle ({error})") from None
    if not isinstance(found, dict):
        raise ConversionError(f"{path} does not hold a mapping")
    return found


def _read_batch(path: Path, label_keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    batch = _load(path)
    missing = [k for k in ("data", *label_keys) if k not in batch]
    if missing:
        raise ConversionError(f"{path} lacks {', '.join(missing)}")
    images = np.asarray(batch["data"])
    labels = np.stack([np.asarray(batch[k]) for k in label_keys], axis=1)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ConversionError(
            f"{path}: data must be uint8 (N, 3072), got {images.dtype} {images.shape}"
        )
    if len(labels) != len(images) or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ConversionError(
            f"{path}: {len(labels)} labels for {len(images)} images, or not bytes"
        )
    return images, labels


def _read_names(path: Path, keys: dict[str, str]) -> dict[str, list[str]]:
    meta = _load(path)
    missing = [k for k in keys if not isinstance(meta.get(k), list)]
    if missing:
        raise ConversionError(f"{path} lacks the class names {', '.join(missing)}")
    return {k: [str(name) for name in meta[k]] for k in keys}
