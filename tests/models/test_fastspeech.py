"""FastSpeech 2: length regulator, variance adaptor controls, losses, and overfitting one batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cinematic.configs import load_config
from cinematic.models.fastspeech import FastSpeech2, VarianceStats, length_regulate

N_SYMBOLS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def voice_cfg():
    cfg = load_config("tiny").voice_model
    cfg.dropout = 0.0
    cfg.variance_dropout = 0.0
    return cfg


def _model(cfg, seed: int = 0, **stats) -> FastSpeech2:
    torch.manual_seed(seed)
    return FastSpeech2(cfg, n_symbols=N_SYMBOLS, n_languages=2, stats=VarianceStats(**stats)).eval()


def _batch(seed: int = 0, batch: int = 3, n_mels: int = 80):
    """Symbol sequences where each symbol is a fixed spectrum held for a random number of frames."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(N_SYMBOLS, n_mels)).astype(np.float32)
    tokens, mels = [], []
    for _ in range(batch):
        seq = rng.integers(2, N_SYMBOLS, size=int(rng.integers(5, 9)))
        durations = rng.integers(2, 6, size=len(seq))
        tokens.append(torch.from_numpy(seq))
        mels.append(torch.from_numpy(np.repeat(patterns[seq], durations, axis=0)))
    tl = torch.tensor([len(t) for t in tokens])
    ml = torch.tensor([len(m) for m in mels])
    tok = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)
    mel = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
    pitch = torch.randn(batch, mel.shape[1]) * 0.5
    energy = torch.randn(batch, mel.shape[1]) * 0.5
    return {
        "tokens": tok,
        "text_lengths": tl,
        "mels": mel,
        "mel_lengths": ml,
        "pitch": pitch,
        "energy": energy,
        "speakers": torch.tensor([1, 2, 0])[:batch],
        "languages": torch.tensor([0, 1, 0])[:batch],
        "dvectors": torch.nn.functional.normalize(torch.randn(batch, 256), dim=-1),
    }


TRAINING_INPUTS = (
    "tokens",
    "text_lengths",
    "mels",
    "mel_lengths",
    "pitch",
    "energy",
    "speakers",
    "languages",
    "dvectors",
)


def _inputs(batch: dict) -> dict:
    """The keyword arguments of a training forward pass, taken from `_batch`."""
    return {k: batch[k] for k in TRAINING_INPUTS}


def test_length_regulator_repeats_each_state_by_its_duration():
    hidden = torch.randn(2, 4, 3)
    durations = torch.tensor([[1, 3, 0, 2], [2, 2, 2, 0]])
    out, lengths = length_regulate(hidden, durations)
    assert out.shape == (2, 6, 3) and lengths.tolist() == [6, 6]
    for b in range(2):
        expected = torch.repeat_interleave(hidden[b], durations[b], dim=0)
        torch.testing.assert_close(out[b, : len(expected)], expected)
    padded, _ = length_regulate(hidden, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), max_len=6)
    assert padded.shape == (2, 6, 3) and padded[0, 2:].abs().sum() == 0


def test_training_forward_shapes_and_durations_sum_to_mel_length(voice_cfg):
    model = _model(voice_cfg).train()
    batch = _batch()
    out = model(**_inputs(batch))
    b, t_mel, n_mels = batch["mels"].shape
    assert out["mel"].shape == out["mel_post"].shape == (b, t_mel, n_mels)
    assert out["log_duration"].shape == out["pitch_pred"].shape == batch["tokens"].shape
    assert out["durations"].sum(1).tolist() == batch["mel_lengths"].tolist()
    losses = model.losses(
        out, batch["mels"], batch["text_lengths"], batch["mel_lengths"], binarization_weight=1.0
    )
    assert all(torch.isfinite(v) for v in losses.values()) and losses["binarization"] > 0


def test_untrained_duration_predictor_starts_at_the_data_mean(voice_cfg):
    model = _model(voice_cfg, mean_log_duration=math.log1p(5.0))
    batch = _batch()
    out = model.infer(batch["tokens"][:1], torch.tensor([1]), torch.tensor([0]), batch["dvectors"][:1])
    assert 2 <= out["durations"].float().mean() <= 12  # ≈ 5 frames per symbol before any training


def test_pitch_control_raises_predicted_f0_and_speed_halves_frames(voice_cfg):
    model = _model(voice_cfg)
    batch = _batch()
    args = (batch["tokens"], batch["speakers"], batch["languages"], batch["dvectors"], batch["text_lengths"])
    base = model.infer(*args)
    higher = model.infer(*args, pitch_shift=4.0)
    mask = batch["tokens"] > 0
    ratio = higher["f0_hz"][mask].mean() / base["f0_hz"][mask].mean()
    assert ratio == pytest.approx(2 ** (4 / 12), rel=0.01)  # four semitones up
    lower = model.infer(*args, energy_scale=0.5)
    assert lower["energy"][mask].mean() < base["energy"][mask].mean()

    fast = model.infer(*args, speed=2.0)
    for b in range(3):
        n = int(batch["text_lengths"][b])
        expected = base["durations"][b, :n].float() / 2
        assert bool(((fast["durations"][b, :n] - expected).abs() <= 1).all())
        assert abs(int(fast["mel_lengths"][b]) - float(expected.sum())) <= n
    assert fast["mel"].shape[1] < base["mel"].shape[1]
    assert bool((fast["durations"][mask] >= 1).all())  # every symbol is still spoken


def test_speaker_vector_uses_table_row_and_dvector(voice_cfg):
    model = _model(voice_cfg)
    d = torch.nn.functional.normalize(torch.randn(2, 256), dim=-1)
    same_row = model.speaker_vector(torch.tensor([0, 0]), d)
    assert not torch.allclose(same_row[0], same_row[1])  # zero-shot: the d-vector decides
    torch.testing.assert_close(
        model.speaker_vector(torch.tensor([3]), None), model.speaker_embedding.weight[3:4]
    )


def test_tiny_model_overfits_one_batch(voice_cfg):
    model = _model(voice_cfg).train()
    batch = _batch(seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    inputs = _inputs(batch)
    first = None
    for _ in range(60):
        out = model(**inputs)
        losses = model.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"])
        first = first if first is not None else losses["mel_l1"].item()
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert losses["mel_l1"].item() < first / 2, (first, losses["mel_l1"].item())


def test_adaptation_parameters_are_the_speaker_parts(voice_cfg):
    model = _model(voice_cfg)
    params = model.adaptation_parameters()
    total = sum(p.numel() for p in model.parameters())
    assert params[0] is model.speaker_embedding.weight
    assert sum(p.numel() for p in params) < total / 4


def test_given_durations_replace_the_aligner(voice_cfg):
    """TextGrid durations: the decoder input follows them exactly, and pitch averages use the same frames."""
    model = _model(voice_cfg).train()
    batch = _batch(seed=2, batch=1)
    n, t = int(batch["text_lengths"][0]), int(batch["mel_lengths"][0])
    given = torch.full((1, n), t // n)
    given[0, -1] += t - int(given.sum())
    out = model(**_inputs(batch), durations=given)
    assert out["durations"].tolist() == given.tolist()
    first = int(given[0, 0])
    torch.testing.assert_close(out["pitch_target"][0, 0], batch["pitch"][0, :first].mean())
