"""Numba kernels against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
from stats import fits

from ltfast.kernels import ClassIndex, alias_table, class_counts, sample_weights

LABELS = np.random.default_rng(5).choice(
    10, 20000, p=np.geomspace(1, 0.01, 10) / np.geomspace(1, 0.01, 10).sum()
)


def test_class_counts_equal_bincount():
    np.testing.assert_array_equal(class_counts(LABELS, 12), np.bincount(LABELS, minlength=12))


def test_sample_weights_are_p_over_n():
    p = np.random.default_rng(0).random(10)
    p /= p.sum()
    n = np.bincount(LABELS, minlength=10)
    np.testing.assert_allclose(sample_weights(LABELS, p), p[LABELS] / n[LABELS], rtol=1e-15)
    # Summed per class, the weights give back the class probabilities.
    per_class = np.bincount(LABELS, weights=sample_weights(LABELS, p), minlength=10)
    np.testing.assert_allclose(per_class, p)


def test_alias_table_reproduces_the_distribution_exactly():
    p = np.array([0.5, 0.0, 0.2, 0.3, 0.0])
    accept, alias = alias_table(p)
    # Column c gives class c with accept[c] and alias[c] otherwise, each column 1/C likely.
    implied = np.bincount(np.arange(5), weights=accept, minlength=5)
    implied += np.bincount(alias, weights=1 - accept, minlength=5)
    np.testing.assert_allclose(implied / 5, p, atol=1e-15)


@pytest.mark.parametrize("p", [np.full(10, 0.1), np.geomspace(1, 1e-3, 10), np.eye(10)[3]])
def test_draw_matches_class_probabilities_and_is_uniform_within_a_class(p):
    p = p / p.sum()
    index = ClassIndex(LABELS, 10)
    drawn = index.draw(p, 400_000, key=11)
    assert drawn.dtype == np.int64 and drawn.min() >= 0 and drawn.max() < len(LABELS)
    assert fits(np.bincount(LABELS[drawn], minlength=10), p)
    head = np.flatnonzero(LABELS == 0)  # members of one class are equally likely
    if p[0] > 0:
        hits = np.bincount(drawn[LABELS[drawn] == 0], minlength=len(LABELS))[head]
        assert fits(hits, np.full(len(head), 1 / len(head)))


def test_chi_square_check_can_fail():
    """The check above has power: squared imbalance (the per-sample weight bug) is rejected."""
    n = np.bincount(LABELS, minlength=10).astype(float)
    drawn = ClassIndex(LABELS, 10).draw(n**2 / (n**2).sum(), 100_000, key=1)
    assert not fits(np.bincount(LABELS[drawn], minlength=10), n / n.sum())


def test_draw_is_a_pure_function_of_its_key():
    index = ClassIndex(LABELS, 10)
    p = np.full(10, 0.1)
    np.testing.assert_array_equal(index.draw(p, 1000, 7), index.draw(p, 1000, 7))
    assert not np.array_equal(index.draw(p, 1000, 7), index.draw(p, 1000, 8))
    # A longer draw extends a shorter one: sample i depends on (key, i) alone.
    np.testing.assert_array_equal(index.draw(p, 3000, 7)[:1000], index.draw(p, 1000, 7))


def test_draw_past_torchs_two_to_the_24_limit():
    count = 2**24 + 1
    drawn = ClassIndex(np.array([0, 1, 1, 2]), 3).draw(np.array([0.5, 0.25, 0.25]), count, 3)
    assert drawn.shape == (count,)
    assert fits(np.bincount(drawn, minlength=4), np.array([0.5, 0.125, 0.125, 0.25]))


def test_draw_rejects_impossible_probabilities():
    index = ClassIndex(np.array([0, 0, 2]), 3)
    with pytest.raises(ValueError, match="a class with no samples has a positive probability"):
        index.draw(np.array([0.5, 0.5, 0.0]), 10, 0)
    with pytest.raises(ValueError, match="expected 3 class probabilities"):
        index.draw(np.array([1.0]), 10, 0)
    with pytest.raises(ValueError, match="positive sum"):
        index.draw(np.zeros(3), 10, 0)
