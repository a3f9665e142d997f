"""FastSpeech 2: length regulator, variance adaptor controls, losses, padding invariance, and overfitting
one batch."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from cinematic.models.fastspeech import FastSpeech2, FastSpeech2Config, VarianceStats, length_regulate

N_SYMBOLS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def voice_cfg() -> FastSpeech2Config:
    """The tiny preset's sizes (presets/tiny.yaml), without dropout."""
    return FastSpeech2Config(
        n_symbols=N_SYMBOLS,
        n_languages=2,
        encoder_num_layers=1,
        decoder_num_layers=1,
        embed_dim=64,
        num_heads=2,
        conv_filter_size=128,
        variance_filter_size=64,
        postnet_layers=2,
        dropout=0.0,
        variance_dropout=0.0,
    )


def _model(cfg, seed: int = 0, **stats) -> FastSpeech2:
    torch.manual_seed(seed)
    return FastSpeech2(cfg, stats=VarianceStats(**stats)).eval()


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


def _prosody_batch(seed: int, batch: int = 8) -> dict:
    """Utterances whose mel is a spectral bump placed by each phoneme's pitch and scaled by its energy,
    both drawn independently of the text: only the pitch and energy embeddings can explain the mel."""
    rng = np.random.default_rng(seed)
    bins = np.arange(80)
    columns: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("tokens", "mels", "pitch", "energy", "durations")
    }
    for _ in range(batch):
        n = int(rng.integers(5, 9))
        durations = rng.integers(2, 6, size=n)
        pitch, energy = rng.uniform(-1.5, 1.5, size=(2, n))
        centre = np.repeat(40 + 12 * pitch, durations)  # +1 normalised pitch unit = 12 mel bins up
        height = np.repeat(4 + 1.5 * energy, durations)
        mel = -4 + height[:, None] * np.exp(-0.5 * ((bins[None, :] - centre[:, None]) / 8) ** 2)
        columns["tokens"].append(torch.from_numpy(rng.integers(2, N_SYMBOLS, size=n)))
        columns["mels"].append(torch.from_numpy(mel.astype(np.float32)))
        columns["pitch"].append(torch.from_numpy(np.repeat(pitch, durations).astype(np.float32)))
        columns["energy"].append(torch.from_numpy(np.repeat(energy, durations).astype(np.float32)))
        columns["durations"].append(torch.from_numpy(durations))
    out = {k: torch.nn.utils.rnn.pad_sequence(v, batch_first=True) for k, v in columns.items()}
    return {
        **out,
        "text_lengths": torch.tensor([len(t) for t in columns["tokens"]]),
        "mel_lengths": torch.tensor([len(m) for m in columns["mels"]]),
        "speakers": torch.ones(batch, dtype=torch.long),
        "languages": torch.zeros(batch, dtype=torch.long),
    }


def _spectral_centroid(mel: torch.Tensor) -> float:
    """Mean mel bin weighted by (linear) magnitude; mel (1, T, n_mels) log-mel."""
    weight = mel[0].exp()
    return float((weight * torch.arange(mel.shape[-1])).sum() / weight.sum())


def test_pitch_shift_raises_the_mel_spectrum_and_energy_scale_its_level(voice_cfg):
    """A model trained on a spectrum that only pitch and energy explain (`_prosody_batch`) must move it
    at synthesis: +6 semitones raise the spectral bump (σ = 0.25, so +6 semitones = +1.39 normalised
    units ≈ +17 bins), −6 lower it, and half the energy lowers its peak.

    The pitch and energy tables are 256 independent bucket embeddings: each learns only from the values
    that fall in its bin, too slowly for a CPU test. So the test seeds both with a smooth code of the bin
    index (nearby bins alike) and freezes them; the model still has to learn to read them, and the
    shift has to reach the decoder through the right bins."""
    model = _model(voice_cfg).train()
    with torch.no_grad():
        angle = 2 * math.pi * torch.arange(voice_cfg.n_bins).unsqueeze(1) / torch.linspace(40, 800, 32)
        model.pitch_embedding.weight.copy_(torch.cat([angle.sin(), angle.cos()], 1))
        model.energy_embedding.weight.copy_(torch.cat([angle.cos(), angle.sin()], 1))
    model.pitch_embedding.weight.requires_grad_(False)
    model.energy_embedding.weight.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for step in range(100):
        batch = _prosody_batch(step)
        out = model(**{k: batch[k] for k in TRAINING_INPUTS if k != "dvectors"}, durations=batch["durations"])
        loss = model.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    test = _prosody_batch(10_000, batch=1)
    args = (test["tokens"], test["speakers"], test["languages"])

    def mel(**controls) -> torch.Tensor:
        return model.infer(*args, durations=test["durations"], **controls)["mel"]

    base, up, down = (_spectral_centroid(mel(pitch_shift=s)) for s in (0.0, 6.0, -6.0))
    assert 8 < up - base < 30 and 8 < base - down < 30, (down, base, up)
    peak = {g: float(mel(energy_scale=g).max(-1).values.mean()) for g in (0.5, 1.0)}
    assert peak[0.5] < peak[1.0] - 0.5, peak


def test_reported_f0_follows_the_pitch_shift_and_speed_halves_frames(voice_cfg):
    model = _model(voice_cfg)
    batch = _batch()
    args = (batch["tokens"], batch["speakers"], batch["languages"], batch["dvectors"], batch["text_lengths"])
    base = model.infer(*args)
    higher = model.infer(*args, pitch_shift=4.0)
    mask = batch["tokens"] > 0
    ratio = higher["f0_hz"][mask].mean() / base["f0_hz"][mask].mean()
    assert ratio == pytest.approx(2 ** (4 / 12), rel=0.01)  # four semitones up
    assert not torch.allclose(higher["mel"], base["mel"])  # the shift reaches the decoder

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


def test_given_durations_replace_the_aligner(voice_cfg, monkeypatch):
    """TextGrid durations: the decoder input follows them exactly, pitch averages use the same frames,
    and the alignment search (MAS, a host round trip) does not run at all."""
    import cinematic.models.fastspeech as fastspeech

    def no_search(*args, **kwargs):
        raise AssertionError("the alignment search ran although durations were given")

    monkeypatch.setattr(fastspeech, "hard_alignment", no_search)
    model = _model(voice_cfg).train()
    batch = _batch(seed=2, batch=1)
    n, t = int(batch["text_lengths"][0]), int(batch["mel_lengths"][0])
    given = torch.full((1, n), t // n)
    given[0, -1] += t - int(given.sum())
    out = model(**_inputs(batch), durations=given)
    assert out["durations"].tolist() == given.tolist()
    first = int(given[0, 0])
    torch.testing.assert_close(out["pitch_target"][0, 0], batch["pitch"][0, :first].mean())
    weight = torch.ones(())  # the task's on-device binarization switch
    losses = model.losses(out, batch["mels"], batch["text_lengths"], batch["mel_lengths"], weight)
    assert losses["binarization"] > 0 and torch.isfinite(losses["loss"])


def test_short_utterance_gives_the_same_output_alone_and_padded_in_a_batch(voice_cfg):
    """Padding must not leak into the real positions: durations, pitch, energy and mel of the shortest
    utterance alone equal its row of a padded batch (eval mode; atol 1e-5)."""
    model = _model(voice_cfg)
    with torch.no_grad():  # a non-zero postnet, so the postnet's padding is exercised too
        model.postnet.blocks[-1][1].weight.fill_(0.5)
    batch = _batch(seed=3)
    lengths = batch["text_lengths"]
    short = int(lengths.argmin())
    assert int(lengths[short]) < int(lengths.max())  # it is padded in the batch
    n = int(lengths[short])
    together = model.infer(batch["tokens"], batch["speakers"], batch["languages"], batch["dvectors"], lengths)
    alone = model.infer(
        batch["tokens"][short : short + 1, :n],
        batch["speakers"][short : short + 1],
        batch["languages"][short : short + 1],
        batch["dvectors"][short : short + 1],
    )
    assert together["durations"][short, :n].tolist() == alone["durations"][0].tolist()
    log_f0 = together["f0_hz"][short, :n].log(), alone["f0_hz"][0].log()  # Hz: compare in log space
    torch.testing.assert_close(*log_f0, atol=1e-5, rtol=0)
    torch.testing.assert_close(together["energy"][short, :n], alone["energy"][0], atol=1e-5, rtol=0)
    frames = int(alone["mel_lengths"][0])
    assert int(together["mel_lengths"][short]) == frames
    torch.testing.assert_close(together["mel"][short, :frames], alone["mel"][0], atol=1e-5, rtol=0)


def test_config_round_trips_through_a_checkpoint_dict(voice_cfg):
    stored = asdict(voice_cfg)
    assert FastSpeech2Config(**stored) == voice_cfg
    model = FastSpeech2(FastSpeech2Config(**stored))
    assert model.embedding.num_embeddings == N_SYMBOLS and model.language_embedding.num_embeddings == 2
