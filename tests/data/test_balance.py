from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cinematic.data.balance import balanced_weights, stratified_split


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.5), (1.0, 0.9)])
def test_sampler_alpha_controls_group_shares_over_10000_draws(alpha, expected):
    groups = ["big"] * 90 + ["small"] * 10
    weights = balanced_weights(groups, alpha)
    draws = np.random.default_rng(0).choice(len(groups), size=10_000, p=weights)
    share = np.mean([groups[i] == "big" for i in draws])
    assert abs(share - expected) <= 0.03


def test_weights_multiply_over_attributes():
    groups = [("en", "happy"), ("en", "sad"), ("en", "sad"), ("es", "sad")]
    w = balanced_weights(groups, 0.0)
    raw = np.array([1 / 3 * 1, 1 / 3 * 1 / 3, 1 / 3 * 1 / 3, 1 * 1 / 3])
    np.testing.assert_allclose(w, raw / raw.sum())
    np.testing.assert_allclose(balanced_weights(groups, 1.0), 0.25)


def test_stratified_split_keeps_group_shares_within_one_sample():
    groups = ["a"] * 53 + ["b"] * 31 + ["c"] * 11 + ["d"] * 5
    train, val = stratified_split(groups, 0.2, seed=3)
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    counts = Counter(groups[i] for i in val)
    for group, total in Counter(groups).items():
        assert abs(counts[group] - total * len(val) / len(groups)) <= 1
    assert stratified_split(groups, 0.2, seed=3) == (train, val)
    assert stratified_split(groups, 0.2, seed=4) != (train, val)
    assert len(stratified_split(groups, 0.2, seed=3, max_val=7)[1]) == 7
