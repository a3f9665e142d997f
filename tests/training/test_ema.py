"""EMA of weights: the closed form with its warm-up, and swapping the EMA weights in and out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cinematic.training.ema import EMA, ema_decay_at


def test_ema_matches_closed_form_on_a_toy_parameter():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA({"m": model}, decay=0.9)
    # θ_n = n; θ̄_n = d_n θ̄_{n-1} + (1 - d_n) θ_n with d_n = min(0.9, (1 + n)/(10 + n)), θ̄_0 = 0
    expected = 0.0
    for n in range(1, 41):
        with torch.no_grad():
            model.weight.fill_(float(n))
        ema.update()
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * n
        assert ema.shadow["m"][0].item() == pytest.approx(expected, rel=1e-6)
    assert ema_decay_at(0.9, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.9, 1000) == 0.9


def test_warmup_follows_trained_weights_in_a_short_run():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA({"m": model}, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(30):
        ema.update()
    # A plain 0.999 EMA would still be at 1 - 0.999**30 ≈ 0.03 of the way.
    assert ema.shadow["m"][0].item() > 0.9


def test_swapped_in_restores_live_weights():
    model = nn.Linear(2, 2)
    ema = EMA({"m": model}, decay=0.5)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update()
    changed = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped_in():
        inside = {k: v.clone() for k, v in model.state_dict().items()}
    for key in live:
        assert torch.equal(inside[key], ema.shadow["m"][list(live).index(key)])
        assert torch.equal(model.state_dict()[key], changed[key])
