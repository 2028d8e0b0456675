"""The long-tailed subset against the field's NumPy snippet and the published counts."""

from __future__ import annotations

import numpy as np
import pytest
from cifar_files import balanced_labels

from ltfast.kernels import class_counts, long_tail_indices
from ltfast.longtail import images_per_class, long_tail_subset


def reference_subset(labels: np.ndarray, per_class: list[int], seed: int) -> np.ndarray:
    """LDAM-DRW's IMBALANCECIFAR10.gen_imbalanced_data, as every CIFAR-LT codebase copies it."""
    np.random.seed(seed)  # noqa: NPY002
    picked = []
    for cls, count in enumerate(per_class):
        idx = np.where(labels == cls)[0]
        np.random.shuffle(idx)  # noqa: NPY002
        picked.extend(idx[:count])
    return np.array(picked)


def reference_counts(num_classes: int, imb_factor: float, imb_type: str) -> list[int]:
    n_max = 50000 / num_classes
    if imb_type == "exp":
        return [int(n_max * (imb_factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)]
    return [int(n_max)] * (num_classes // 2) + [int(n_max * imb_factor)] * (num_classes // 2)


def test_published_counts():
    assert images_per_class(10, 0.01) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(images_per_class(10, 0.02)) == 13996
    assert sum(images_per_class(10, 0.1)) == 20431
    cifar100 = images_per_class(100, 0.01)
    assert (cifar100[0], cifar100[-1], sum(cifar100)) == (500, 5, 10847)
    assert sum(images_per_class(100, 0.02)) == 12608
    assert sum(images_per_class(100, 0.1)) == 19573
    assert sum(images_per_class(10, 0.01, "step")) == 25250


@pytest.mark.parametrize(
    ("num_classes", "imb_factor"), [(10, 0.01), (10, 0.02), (10, 0.1), (100, 0.01)]
)
@pytest.mark.parametrize("imb_type", ["exp", "step"])
@pytest.mark.parametrize("seed", [0, 1])
def test_subset_is_the_fields_subset_image_for_image(num_classes, imb_factor, imb_type, seed):
    labels = balanced_labels(num_classes, 50000 // num_classes, seed=7)
    expected_counts = reference_counts(num_classes, imb_factor, imb_type)
    assert images_per_class(num_classes, imb_factor, imb_type) == expected_counts
    expected = reference_subset(labels, expected_counts, seed)
    np.testing.assert_array_equal(
        long_tail_subset(labels, num_classes, imb_factor, imb_type, seed), expected
    )


def test_subsets_are_nested_within_each_class():
    labels = balanced_labels(10, 5000, seed=3)
    small, large = (long_tail_subset(labels, 10, f) for f in (0.01, 0.02))
    for cls in range(10):
        a, b = small[labels[small] == cls], large[labels[large] == cls]
        np.testing.assert_array_equal(a, b[: len(a)])


def test_real_cifar10_subset(real_cifar10_root):
    from ltfast import RecordReader

    folder = real_cifar10_root / "cifar-10-batches-bin"
    labels = RecordReader([folder / f"data_batch_{i}.bin" for i in range(1, 6)]).labels
    for imb_factor in (0.01, 0.02, 0.1):
        for seed in (0, 1):
            counts = reference_counts(10, imb_factor, "exp")
            np.testing.assert_array_equal(
                long_tail_subset(labels, 10, imb_factor, seed=seed),
                reference_subset(labels, counts, seed),
            )


@pytest.mark.parametrize("imb_factor", [0.0, -0.1, 1.5])
def test_bad_imbalance_factor(imb_factor):
    with pytest.raises(ValueError, match=r"imb_factor must be in \(0, 1\]"):
        images_per_class(10, imb_factor)


def test_bad_profile_and_labels():
    with pytest.raises(ValueError, match="imb_type must be one of"):
        images_per_class(10, 0.1, "linear")
    with pytest.raises(ValueError, match="label 10 at position 2 is out of range for 10 classes"):
        class_counts(np.array([0, 1, 10]), 10)
    with pytest.raises(ValueError, match="label -1 at position 0"):
        long_tail_indices(np.array([-1, 1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="class 1 asks for 2 samples but has 1"):
        long_tail_indices(np.array([0, 1]), np.array([1, 2]))


def first_n_reference(labels: np.ndarray, per_class: list[int]) -> np.ndarray:
    """Weight Balancing's gen_imbalanced_data (utils/dataset_CIFAR100LT.py) with its shuffles
    commented out, as it runs: each class's first images in file order."""
    targets_np = np.array(labels, dtype=np.int64)
    picked = []
    for the_class, the_img_num in zip(np.unique(targets_np), per_class, strict=True):
        idx = np.where(targets_np == the_class)[0]
        picked.extend(idx[:the_img_num])
    return np.array(picked)


@pytest.mark.parametrize(("num_classes", "imb_factor"), [(10, 0.01), (100, 0.01), (10, 0.1)])
def test_the_first_n_subset_is_weight_balancings(num_classes, imb_factor):
    labels = balanced_labels(num_classes, 50000 // num_classes, seed=5)
    counts = reference_counts(num_classes, imb_factor, "exp")
    first_n = long_tail_subset(labels, num_classes, imb_factor, subset="first_n")
    np.testing.assert_array_equal(first_n, first_n_reference(labels, counts))
    standard = long_tail_subset(labels, num_classes, imb_factor)
    np.testing.assert_array_equal(np.bincount(labels[first_n]), np.bincount(labels[standard]))
    assert not np.array_equal(np.sort(first_n), np.sort(standard))
    with pytest.raises(ValueError, match="subset must be one of ldam, first_n"):
        long_tail_subset(labels, num_classes, imb_factor, subset="random")


def test_real_cifar10_first_n_subset(real_cifar10_root):
    from ltfast import LongTailCIFAR10, RecordReader

    folder = real_cifar10_root / "cifar-10-batches-bin"
    labels = RecordReader([folder / f"data_batch_{i}.bin" for i in range(1, 6)]).labels
    dataset = LongTailCIFAR10(real_cifar10_root, 0.01, subset="first_n")
    expected = first_n_reference(labels, reference_counts(10, 0.01, "exp"))
    np.testing.assert_array_equal(dataset.indices, expected)
    assert "subset first_n" in repr(dataset)
