"""torchvision's download, the CIFAR "python version" (pickled batches in
`cifar-10-batches-py/` or `cifar-100-python/`), converted once into the binary version that
the compiled reader reads (`cifar-10-batches-bin/`, `cifar-100-binary/`), beside it.

The pickles are md5-checked against torchvision's own table before they are unpickled, and
unpickled with a restricted unpickler that admits only what the official files hold (dicts,
lists, str and bytes, and NumPy's array reconstruction): a crafted pickle cannot run code, with
or without the md5 checks. Labels and class names are validated before the binary folder,
written into a hidden scratch folder `.convert-PID-*`, is renamed into place with a manifest of
its files' digests (ltfast.integrity); a scratch folder that a killed conversion left behind is
removed by the next one.
The python version's records are in the binary version's order, and its pixels in the same
CHW byte order, so the conversion is a copy.
"""

from __future__ import annotations

import codecs
import errno
import importlib
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torchvision.datasets

from ltfast.download import md5sum
from ltfast.integrity import IntegrityError, check_integrity, write_manifest
from ltfast.processes import alive
from ltfast.synthetic import write_records

Md5Check = Callable[[Path, str], bool]  # (file, expected md5) -> whether it has it


@dataclass(frozen=True)
class PythonVersion:
    folder: str  # torchvision's folder
    batches: dict[str, str]  # pickle -> binary file
    label_keys: tuple[str, ...]  # the label columns of a binary record, in order
    classes: tuple[int, ...]  # the number of classes of each label column
    meta: str  # the pickle of class names
    names: dict[str, str]  # key of the meta pickle -> binary version's text file
    name_counts: dict[str, int]  # key of the meta pickle -> how many names it holds
    # Names a python version may lack (torchvision reads only the fine labels, and test
    # harnesses write only those), each with its label column: without the names, the column
    # is written as zeros and its names file is left out, so nothing can read it as labels.
    optional: dict[str, str]
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
        classes=(10,),
        meta="batches.meta",
        names={"label_names": "batches.meta.txt"},
        name_counts={"label_names": 10},
        optional={},
        torchvision_class=torchvision.datasets.CIFAR10,
    ),
    "cifar-100-binary": PythonVersion(
        folder="cifar-100-python",
        batches={"train": "train.bin", "test": "test.bin"},
        label_keys=("coarse_labels", "fine_labels"),
        classes=(20, 100),
        meta="meta",
        names={
            "coarse_label_names": "coarse_label_names.txt",
            "fine_label_names": "fine_label_names.txt",
        },
        name_counts={"coarse_label_names": 20, "fine_label_names": 100},
        optional={"coarse_label_names": "coarse_labels"},
        torchvision_class=torchvision.datasets.CIFAR100,
    ),
}


class ConversionError(ValueError):
    """A python-version folder that cannot be converted; the message names the file."""


def python_folder(root: Path, binary_folder: str) -> Path:
    return root / VERSIONS[binary_folder].folder


def convert(root: Path, binary_folder: str, md5_check: Md5Check | None = check_integrity) -> Path:
    """Writes `root/binary_folder` from the python version in `root` and returns it, into a
    folder that is absent or empty. With `md5_check` (None: no check), every pickle's md5
    must be torchvision's first."""
    version = VERSIONS[binary_folder]
    source, target = root / version.folder, root / binary_folder
    if md5_check is not None:
        _check_md5(source, version, md5_check)
    names = _read_names(source / version.meta, version)
    absent = {label for key, label in version.optional.items() if key not in names}
    batches = {name: _read_batch(source / name, version, absent) for name in version.batches}
    _remove_stale_scratch(root)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{os.getpid()}-", dir=root))
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        raise ConversionError(
            f"{root} cannot be written ({error.strerror}), so {source} (torchvision's python "
            f"version) cannot be converted beside it into {target.name}/. Copy {source} into a "
            f"writable folder and pass that folder as root: the converted copy goes there"
        ) from None
    try:
        written = scratch / binary_folder
        written.mkdir()
        for name, binary in version.batches.items():
            write_records(written / binary, *batches[name])
        for key, found in names.items():
            (written / version.names[key]).write_text("".join(f"{name}\n" for name in found))
        write_manifest(written, list(version.batches.values()))
        _put_in_place(written, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"ltfast: converted {source} (torchvision's python version) into {target}, once; "
        f"from now on ltfast reads {target}",
        file=sys.stderr,
    )
    return target


def _put_in_place(written: Path, target: Path) -> None:
    """Renames the converted folder onto `target`: onto nothing, or onto an empty folder
    (rename(2) replaces an empty directory); a full one is another process's conversion,
    done meanwhile, and stays."""
    try:
        written.rename(target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


def _check_md5(source: Path, version: PythonVersion, md5_check: Md5Check) -> None:
    for name, expected in version.official_md5().items():
        path = source / name
        if not path.is_file():
            raise FileNotFoundError(f"{source} is incomplete: it has no {name}")
        if not md5_check(path, expected):
            raise IntegrityError(
                f"{path} is not torchvision's file: md5 {md5sum(path)}, expected {expected}. "
                f"Delete {source} and download again, or pass check_integrity=False to convert "
                f"it anyway"
            )


SCRATCH = ".convert-"


def _remove_stale_scratch(root: Path) -> None:
    """Removes the scratch folders of conversions whose process has gone (killed part-way);
    a live process's conversion is left alone."""
    for folder in root.glob(f"{SCRATCH}*"):
        pid = folder.name[len(SCRATCH) :].split("-", 1)[0]
        if folder.is_dir() and (not pid.isdigit() or not alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _numpy_function(module: str, name: str):
    """NumPy's array reconstruction under NumPy 2's module name or NumPy 1's."""
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"NumPy has no {module}.{name}")


# The globals a CIFAR pickle may name: NumPy's array reconstruction (protocol 2, as in the
# official files, and protocol 5's buffer form) and protocol 2's spelling of bytes in Python 3
# (codecs' encode of a str, which calls nothing else), keyed by module (numpy.core and
# numpy._core submodules by their last part) and name.
ALLOWED_GLOBALS = {
    ("_codecs", "encode"): lambda: codecs.encode,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("multiarray", "_reconstruct"): lambda: _numpy_function("multiarray", "_reconstruct"),
    ("numeric", "_frombuffer"): lambda: _numpy_function("numeric", "_frombuffer"),
}


class CifarUnpickler(pickle.Unpickler):
    """Unpickles what the official CIFAR pickles hold and nothing else: built-in containers,
    strings and numbers (which need no global), and NumPy arrays. Every other global a pickle
    names (a function to call, a class to build) is refused by name before anything runs."""

    def find_class(self, module: str, name: str):
        key = (module, name)
        if module.startswith(("numpy.core.", "numpy._core.")):
            key = (module.rsplit(".", 1)[1], name)
        if key not in ALLOWED_GLOBALS:
            tensor = " (a torch tensor: pickle NumPy arrays, as the official files do)"
            raise pickle.UnpicklingError(
                f"it names {module}.{name}{tensor if module.startswith('torch') else ''}, "
                f"which a CIFAR pickle never holds: refused without running it; only NumPy "
                f"arrays, lists, dicts, str and bytes are read"
            )
        return ALLOWED_GLOBALS[key]()


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as file:
            found = CifarUnpickler(file, encoding="latin1").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} is incomplete: it has no {path.name}") from None
    except Exception as error:  # unpickling raises many types
        raise ConversionError(f"{path} is not a CIFAR python-version pickle ({error})") from None
    if not isinstance(found, dict):
        raise ConversionError(f"{path} does not hold a mapping")
    return found


def _read_batch(
    path: Path, version: PythonVersion, absent: set[str]
) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images (N, 3072) and labels (N, columns), each label in its class range; the
    columns in `absent` (whose names the meta lacks) are zeros."""
    label_keys = version.label_keys
    batch = _load(path)
    missing = [k for k in ("data", *label_keys) if k not in batch and k not in absent]
    if missing:
        raise ConversionError(f"{path} lacks {', '.join(missing)}")
    images = np.asarray(batch["data"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ConversionError(
            f"{path}: data must be uint8 (N, 3072), got {images.dtype} {images.shape}"
        )
    columns = {
        k: np.zeros(len(images), np.int64) if k in absent else np.asarray(batch[k])
        for k in label_keys
    }
    wrong = [
        f"{k} {c.dtype} {c.shape}"
        for k, c in columns.items()
        if c.shape != (len(images),) or c.dtype.kind not in "iu"
    ]
    if wrong:
        raise ConversionError(
            f"{path}: labels must be one integer per image ({len(images)} images), got "
            f"{', '.join(wrong)}"
        )
    labels = np.stack(list(columns.values()), axis=1)
    for column, (key, classes) in enumerate(zip(label_keys, version.classes, strict=True)):
        bad = np.flatnonzero((labels[:, column] < 0) | (labels[:, column] >= classes))
        if bad.size:
            raise ConversionError(
                f"{path}: {key}[{bad[0]}] is {labels[bad[0], column]}, outside 0..{classes - 1} "
                f"({bad.size} such labels); this is not a CIFAR batch"
            )
    return images, labels.astype(np.uint8)


def _read_names(path: Path, version: PythonVersion) -> dict[str, list[str]]:
    """The class names of each label column, as many as its classes, one line each; an
    optional list that the meta lacks is left out."""
    meta = _load(path)
    keys = [k for k in version.names if k in meta or k not in version.optional]
    missing = [k for k in keys if not isinstance(meta.get(k), list)]
    if missing:
        raise ConversionError(f"{path} lacks the class names {', '.join(missing)}")
    names = {k: [str(name) for name in meta[k]] for k in keys}
    for key, found in names.items():
        expected = version.name_counts[key]
        if len(found) != expected or any(not n or "\n" in n for n in found):
            raise ConversionError(
                f"{path}: {key} must be {expected} non-empty one-line names, got {len(found)}"
            )
    return names
