"""torchvision's python version, converted safely: a crafted pickle runs no code (with or
without the md5 checks), labels and class names are validated before the binary folder is put
in place, a killed conversion's scratch folder is cleaned up, a read-only root is named, and
an empty or partial manifest weakens no official digest."""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import make_cifar10_root, trust_python_version, write_python_version

import ltfast
from ltfast.datasets import DatasetError
from ltfast.integrity import MANIFEST, OFFICIAL_MD5, IntegrityError, reference_digests, verify
from ltfast.synthetic import write_records


class RunsCode:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def python_root(tmp_path) -> Path:
    return write_python_version(make_cifar10_root(tmp_path / "binary"), tmp_path / "python")


def batch_path(root: Path, name: str = "data_batch_1") -> Path:
    return root / "cifar-10-batches-py" / name


def rewrite(path: Path, change, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    with open(path, "rb") as file:
        entry = pickle.load(file)
    change(entry)
    path.write_bytes(pickle.dumps(entry, protocol=protocol))


@pytest.mark.parametrize("check_integrity", [False, True])
def test_a_crafted_pickle_runs_no_code(python_root, tmp_path, monkeypatch, check_integrity):
    marker = tmp_path / "code-ran"
    rewrite(batch_path(python_root), lambda entry: entry.update(extra=RunsCode(marker)))
    if check_integrity:  # even a file the md5 table vouches for is unpickled safely
        trust_python_version(monkeypatch, python_root)
    with pytest.raises(DatasetError, match=r"data_batch_1 .*names posix\.system"):
        ltfast.CIFAR10(python_root, check_integrity=check_integrity)
    assert not marker.exists()
    assert not (python_root / "cifar-10-batches-bin").exists()


def test_a_pickled_torch_tensor_is_the_documented_refusal(python_root):
    """torchvision's own test data pickles torch tensors; ltfast reads NumPy arrays only."""
    as_tensor = lambda entry: entry.update(data=torch.from_numpy(entry["data"]))  # noqa: E731
    rewrite(batch_path(python_root), as_tensor)
    refusal = r"data_batch_1 .*names torch\..* \(a torch tensor: pickle NumPy arrays"
    with pytest.raises(DatasetError, match=refusal):
        ltfast.CIFAR10(python_root, check_integrity=False)
    assert not (python_root / "cifar-10-batches-bin").exists()


@pytest.mark.parametrize("protocol", [2, 5])  # the official files' protocol, and the newest
def test_pickles_of_every_protocol_convert(python_root, tmp_path, protocol):
    for name in ("data_batch_1", "test_batch"):
        rewrite(batch_path(python_root, name), lambda entry: None, protocol)
    converted = ltfast.CIFAR10(python_root, check_integrity=False)
    binary = ltfast.CIFAR10(tmp_path / "binary")
    np.testing.assert_array_equal(converted.data, binary.data)
    assert converted.targets == binary.targets


def test_a_label_out_of_range_is_named_in_its_pickle(python_root):
    rewrite(
        batch_path(python_root, "data_batch_3"), lambda entry: entry["labels"].__setitem__(7, 10)
    )
    with pytest.raises(DatasetError, match=r"data_batch_3: labels\[7\] is 10, outside 0\.\.9"):
        ltfast.CIFAR10(python_root, check_integrity=False)
    assert not (python_root / "cifar-10-batches-bin").exists()


def test_class_names_must_be_ten(python_root):
    meta = python_root / "cifar-10-batches-py" / "batches.meta"
    rewrite(meta, lambda entry: entry["label_names"].pop())
    with pytest.raises(DatasetError, match="label_names must be 10 non-empty one-line names"):
        ltfast.CIFAR10(python_root, check_integrity=False)


def test_a_killed_conversions_scratch_folder_is_removed(python_root):
    dead, live = python_root / ".convert-999999999-x", python_root / f".convert-{os.getpid()}-y"
    for folder in (dead, live):
        (folder / "cifar-10-batches-bin").mkdir(parents=True)
    ltfast.CIFAR10(python_root, check_integrity=False)
    assert not dead.exists()  # its process is gone
    assert live.exists()  # a live process's conversion is left alone


def test_a_read_only_root_names_where_the_copy_can_go(python_root, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(python_root), str(read_only)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(read_only)], check=True)
        with pytest.raises(DatasetError, match=r"cannot be written .*Copy .* into a writable"):
            ltfast.CIFAR10(read_only, check_integrity=False)
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False)


@pytest.mark.parametrize("manifest", ["{}", '{"data_batch_1.bin": "0"}'])
def test_an_empty_or_partial_manifest_keeps_the_official_digests(tmp_path, manifest):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    images = np.zeros((3, 3, 32, 32), np.uint8)
    write_records(folder / "data_batch_2.bin", images, np.zeros((3, 1), np.uint8))
    (folder / MANIFEST).write_text(manifest)
    official = OFFICIAL_MD5["cifar-10-batches-bin"]
    assert reference_digests(folder)["data_batch_2.bin"] == official["data_batch_2.bin"]
    with pytest.raises(IntegrityError, match=r"data_batch_2\.bin is corrupted or was modified"):
        verify([folder / "data_batch_2.bin"])
