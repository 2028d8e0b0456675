"""Samplers: the formulas of Kang et al., set_epoch, ranks, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stats import fits
from torch.utils.data import DataLoader, Dataset

from ltfast import ClassBalancedSampler, ProgressiveBalancedSampler, ShuffleSampler
from ltfast.kernels import sample_weights
from ltfast.samplers import balanced_probabilities

COUNTS = np.array([500, 300, 180, 100, 60, 36, 22, 13, 8, 5])
TARGETS = np.random.default_rng(0).permutation(np.repeat(np.arange(10), COUNTS))


def drawn_classes(sampler) -> np.ndarray:
    return np.bincount(TARGETS[sampler.indices()], minlength=10)


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 1.0])
def test_class_balanced_frequencies_follow_n_to_the_q(q):
    sampler = ClassBalancedSampler(TARGETS, q=q, num_samples=200_000, seed=1)
    expected = COUNTS**q / (COUNTS**q).sum()
    np.testing.assert_allclose(sampler.class_probabilities(), expected)
    assert fits(drawn_classes(sampler), expected)


@pytest.mark.parametrize("convention", ["t/T", "(t-1)/(T-1)"])
def test_progressive_frequencies_follow_the_schedule(convention):
    epochs = 4
    sampler = ProgressiveBalancedSampler(
        TARGETS, epochs, convention=convention, num_samples=200_000, seed=2
    )
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        t = epoch + 1
        ratio = t / epochs if convention == "t/T" else (t - 1) / (epochs - 1)
        expected = (1 - ratio) * COUNTS / COUNTS.sum() + ratio / 10
        np.testing.assert_allclose(sampler.class_probabilities(), expected)
        assert fits(drawn_classes(sampler), expected)
    assert sampler.ratio() == 1.0  # both conventions end class-balanced


def test_instance_sampling_by_weights_matches_the_formula():
    p = balanced_probabilities(COUNTS, 0.5)
    weights = sample_weights(TARGETS, p)
    np.testing.assert_allclose(weights, p[TARGETS] / COUNTS[TARGETS])


def test_set_epoch_changes_the_draw_and_repeats_it():
    sampler = ClassBalancedSampler(TARGETS, seed=3)
    first = sampler.indices()
    np.testing.assert_array_equal(sampler.indices(), first)
    sampler.set_epoch(1)
    assert not np.array_equal(sampler.indices(), first)
    sampler.set_epoch(0)
    np.testing.assert_array_equal(sampler.indices(), first)
    assert list(sampler) == first.tolist()
    assert len(sampler) == len(TARGETS)
    other_seed = ClassBalancedSampler(TARGETS, seed=4)
    assert not np.array_equal(other_seed.indices(), first)


SAMPLERS = {
    "class-balanced": lambda n, **kw: ClassBalancedSampler(TARGETS, q=0.5, num_samples=n, **kw),
    "progressive": lambda n, **kw: ProgressiveBalancedSampler(TARGETS, 3, num_samples=n, **kw),
    "shuffle": lambda n, **kw: ShuffleSampler(n, **kw),
}


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize(("num_samples", "world"), [(1000, 4), (1001, 3), (7, 2)])
def test_ranks_take_equal_strides_of_one_draw(kind, num_samples, world):
    make = SAMPLERS[kind]
    single = make(num_samples, num_replicas=1, rank=0, seed=5)
    shards = [make(num_samples, num_replicas=world, rank=r, seed=5) for r in range(world)]
    for epoch in (0, 2):
        for sampler in (single, *shards):
            sampler.set_epoch(epoch)
        assert {len(s) for s in shards} == {-(-num_samples // world)}
        assert all(len(list(s)) == len(s) for s in shards)
        woven = np.empty(len(shards[0]) * world, dtype=np.int64)
        for rank, shard in enumerate(shards):
            woven[rank::world] = shard.indices()
        np.testing.assert_array_equal(woven, shards[0].global_indices())
        if num_samples % world == 0:  # no padding: the ranks together are the one-process draw
            np.testing.assert_array_equal(woven, single.indices())


def test_shuffle_is_a_permutation_per_epoch():
    sampler = ShuffleSampler(100, seed=1)
    first = sampler.indices()
    np.testing.assert_array_equal(np.sort(first), np.arange(100))
    sampler.set_epoch(1)
    assert not np.array_equal(sampler.indices(), first)


class IndexDataset(Dataset):
    def __len__(self) -> int:
        return len(TARGETS)

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.parametrize("persistent", [False, True])
def test_dataloader_workers_follow_set_epoch(persistent):
    sampler = ProgressiveBalancedSampler(TARGETS, epochs=3, seed=9)
    loader = DataLoader(
        IndexDataset(), batch_size=64, sampler=sampler, num_workers=2, persistent_workers=persistent
    )
    for epoch in range(3):
        sampler.set_epoch(epoch)
        np.testing.assert_array_equal(torch.cat(list(loader)).numpy(), sampler.indices())


def test_empty_class_gets_probability_zero_and_the_rest_renormalise():
    targets = np.array([0, 0, 0, 2, 2, 3])  # class 1 has no samples
    sampler = ClassBalancedSampler(targets, q=0.0, num_classes=5, num_samples=30_000)
    np.testing.assert_allclose(sampler.class_probabilities(), [1 / 3, 0, 1 / 3, 1 / 3, 0])
    assert fits(np.bincount(targets[sampler.indices()], minlength=5), sampler.class_probabilities())
    progressive = ProgressiveBalancedSampler(targets, epochs=2, num_classes=5)
    progressive.set_epoch(1)
    np.testing.assert_allclose(progressive.class_probabilities(), [1 / 3, 0, 1 / 3, 1 / 3, 0])


def test_state_dict_round_trip():
    sampler = ProgressiveBalancedSampler(TARGETS, epochs=5, seed=2)
    sampler.set_epoch(3)
    clone = ProgressiveBalancedSampler(TARGETS, epochs=5)
    clone.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(clone.indices(), sampler.indices())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassBalancedSampler(TARGETS, q=1.5), r"q must be in \[0, 1\]"),
        (lambda: ClassBalancedSampler(TARGETS, q=-0.1), r"q must be in \[0, 1\]"),
        (lambda: ProgressiveBalancedSampler(TARGETS, epochs=0), "epochs must be >= 1"),
        (lambda: ProgressiveBalancedSampler(TARGETS, 1, "(t-1)/(T-1)"), "needs epochs >= 2"),
        (lambda: ProgressiveBalancedSampler(TARGETS, 3, "t"), "convention must be one of"),
        (lambda: ClassBalancedSampler([0, 1, -1]), "label -1 at position 2 is out of range"),
        (lambda: ClassBalancedSampler([0, 1, 5], num_classes=3), "label 5 at position 2"),
        (lambda: ClassBalancedSampler([]), "non-empty 1-D"),
        (lambda: ClassBalancedSampler(TARGETS, num_samples=0), "num_samples must be >= 1"),
        (lambda: ClassBalancedSampler(TARGETS, num_replicas=2, rank=2), "0 <= rank"),
        (lambda: ClassBalancedSampler(TARGETS).set_epoch(-1), "epoch must be >= 0"),
        (lambda: ProgressiveBalancedSampler(TARGETS, 3).set_epoch(3), r"epoch must be in 0\.\.2"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassBalancedSampler(TARGETS, seed=1.5), r"seed must be an integer, got 1\.5"),
        (lambda: ShuffleSampler(10, seed=2.0), r"seed must be an integer, got 2\.0 \(float\)"),
        (lambda: ProgressiveBalancedSampler(TARGETS, 2.5), r"epochs must be an integer, got 2\.5"),
        (lambda: ProgressiveBalancedSampler(TARGETS, float("nan")), "epochs must be an integer"),
        (lambda: ClassBalancedSampler(TARGETS, num_samples=10.5), "num_samples must be an int"),
        (lambda: ShuffleSampler(10.0), "num_samples must be an integer"),
        (lambda: ClassBalancedSampler(TARGETS, num_classes=3.0), "num_classes must be an int"),
        (lambda: ClassBalancedSampler(TARGETS, num_replicas=2.0, rank=0), "num_replicas must"),
        (lambda: ClassBalancedSampler(TARGETS).set_epoch(1.5), "epoch must be an integer"),
        (lambda: ProgressiveBalancedSampler(TARGETS, 3).set_epoch(True), "epoch must be an int"),
        (lambda: ClassBalancedSampler([0.0, 1.5, 1.0]), "targets must be integer class labels"),
        (lambda: ClassBalancedSampler(torch.tensor([0.0, 1.0])), "got dtype float32"),
        (lambda: ClassBalancedSampler(np.array([True, False])), "got dtype bool"),
        (lambda: ClassBalancedSampler(TARGETS, q="0.5"), "q must be a number, got '0.5'"),
    ],
)
def test_non_integer_arguments_are_refused(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_numpy_integers_are_integers():
    sampler = ProgressiveBalancedSampler(np.array(TARGETS), np.int64(3), seed=np.uint32(4))
    sampler.set_epoch(np.int64(2))
    assert sampler.epoch == 2 and sampler.seed == 4 and len(sampler.indices()) == len(TARGETS)


@pytest.mark.parametrize("kind", [ClassBalancedSampler, ProgressiveBalancedSampler])
@pytest.mark.parametrize("stray", [10**7, 10**9, -3])
def test_a_stray_label_is_named_without_allocating_for_it(kind, stray):
    import tracemalloc

    targets = np.array([0, 1, 2, stray, 1])
    args = (targets, 3) if kind is ProgressiveBalancedSampler else (targets,)
    tracemalloc.start()
    with pytest.raises(ValueError, match=rf"label {stray} at position 3"):
        kind(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000  # no per-class table of the stray label's size
    with pytest.raises(ValueError, match=rf"label {stray} at position 3 is out of range for 3"):
        kind(*args, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be at most 1,000,000"):
        kind(targets.clip(0, 2), *args[1:], num_classes=10**9)


def test_load_state_dict_checks_what_it_loads():
    sampler = ClassBalancedSampler(TARGETS, seed=3)
    sampler.set_epoch(4)
    other = ClassBalancedSampler(TARGETS, seed=9)
    other.load_state_dict(sampler.state_dict())
    np.testing.assert_array_equal(other.indices(), sampler.indices())
    for state, error in [
        ({"seed": -1, "epoch": 0}, ValueError),
        ({"seed": 2**64, "epoch": 0}, ValueError),
        ({"seed": 1.5, "epoch": 0}, TypeError),
        ({"seed": 1, "epoch": -2}, ValueError),
        ({"seed": 1}, ValueError),
        ([1, 2], ValueError),
    ]:
        with pytest.raises(error):
            other.load_state_dict(state)
    assert other.state_dict() == sampler.state_dict()  # a refused state changes nothing
