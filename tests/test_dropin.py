"""ltfast.CIFAR10 / CIFAR100 as drop-ins for torchvision's classes, on the same images:
torchvision's python version is written from the binary files, both classes read their own
folder form, and a script sees the same items, batches, attributes and repr. Also the
long-tail codebases' IMBALANCECIFAR10, and the conversion of a python-version folder."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from cifar_files import (
    make_cifar10_root,
    make_cifar100_root,
    trust_python_version,
    write_python_version,
)
from torch.utils.data import DataLoader
from torchvision import transforms as v1
from torchvision.datasets import VisionDataset
from torchvision.transforms import v2

import ltfast
from ltfast.datasets import DatasetError
from ltfast.python_version import CifarUnpickler

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """(a root holding only torchvision's cifar-10-batches-py, one holding only the binary
    version) of the same images."""
    binary = make_cifar10_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python")
    trust_python_version(monkeypatch, python)
    return python, binary


def classic_pipeline() -> v1.Compose:
    return v1.Compose([
        v1.RandomCrop(32, padding=4),
        v1.RandomHorizontalFlip(),
        v1.ToTensor(),
        v1.Normalize(MEAN, STD),
    ])  # fmt: skip


def v2_pipeline() -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.RandomCrop(32, padding=4),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(MEAN, STD),
    ])  # fmt: skip


def text(label: int) -> str:
    return f"class {label}"


def batches(dataset, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    return list(DataLoader(dataset, batch_size=128, shuffle=True, num_workers=2))


@pytest.mark.parametrize("pipeline", [classic_pipeline, v2_pipeline], ids=["v1", "v2"])
def test_the_classic_script_gives_torchvisions_tensors(roots, pipeline):
    python = roots[0]
    theirs = torchvision.datasets.CIFAR10(str(python), train=True, transform=pipeline())
    for root in roots:  # from the python version (converted once) and from the binary one
        ours = ltfast.CIFAR10(str(root), train=True, transform=pipeline())
        for (x, y), (tx, ty) in zip(batches(ours, 7), batches(theirs, 7), strict=True):
            assert torch.equal(x, tx) and torch.equal(y, ty)


def test_the_contract_matches_torchvision(roots):
    python, binary = roots
    for train in (True, False):
        theirs = torchvision.datasets.CIFAR10(str(python), train=train, target_transform=text)
        ours = ltfast.CIFAR10(str(binary), train=train, target_transform=text)
        assert isinstance(ours, VisionDataset)
        assert isinstance(ours.data, np.ndarray) and ours.data.dtype == np.uint8
        np.testing.assert_array_equal(ours.data, theirs.data)  # (N, 32, 32, 3)
        assert isinstance(ours.targets, list) and ours.targets == theirs.targets
        assert ours.classes == theirs.classes and ours.class_to_idx == theirs.class_to_idx
        assert repr(ours) == repr(theirs).replace(str(python), str(binary))
        for index in (0, 5, len(theirs) - 1):
            (image, target), (their_image, their_target) = ours[index], theirs[index]
            assert image.mode == their_image.mode and target == their_target
            assert np.array_equal(np.asarray(image), np.asarray(their_image))
    mean = ours.data.mean(axis=(0, 1, 2))  # what scripts compute on torchvision's .data
    np.testing.assert_allclose(mean, theirs.data.mean(axis=(0, 1, 2)))


def test_joint_transforms_and_transforms_set_later(roots):
    _, binary = roots
    joint = ltfast.CIFAR10(binary, transforms=lambda image, target: (image.size, -target))
    assert joint[3] == ((32, 32), -joint.targets[3])
    later = ltfast.CIFAR10(binary)
    later.transform = v1.ToTensor()  # as scripts do for their test set
    assert later[3][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="Only transforms or transform"):
        ltfast.CIFAR10(binary, transform=v1.ToTensor(), transforms=lambda i, t: (i, t))


def test_a_python_version_alone_is_converted_once(roots, capsys):
    python, binary = roots
    first = ltfast.CIFAR10(python)
    assert "converted" in capsys.readouterr().err
    assert (python / "cifar-10-batches-bin" / ".ltfast-md5.json").is_file()
    second = ltfast.LongTailCIFAR10(python, imb_factor=0.1)
    assert "converted" not in capsys.readouterr().err
    np.testing.assert_array_equal(first.data, ltfast.CIFAR10(binary).data)
    np.testing.assert_array_equal(second.data, ltfast.LongTailCIFAR10(binary, imb_factor=0.1).data)
    assert not list(python.glob(".convert-*"))  # its scratch folder is gone


def test_a_tampered_python_version_is_refused_before_unpickling(roots, monkeypatch):
    python, _ = roots
    batch = python / "cifar-10-batches-py" / "data_batch_2"
    content = bytearray(batch.read_bytes())
    content[len(content) // 2] ^= 1  # a pixel
    batch.write_bytes(bytes(content))
    called = []
    monkeypatch.setattr(CifarUnpickler, "load", lambda self: called.append(1))
    with pytest.raises(DatasetError, match=r"data_batch_2 is not torchvision's file: md5"):
        ltfast.CIFAR10(python)
    assert not called and not (python / "cifar-10-batches-bin").exists()


def test_check_integrity_false_converts_an_unlisted_python_version(tmp_path):
    binary = make_cifar10_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python")  # md5s not in torchvision's table
    with pytest.raises(DatasetError, match="is not torchvision's file"):
        ltfast.CIFAR10(python)
    converted = ltfast.CIFAR10(python, check_integrity=False)
    np.testing.assert_array_equal(converted.data, ltfast.CIFAR10(binary).data)


def test_cifar100s_python_version(tmp_path, monkeypatch):
    binary = make_cifar100_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python", cifar100=True)
    trust_python_version(monkeypatch, python, cifar100=True)
    theirs = torchvision.datasets.CIFAR100(str(python))
    ours = ltfast.CIFAR100(str(python))
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert ours.targets == theirs.targets and ours.classes == theirs.classes
    coarse = ltfast.CIFAR100(str(python), label="coarse")
    assert coarse.targets == [t // 5 for t in ours.targets]
    assert ltfast.LongTailCIFAR100(str(python), imb_factor=0.1).get_cls_num_list()[-1] == 1


class ImbalanceCIFAR10(torchvision.datasets.CIFAR10):
    """The field's class, rebuilt from its description (LDAM-DRW's IMBALANCECIFAR10, copied
    into BagofTricks-LT, MiSLAS, BBN, PaCo): per-class counts n_max * imb_factor^(c/(C-1)),
    then for each class in order, np.random.seed(rand_number) once and a shuffle of its
    positions, keeping the first n_c."""

    def __init__(self, root, imb_type="exp", imb_factor=0.01, rand_number=0, train=True,
                 transform=None, target_transform=None, download=False):  # fmt: skip
        super().__init__(root, train, transform, target_transform, download)
        np.random.seed(rand_number)  # noqa: NPY002
        n_max, targets = len(self.data) / 10, np.array(self.targets)
        counts = [int(n_max * imb_factor ** (c / 9.0)) for c in range(10)]
        keep = []
        for c, n in enumerate(counts):
            positions = np.where(targets == c)[0]
            np.random.shuffle(positions)  # noqa: NPY002
            keep.extend(positions[:n])
        self.data, self.targets, self.counts = self.data[keep], targets[keep].tolist(), counts

    def get_cls_num_list(self):
        return self.counts


def test_ldam_drws_class_is_replaced_by_keywords(roots):
    python, binary = roots
    arguments = {
        "imb_type": "exp", "imb_factor": 0.1, "rand_number": 3, "train": True,
        "transform": classic_pipeline(), "target_transform": None, "download": False,
    }  # fmt: skip
    theirs = ImbalanceCIFAR10(root=str(python), **arguments)
    ours = ltfast.LongTailCIFAR10(root=str(binary), **arguments)
    assert ours.get_cls_num_list() == theirs.get_cls_num_list()
    np.testing.assert_array_equal(ours.data, theirs.data)  # same images, same order
    assert ours.targets == theirs.targets
    for (x, y), (tx, ty) in zip(batches(ours, 11), batches(theirs, 11), strict=True):
        assert torch.equal(x, tx) and torch.equal(y, ty)


def test_integrity_is_checked_once_per_file_version(roots, monkeypatch):
    _, binary = roots
    hashed = []
    original = ltfast.integrity.md5sum
    monkeypatch.setattr(ltfast.integrity, "md5sum", lambda p: hashed.append(p) or original(p))
    ltfast.CIFAR10(binary)
    ltfast.CIFAR10(binary)
    assert len(hashed) == 5  # the five training files, once
    batch = binary / "cifar-10-batches-bin" / "data_batch_1.bin"
    stamp = batch.stat()
    import os

    os.utime(batch, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # touched
    ltfast.CIFAR10(binary)
    assert [p.name for p in hashed[5:]] == ["data_batch_1.bin"]


def test_an_in_place_edit_with_size_and_mtime_put_back_is_hashed_again(roots):
    _, binary = roots
    ltfast.CIFAR10(binary)  # verified and cached
    batch = binary / "cifar-10-batches-bin" / "data_batch_2.bin"
    stamp = batch.stat()
    with open(batch, "r+b") as file:  # one pixel byte changed in place: same size
        file.seek(5)
        byte = file.read(1)
        file.seek(5)
        file.write(bytes([byte[0] ^ 0xFF]))
    import os

    os.utime(batch, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the mtime put back
    assert batch.stat().st_size == stamp.st_size and batch.stat().st_mtime_ns == stamp.st_mtime_ns
    with pytest.raises(ltfast.datasets.DatasetError, match=r"data_batch_2\.bin is corrupted"):
        ltfast.CIFAR10(binary)


def test_a_read_only_cache_only_costs_time(roots, monkeypatch, tmp_path):
    _, binary = roots
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert len(ltfast.CIFAR10(binary)) == 1000


def test_absent_data_names_both_folder_forms(roots):
    _, binary = roots
    shutil.rmtree(binary / "cifar-10-batches-bin")
    with pytest.raises(FileNotFoundError, match=r"download=True.*cifar-10-batches-py"):
        ltfast.CIFAR10(binary)


def test_the_real_cifar10_matches_torchvision(real_cifar10_root, tmp_path, monkeypatch):
    python = write_python_version(real_cifar10_root, tmp_path)
    trust_python_version(monkeypatch, python)
    for train in (True, False):
        theirs = torchvision.datasets.CIFAR10(str(python), train=train)
        ours = ltfast.CIFAR10(real_cifar10_root, train=train)  # against the official md5s
        np.testing.assert_array_equal(ours.data, theirs.data)
        assert ours.targets == theirs.targets and ours.classes == theirs.classes


def test_cifar100s_repr_is_torchvisions(tmp_path, monkeypatch):
    binary = make_cifar100_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python", cifar100=True)
    trust_python_version(monkeypatch, python, cifar100=True)
    for train in (True, False):
        theirs = torchvision.datasets.CIFAR100(str(python), train=train, target_transform=text)
        ours = ltfast.CIFAR100(str(binary), train=train, target_transform=text)
        assert repr(ours) == repr(theirs).replace(str(python), str(binary))
    coarse = repr(ltfast.CIFAR100(str(binary), label="coarse"))  # what torchvision has not
    assert coarse.endswith("Split: Train\n    Labels: coarse")


def test_a_cifar100_python_version_without_coarse_labels(tmp_path, monkeypatch):
    binary = make_cifar100_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python", cifar100=True, coarse=False)
    trust_python_version(monkeypatch, python, cifar100=True)
    for train in (True, False):
        theirs = torchvision.datasets.CIFAR100(str(python), train=train)
        ours = ltfast.CIFAR100(str(python), train=train)
        np.testing.assert_array_equal(ours.data, theirs.data)
        assert ours.targets == theirs.targets and ours.classes == theirs.classes
    converted = python / "cifar-100-binary"
    assert not (converted / "coarse_label_names.txt").exists()  # so nothing reads the zeros
    with pytest.raises(DatasetError, match=r"cifar-100-binary has no coarse labels: .* fine"):
        ltfast.CIFAR100(str(python), label="coarse")


def test_an_empty_binary_folder_does_not_block_conversion(roots):
    python, binary = roots
    (python / "cifar-10-batches-bin").mkdir()  # as left by a tool that made the folder only
    np.testing.assert_array_equal(ltfast.CIFAR10(python).data, ltfast.CIFAR10(binary).data)


def test_a_binary_folder_holding_other_files_is_named_as_what_blocks_conversion(roots):
    python, _ = roots
    (python / "cifar-10-batches-bin").mkdir()
    (python / "cifar-10-batches-bin" / "notes.txt").write_text("a user's file")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-bin holds other files: move"):
        ltfast.CIFAR10(python)
    assert (python / "cifar-10-batches-bin" / "notes.txt").read_text() == "a user's file"


def test_torchvisions_v2_wrapper_wraps_ltfasts_datasets(roots):
    python, binary = roots
    wrap = torchvision.datasets.wrap_dataset_for_transforms_v2
    theirs = wrap(torchvision.datasets.CIFAR10(str(python), transform=v2_pipeline()))
    ours = wrap(ltfast.CIFAR10(binary, transform=v2_pipeline()))
    assert isinstance(ours, ltfast.CIFAR10) and len(ours) == len(theirs)
    for (x, y), (tx, ty) in zip(batches(ours, 5), batches(theirs, 5), strict=True):
        assert torch.equal(x, tx) and torch.equal(y, ty)
    calls = []

    def joint(image, target):
        calls.append(1)
        return v2.functional.horizontal_flip(v2.functional.to_image(image)), target + 100

    plain = ltfast.CIFAR10(binary, transforms=joint)
    expected = plain[3]
    calls.clear()
    wrapped = wrap(plain)
    image, target = wrapped[3]
    assert len(calls) == 1  # the wrapper applies the joint transforms, and only once
    assert torch.equal(image, expected[0]) and target == expected[1]
    subset = ltfast.LongTailCIFAR10(binary, imb_factor=0.1, output="tensor")
    wrapped = wrap(subset)  # found through the base class
    assert torch.equal(wrapped[7][0], subset[7][0]) and wrapped[7][1] == subset[7][1]


def test_check_integrity_keeps_torchvisions_contract(roots):
    _, binary = roots
    batch = binary / "cifar-10-batches-bin" / "data_batch_1.bin"
    md5 = hashlib.md5(batch.read_bytes()).hexdigest()
    check = ltfast.datasets.check_integrity
    assert check(batch) and check(str(batch), md5)  # its reference (the manifest), or md5
    assert not check(batch, "0" * 32) and not check(batch.with_name("absent.bin"))
    content = bytearray(batch.read_bytes())
    content[9] ^= 1  # a pixel
    batch.write_bytes(bytes(content))
    assert not check(batch) and check(batch, hashlib.md5(content).hexdigest())


def test_patching_check_integrity_as_torchvisions_harness_does_turns_it_off(tmp_path, monkeypatch):
    binary = make_cifar10_root(tmp_path / "binary")
    python = write_python_version(binary, tmp_path / "python")  # md5s not in torchvision's table
    with pytest.raises(DatasetError, match="is not torchvision's file"):
        ltfast.CIFAR10(python)
    monkeypatch.setattr(ltfast.datasets, "check_integrity", lambda *args: True)
    np.testing.assert_array_equal(ltfast.CIFAR10(python).data, ltfast.CIFAR10(binary).data)


TORCHVISION_SUBCLASSES = """
import numpy as np
import {module} as upstream
import ltfast


def numpy_batch(self, root, name, num_images):
    # The official files pickle NumPy arrays; the harness pickles a torch tensor, which
    # ltfast refuses to unpickle (a deliberate difference, see the README).
    rng = np.random.RandomState(0)
    data = rng.randint(0, 256, size=(num_images, 32 * 32 * 3), dtype=np.uint8)
    labels = rng.randint(0, self._VERSION_CONFIG["num_categories"], size=num_images).tolist()
    content = {{"data": data, self._VERSION_CONFIG["labels_key"]: labels}}
    self._create_binary_file(root, name, content)


class TestLtfastCIFAR10(upstream.CIFAR10TestCase):
    DATASET_CLASS = ltfast.CIFAR10
    _create_batch_file = numpy_batch


class TestLtfastCIFAR100(upstream.CIFAR100):
    DATASET_CLASS = ltfast.CIFAR100
    _create_batch_file = numpy_batch
"""


def test_torchvisions_own_cifar_test_classes_pass(tmp_path):
    """torchvision's CIFAR10TestCase and CIFAR100 (its test/ folder: datasets_utils.py and a
    module holding the two classes, test_datasets.py by default), with DATASET_CLASS set to
    ltfast's. Not vendored: LTFAST_TORCHVISION_TESTS points at a copy of that folder."""
    folder = os.environ.get("LTFAST_TORCHVISION_TESTS")
    if not folder:
        pytest.skip("LTFAST_TORCHVISION_TESTS is not set: no copy of torchvision's test/ folder")
    module = os.environ.get("LTFAST_TORCHVISION_CIFAR_MODULE", "test_datasets")
    test = tmp_path / "test_ltfast_cifar.py"
    test.write_text(TORCHVISION_SUBCLASSES.format(module=module))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]
    assert re.search(r"^14 passed", done.stdout, re.MULTILINE)  # 7 tests a class, no skip
