"""Bias reduction (the seed's "Bias Reduction"): balanced sampling weights, stratified splits,
and augmentation budgets for small groups (the composition report is `cinematic.data.report`).

Balanced sampling uses inverse frequency with a temperature α: a sample whose group has count n gets
weight ∝ n^−(1−α), multiplied over the chosen attributes. α = 1 keeps the natural frequencies, α = 0
draws every group equally often (the total weight of a group is n · n^−1 = 1).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np


def _as_tuple(group: Hashable) -> tuple:
    return group if isinstance(group, tuple) else (group,)


def balanced_weights(groups: Sequence[tuple | str], alpha: float) -> np.ndarray:
    """Per-sample sampling probabilities (sum 1): Π over attributes of count(value)^−(1−α).

    `groups[i]` is sample i's value (a str) or values (a tuple, one per attribute). Counts are taken per
    attribute position, so with two attributes a rare language and a rare emotion are both brought up.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    keys = [_as_tuple(g) for g in groups]
    width = len(keys[0])
    if any(len(k) != width for k in keys):
        raise ValueError("every group must have the same number of attributes")
    weights = np.ones(n, dtype=np.float64)
    for position in range(width):
        counts = Counter(k[position] for k in keys)
        per_sample = np.array([counts[k[position]] for k in keys], dtype=np.float64)
        weights *= per_sample ** -(1.0 - alpha)
    return weights / weights.sum()


def _largest_remainder(counts: dict[Hashable, int], total: int, order: list[Hashable]) -> dict[Hashable, int]:
    """Split `total` over groups proportionally to `counts`: floors plus one for the largest remainders,
    so each share is within one of its exact quota."""
    n = sum(counts.values())
    exact = {g: total * c / n for g, c in counts.items()}
    alloc = {g: int(np.floor(q)) for g, q in exact.items()}
    left = total - sum(alloc.values())
    # Ties broken by the seeded order, so no group is favoured by its name.
    ranked = sorted(order, key=lambda g: -(exact[g] - alloc[g]))
    for g in ranked[:left]:
        alloc[g] += 1
    return alloc


def stratified_split(
    groups: Sequence[Hashable], val_fraction: float, seed: int, max_val: int | None = None
) -> tuple[list[int], list[int]]:
    """(train indices, validation indices), both sorted, with each group's validation share within one
    sample of its share of the whole. Deterministic in `seed`.

    The validation size is round(N · val_fraction), capped by `max_val`, and at least 1 when
    val_fraction > 0 and N ≥ 2 (so a tiny data set still validates).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(groups)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    if max_val is not None:
        n_val = min(n_val, max_val)
    n_val = min(n_val, max(0, n - 1))
    if n_val == 0:
        return list(range(n)), []
    rng = np.random.default_rng(seed)
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    order = list(members)
    order = [order[i] for i in rng.permutation(len(order))]
    alloc = _largest_remainder({g: len(m) for g, m in members.items()}, n_val, order)
    val: list[int] = []
    for group in order:
        picked = rng.permutation(members[group])[: alloc[group]]
        val.extend(int(i) for i in picked)
    val_set = set(val)
    return [i for i in range(n) if i not in val_set], sorted(val)


# ---------------------------------------------------------------------------------------------------
# Group statistics and augmentation budgets
# ---------------------------------------------------------------------------------------------------


def group_stats(values: Sequence[Hashable]) -> dict:
    """Counts, shares, imbalance ratio (largest / smallest group) and normalized entropy H / log(k)
    (1 = perfectly even; 0 for a single group) of one attribute's values."""
    counts = Counter(values)
    total = sum(counts.values())
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
    shares = {str(k): v / total for k, v in ordered.items()} if total else {}
    p = np.array(list(shares.values()), dtype=np.float64)
    k = len(p)
    entropy = float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0
    return {
        "counts": {str(key): n for key, n in ordered.items()},
        "shares": {key: round(v, 6) for key, v in shares.items()},
        "groups": k,
        "total": total,
        "imbalance_ratio": (max(counts.values()) / min(counts.values())) if counts else None,
        "normalized_entropy": round(entropy, 6),
    }


def augmentation_budget(counts: dict[str, int], target: int | None = None, max_per_item: int = 1000) -> dict:
    """Augmented copies per group that bring each group up to `target` (default: the largest group):
    {"group": {"add": n, "per_item": ceil(n / count)}}, with per_item capped at `max_per_item`
    (1000 variations per clip exist, see `augmentation.VariationGenerator`)."""
    if not counts:
        return {}
    target = max(counts.values()) if target is None else target
    budget = {}
    for group, count in counts.items():
        per_item = min(max_per_item, -(-max(0, target - count) // count)) if count else 0
        budget[group] = {"add": min(max(0, target - count), per_item * count), "per_item": per_item}
    return budget
