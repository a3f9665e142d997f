"""XiaoiceSing: it trains, its F0 stays on the notes (residual design), durations come from the corpus or the
note-constrained aligner, and rests take their neighbours' pitch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cinematic.data.singing import SungNote, alignment_prior, collate, phoneme_track
from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig, fill_rests, smooth_note_pitch

pytestmark = pytest.mark.usefixtures("one_thread")

SYMBOLS = ["<pad>", "<unk>", "SP", "a", "l", "m", "i", "o"]
FPS = 22050 / 256


def _item(notes, phonemes, given_durations: bool, rng: np.random.Generator) -> dict:
    """A song as the dataset gives it, with a synthetic mel (a pitch-dependent pattern) and F0 (note pitch
    plus a 20-cent vibrato on sung frames)."""
    end = max(n.onset + n.duration for n in notes) + 0.1
    durations = [
        tuple(0.25 * n.duration if p != "a" and p != "i" and p != "o" else 0.5 * n.duration for p in ph)
        or None
        for n, ph in zip(notes, phonemes, strict=True)
    ]
    durations = [
        tuple(d / sum(ds) * n.duration for d in ds) if ds else None
        for n, ds in zip(notes, durations, strict=True)
    ]
    track = phoneme_track(notes, phonemes, FPS, int(round(end * FPS)), durations if given_durations else None)
    frames = track.total_frames
    note = np.repeat(
        np.array([track.pitch[track.group.index(g)] for g in range(len(track.group_frames))]),
        track.group_frames,
    )
    voiced = note > 0
    f0 = (
        np.where(voiced, note, 60).astype(np.float32)
        + 0.2 * np.sin(np.arange(frames) / 3.0).astype(np.float32) * voiced
    )
    bins = np.arange(80)
    mel = np.where(voiced[:, None], -4 + 3 * np.cos(bins[None, :] * (f0[:, None] - 40) / 30.0), -11.0)
    mel = mel + 0.1 * rng.standard_normal(mel.shape)
    return {
        "tokens": torch.tensor([SYMBOLS.index(s) for s in track.symbols]),
        "note_pitch": torch.tensor(track.pitch),
        "note_frames": torch.tensor(track.token_group_frames()),
        "slur": torch.tensor(track.slur),
        "groups": torch.tensor(track.group),
        "group_frames": torch.tensor(track.group_frames),
        "durations": torch.tensor(track.durations) if track.durations is not None else None,
        "align_prior": torch.from_numpy(alignment_prior(track)),
        "mel": torch.from_numpy(mel.astype(np.float32)),
        "f0": torch.from_numpy(f0),
        "voiced": torch.from_numpy(voiced),
        "speaker": 1,
        "language": 0,
        "dvector": torch.zeros(256),
    }


def _songs(given_durations: bool = True) -> dict:
    rng = np.random.default_rng(0)
    songs = [
        (
            [
                SungNote("la", 60, 0.1, 0.4),
                SungNote("", 62, 0.5, 0.3, slur=True),
                SungNote("mi", 64, 0.9, 0.5),
            ],
            [("l", "a"), (), ("m", "i")],
        ),
        ([SungNote("lo", 67, 0.05, 0.3), SungNote("ma", 65, 0.35, 0.6)], [("l", "o"), ("m", "a")]),
    ]
    return collate([_item(n, p, given_durations, rng) for n, p in songs])


def _model() -> XiaoiceSing:
    torch.manual_seed(0)
    cfg = XiaoiceSingConfig(
        n_symbols=len(SYMBOLS), embed_dim=32, num_heads=2, encoder_num_layers=1, decoder_num_layers=1,
        conv_filter_size=64, variance_filter_size=32, dropout=0.0, variance_dropout=0.0, num_speakers=2,
    )  # fmt: skip
    return XiaoiceSing(cfg)


@pytest.fixture(scope="module")
def trained():
    model = _model()
    batch = _songs()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        losses = model.losses(model(batch), batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return model.eval(), batch, history


def test_loss_falls(trained):
    _, _, history = trained
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"]
    assert last["mel_l1"] < first["mel_l1"]
    assert last["duration"] < first["duration"]


def test_f0_stays_on_the_notes(trained):
    model, batch, _ = trained
    tokens, pitch = batch["tokens"][:1, :6], batch["note_pitch"][:1, :6]
    frames, slur = batch["note_frames"][:1, :6], batch["slur"][:1, :6]
    hidden, speaker, _ = model.predict_durations(
        tokens, pitch, frames, slur, torch.tensor([0]), torch.tensor([1])
    )
    out = model.synthesize(hidden, speaker, pitch, batch["durations"][:1, :6])
    note = np.repeat(pitch[0].numpy(), batch["durations"][0, :6].numpy())
    sung = note > 0
    error = np.abs(out["f0_midi"][0].numpy() - note)[sung]
    assert np.median(error) < 0.5  # semitones: the residual over the note pitch keeps it in tune
    assert (out["voiced"][0].numpy()[sung] > 0.5).mean() > 0.8
    assert (out["voiced"][0].numpy()[~sung] == 0).all()  # rests are silent


def test_untrained_model_is_already_in_tune():
    model = _model().eval()
    batch = _songs()
    hidden, speaker, _ = model.predict_durations(
        batch["tokens"][:1, :6],
        batch["note_pitch"][:1, :6],
        batch["note_frames"][:1, :6],
        batch["slur"][:1, :6],
        torch.tensor([0]),
        torch.tensor([1]),
    )
    out = model.synthesize(hidden, speaker, batch["note_pitch"][:1, :6], batch["durations"][:1, :6])
    note = np.repeat(batch["note_pitch"][0, :6].numpy(), batch["durations"][0, :6].numpy())
    assert np.median(np.abs(out["f0_midi"][0].numpy() - note)[note > 0]) < 1.0


def test_without_durations_the_aligner_keeps_phonemes_inside_their_notes():
    model = _model()
    batch = _songs(given_durations=False)
    assert "durations" not in batch
    out = model(batch)
    losses = model.losses(out, batch)
    assert float(losses["forward_sum"].detach()) > 0
    for b in range(2):
        n = int(batch["text_lengths"][b])
        durations = out["durations"][b, :n]
        groups = batch["groups"][b, :n]
        sums = torch.zeros(int(groups.max()) + 1, dtype=torch.long).scatter_add(0, groups, durations)
        assert sums.tolist() == batch["group_frames"][b, : len(sums)].tolist()
        assert int(durations.min()) >= 1


def test_rests_take_the_pitch_of_their_neighbours():
    pitch = torch.tensor([[0.0, 0, 60, 60, 0, 0, 64, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    assert fill_rests(pitch).tolist() == [[60.0, 60, 60, 60, 60, 60, 64, 64], [0.0] * 8]
    smooth = smooth_note_pitch(torch.tensor([[60.0] * 5 + [64.0] * 5]), torch.zeros(1, 10, dtype=torch.bool))
    assert smooth[0, 0] == 60 and smooth[0, -1] == 64 and 60 < smooth[0, 5] < 64
