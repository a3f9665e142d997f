"""Learning-rate schedules against their formulas, and weight decay only on ≥2-D weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cinematic.configs import TrainingConfig
from cinematic.training.optimizers import build_optimizer, build_scheduler, param_groups

LR = 0.1


def lrs_over(tcfg: TrainingConfig, total: int, steps_per_epoch: int = 10) -> list[float]:
    """The learning rate used by optimizer steps 1..total."""
    opt = build_optimizer([nn.Linear(2, 2)], tcfg)
    sched = build_scheduler(opt, tcfg, total, steps_per_epoch)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def cfg(**keys) -> TrainingConfig:
    return TrainingConfig(learning_rate=LR, warmup_steps=10, **keys)


def test_cosine_warmup_formula():
    lrs = lrs_over(cfg(scheduler="cosine_warmup", min_lr_ratio=0.1), total=110)
    assert lrs[0] == pytest.approx(LR * 1 / 10)  # step t=1 of warmup
    assert lrs[4] == pytest.approx(LR * 5 / 10)
    assert lrs[9] == pytest.approx(LR)  # t = W: peak
    cosine = lambda p: LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))  # noqa: E731
    assert lrs[10] == pytest.approx(cosine(0.0))  # t = 11: p = (t - 1 - W) / (T - W) = 0
    assert lrs[59] == pytest.approx(cosine(0.49))  # t = 60
    assert lrs[109] == pytest.approx(cosine(0.99))  # the last step still has a non-minimal rate


def test_linear_warmup_formula():
    lrs = lrs_over(cfg(scheduler="linear_warmup"), total=110)
    assert lrs[2] == pytest.approx(LR * 0.3)
    assert lrs[34] == pytest.approx(LR * (1 - 24 / 100))  # t = 35: p = 0.24
    assert lrs[109] == pytest.approx(LR * 0.01)


def test_inverse_sqrt_is_noam():
    lrs = lrs_over(cfg(scheduler="inverse_sqrt"), total=200)
    assert lrs[4] == pytest.approx(LR * 5 / 10)
    assert lrs[9] == pytest.approx(LR)
    assert lrs[39] == pytest.approx(LR * math.sqrt(10 / 40))
    assert lrs[159] == pytest.approx(LR * math.sqrt(10 / 160))


def test_exponential_decays_once_per_epoch():
    lrs = lrs_over(
        TrainingConfig(learning_rate=LR, scheduler="exponential", lr_decay=0.5), total=30, steps_per_epoch=10
    )
    assert lrs[0] == lrs[9] == pytest.approx(LR)  # no warmup, flat within epoch 0
    assert lrs[10] == pytest.approx(LR * 0.5)
    assert lrs[29] == pytest.approx(LR * 0.25)


def test_constant_after_warmup():
    lrs = lrs_over(cfg(scheduler="constant"), total=50)
    assert lrs[1] == pytest.approx(LR * 0.2)
    assert lrs[9:] == pytest.approx([LR] * 41)


def test_weight_decay_skips_biases_and_norms():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Embedding(5, 4))
    decay, no_decay = param_groups([model], weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}


def test_adamw_step_with_zero_gradient_decays_only_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer([model], TrainingConfig(learning_rate=0.1, weight_decay=0.5))
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name])


@pytest.mark.parametrize(
    "name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_optimizer_choice(name, cls):
    opt = build_optimizer([nn.Linear(2, 2)], TrainingConfig(optimizer=name, betas=(0.8, 0.99)))
    assert type(opt) is cls
    if name != "sgd":
        assert opt.param_groups[0]["betas"] == (0.8, 0.99)
