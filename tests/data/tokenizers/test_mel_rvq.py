"""Mel-RVQ audio tokenizer: reconstruction per codebook, shapes, persistence, fitting details, CLI."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cinematic.configs.model_config import MelConfig
from cinematic.data.tokenizers.mel_rvq import (
    MelRVQ,
    RVQFitConfig,
    _reseed_dead,
    fit_tokenizer,
    tokenize_command,
)
from cinematic.errors import UserError

SMALL_MEL = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=32, fmax=None)
FIT = RVQFitConfig(iterations=60, batch_size=512, reseed_every=10)


def _clip(seed: int, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    """A few notes of a harmonic tone with a changing pitch and loudness: varied mel frames."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(4):
        n = int(sr * seconds / 4)
        t = np.arange(n) / sr
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5))
        out.append(0.2 * rng.uniform(0.3, 1.0) * tone * np.exp(-3 * t))
    return np.concatenate(out).astype(np.float32) + 1e-3 * rng.standard_normal(int(sr * seconds)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [_clip(i) for i in range(6)]


@pytest.fixture(scope="module")
def rvq(clips) -> MelRVQ:
    mels = [MelRVQ(SMALL_MEL, torch.zeros(32), torch.ones(32), torch.zeros(1, 2, 32)).mel(c) for c in clips]
    frames = torch.cat([m.T for m in mels])
    return MelRVQ.fit(frames, SMALL_MEL, num_codebooks=3, codebook_size=16, fit=FIT, progress=False)


def test_reconstruction_error_strictly_falls_as_codebooks_are_added(rvq, clips):
    report = rvq.reconstruction_report(rvq.mel(c) for c in clips)
    assert [r["codebooks"] for r in report] == [1, 2, 3]
    l1 = [r["mel_l1"] for r in report]
    snr = [r["snr_db"] for r in report]
    assert all(a > b for a, b in zip(l1, l1[1:])), l1
    assert all(a < b for a, b in zip(snr, snr[1:])), snr
    assert snr[0] > 0.0  # even one codebook beats predicting the per-bin mean


def test_encode_and_decode_shapes(rvq, clips):
    wav = clips[0]
    codes = rvq.encode(wav)
    frames = len(wav) // SMALL_MEL.hop_length
    assert codes.shape == (3, frames) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    assert rvq.decode(codes).shape == (32, frames)
    assert rvq.decode(codes[:1]).shape == (32, frames)  # fewer codebooks: coarser mel, same shape
    batch = rvq.encode(np.stack([clips[0], clips[1]]))
    assert batch.shape == (2, 3, frames)
    assert torch.equal(batch[1], rvq.encode(clips[1]))
    assert rvq.decode(batch).shape == (2, 32, frames)


def test_decoding_more_codebooks_gets_closer_to_the_mel(rvq, clips):
    mel = rvq.mel(clips[2])
    codes = rvq.encode_mel(mel)
    errors = [float((rvq.decode(codes[:k]) - mel).abs().mean()) for k in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


def test_restored_tokenizer_encodes_identically(rvq, clips, tmp_path):
    buffer = io.BytesIO()
    torch.save(rvq.state_dict(), buffer)
    buffer.seek(0)
    restored = MelRVQ.from_state(torch.load(buffer, weights_only=True))
    saved = MelRVQ.load(rvq.save(tmp_path / "tok.pth"))
    for other in (restored, saved):
        assert other.mel_cfg == rvq.mel_cfg
        assert other.fingerprint() == rvq.fingerprint()
        for clip in clips[:2]:
            assert torch.equal(other.encode(clip), rvq.encode(clip))


def test_fitting_is_deterministic_for_a_seed(clips):
    frames = torch.randn(800, 32)
    a = MelRVQ.fit(frames, SMALL_MEL, 2, 8, fit=FIT, progress=False)
    b = MelRVQ.fit(frames, SMALL_MEL, 2, 8, fit=FIT, progress=False)
    c = MelRVQ.fit(frames, SMALL_MEL, 2, 8, fit=RVQFitConfig(**{**FIT.__dict__, "seed": 1}), progress=False)
    assert torch.equal(a.codebooks, b.codebooks)
    assert not torch.equal(a.codebooks, c.codebooks)


def test_dead_code_is_moved_onto_the_data():
    gen = torch.Generator().manual_seed(0)
    batch = torch.randn(64, 4)
    centers = torch.stack([torch.zeros(4), torch.full((4,), 100.0)])  # code 1 is far from every frame
    counts = torch.tensor([64.0, 0.0])
    usage = torch.tensor([1.0, 0.0])
    dist = (batch**2).sum(1)
    moved = _reseed_dead(centers, counts, usage, batch, dist, threshold=0.01, gen=gen)
    assert moved == 1
    assert torch.equal(centers[0], torch.zeros(4))  # live code untouched
    assert any(torch.equal(centers[1], row) for row in batch)  # dead one now sits on a frame
    assert counts[1] == 0 and usage[1] == 0.5


def test_every_code_is_used_after_fitting_skewed_data():
    # 95 % of frames in one tight blob (silence-like), the rest spread: without re-seeding, codes
    # placed in the sparse region starve; with it every code ends up owning frames
    gen = torch.Generator().manual_seed(3)
    frames = torch.cat([0.01 * torch.randn(1900, 32, generator=gen), 3 * torch.randn(100, 32, generator=gen)])
    rvq = MelRVQ.fit(frames, SMALL_MEL, 1, 16, fit=FIT, progress=False)
    normed = (frames - rvq.mean) / rvq.std
    idx = torch.cdist(normed, rvq.codebooks[0]).argmin(1)
    assert torch.bincount(idx, minlength=16).min() > 0


def test_decode_rejects_codes_out_of_range(rvq):
    with pytest.raises(ValueError, match="codes must lie"):
        rvq.decode(torch.full((3, 4), 16))


def test_fitting_no_files_is_a_user_error():
    with pytest.raises(UserError, match="no audio files"):
        fit_tokenizer([], SMALL_MEL, 2, 8)


def test_tokenize_command_writes_tokenizer_and_report(tmp_path, clips, capsys):
    data = tmp_path / "music"
    data.mkdir()
    for i, clip in enumerate(clips[:3]):
        sf.write(data / f"piece{i}.wav", clip, 16000)
    (data / "piece0.json").write_text(json.dumps({"emotion": "calm"}))
    overrides = [
        "music_model.audio.sample_rate=16000",
        "music_model.audio.n_fft=512",
        "music_model.audio.win_length=512",
        "music_model.audio.hop_length=128",
        "music_model.audio.n_mels=32",
        "music_model.rvq_codebooks=2",
        "music_model.rvq_codebook_size=8",
    ]
    args = argparse.Namespace(
        data_dir=str(data), work_dir=str(tmp_path / "work"), out=None, config=None, overrides=overrides
    )
    assert tokenize_command(args) == 0
    out = tmp_path / "work" / "music" / "tokenizer.pth"
    tok = MelRVQ.load(out)
    assert tok.num_codebooks == 2 and tok.codebook_size == 8
    report = json.loads(out.with_suffix(".json").read_text())["report"]
    assert report[0]["mel_l1"] > report[1]["mel_l1"]
    assert "SNR" in capsys.readouterr().out
    cached = list((tmp_path / "work" / "cache" / "mel_rvq").glob("*.pth"))
    assert len(cached) == 1
    # a second run finds the cached fit: same codebooks
    assert tokenize_command(args) == 0
    assert torch.equal(MelRVQ.load(out).codebooks, tok.codebooks)


def test_tokenize_command_on_a_missing_folder_is_a_user_error(tmp_path):
    args = argparse.Namespace(
        data_dir=str(tmp_path / "nope"), work_dir=str(tmp_path), out=None, config=None, overrides=[]
    )
    with pytest.raises(UserError, match="not found"):
        tokenize_command(args)
