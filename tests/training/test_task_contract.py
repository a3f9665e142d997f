"""What the trainer promises a task (`cinematic.training.task.Task`): batches on the training device;
`validate` and `sample` get the unwrapped models in eval mode, with the EMA weights swapped in, under
no_grad and a forked RNG (drawing random numbers there does not change the run)."""

from __future__ import annotations

import random

import numpy as np
import torch
from toy_tasks import ToyRegression

from cinematic.training.trainer import Trainer


class Probe(ToyRegression):
    """The toy regression recording what it is handed, and drawing from every RNG while it validates
    and samples when `draw` is set."""

    def __init__(self, draw: bool) -> None:
        super().__init__()
        self.draw, self.trainer, self.seen = draw, None, []

    def training_step(self, models, batch, phase, scratch):
        assert batch["x"].device.type == self.trainer.env.device.type
        assert torch.is_grad_enabled() and all(m.training for m in models.values())
        return super().training_step(models, batch, phase, scratch)

    def _check(self, kind, models):
        live = self.trainer.models
        assert set(models) == set(live) and all(models[n] is live[n] for n in live)  # unwrapped
        assert not any(m.training for m in models.values()) and not torch.is_grad_enabled()
        ema = self.trainer.ema.shadow["net"]
        assert all(torch.equal(p, s) for p, s in zip(models["net"].parameters(), ema))
        self.seen.append(kind)
        if self.draw:
            torch.rand(3), random.random(), np.random.rand()

    def validate(self, models, loader):
        self._check("validate", models)
        batches = list(loader)
        assert batches and all(b["x"].device.type == self.trainer.env.device.type for b in batches)
        return super().validate(models, loader)

    def sample(self, models, step, out_dir):
        self._check("sample", models)
        return super().sample(models, step, out_dir)


def run(cfg, data_dir, draw: bool) -> tuple[Probe, dict]:
    task = Probe(draw)
    trainer = Trainer(task, cfg, data_dir)
    task.trainer = trainer
    trainer.fit()
    assert trainer.models["net"].training
    weights = {k: v.clone() for k, v in trainer.models["net"].state_dict().items()}
    return task, weights


def test_validate_and_sample_see_ema_weights_in_eval_mode_and_leave_the_run_alone(toy_cfg, data_dir):
    keys = {"max_steps": 8, "validate_every_steps": 2, "validate_at_start": True}
    quiet, quiet_weights = run(toy_cfg(run_name="quiet", **keys), data_dir, draw=False)
    noisy, noisy_weights = run(toy_cfg(run_name="noisy", **keys), data_dir, draw=True)
    assert quiet.seen == noisy.seen == ["validate", "sample"] * 5
    for key, value in quiet_weights.items():
        assert torch.equal(value, noisy_weights[key]), key
