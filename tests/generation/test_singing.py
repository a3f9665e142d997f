"""SingingSynthesizer on an untrained tiny model: syllables fill and start on their notes, a checkpoint alone
sings, the same seed gives the same samples, the harmonic renderer sings the F0 it is given, bad input is a
UserError (exit 2 from `cinematic sing`)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from cinematic.configs.model_config import MelConfig
from cinematic.data.singing import REST, SungNote, hz_to_midi, phonemize_notes, write_song
from cinematic.data.tokenizers.phonemes import SPECIAL, TextFrontEnd
from cinematic.errors import UserError
from cinematic.generation.singing import (
    SingingSynthesizer,
    match_timbre,
    reference_timbre,
    render_harmonic,
    timbre_statistics,
)
from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig

pytestmark = pytest.mark.usefixtures("one_thread")

NOTES = [
    SungNote("sun", 60, 0.2, 0.4),
    SungNote("shine", 64, 0.6, 0.3),
    SungNote("", 65, 0.9, 0.3, slur=True),
    SungNote("bright", 67, 1.4, 0.6),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A singing checkpoint as the trainer writes one (model weights and task state, no config)."""
    front = TextFrontEnd("phonemes")
    phonemes = phonemize_notes(NOTES, "en", front) + phonemize_notes([SungNote("la", 60, 0, 1)], "es", front)
    symbols = [*SPECIAL, *sorted({REST} | {p for ph in phonemes for p in ph})]
    torch.manual_seed(0)
    cfg = XiaoiceSingConfig(
        n_symbols=len(symbols), n_languages=2, embed_dim=32, num_heads=2, encoder_num_layers=1,
        decoder_num_layers=1, conv_filter_size=64, variance_filter_size=32, num_speakers=2,
    )  # fmt: skip
    model = XiaoiceSing(cfg)
    state = {
        "symbols": symbols,
        "front_end": front.mode,
        "speakers": ["alto", "bass"],
        "speaker_dvectors": {"alto": torch.zeros(256), "bass": torch.ones(256) / 16},
        "languages": ["en", "es"],
        "model_config": asdict(cfg),
        "mel_config": MelConfig().model_dump(),
        "vocoder_checkpoint": None,
    }
    path = tmp_path_factory.mktemp("singing") / "best.pth"
    torch.save(
        {"task": "singing", "model": {"singer": model.state_dict()}, "ema": {}, "task_state": state}, path
    )
    return path


@pytest.fixture(scope="module")
def synth(checkpoint):
    return SingingSynthesizer.from_checkpoint(checkpoint)


def test_checkpoint_alone_sings_and_the_same_seed_repeats(synth, checkpoint):
    assert synth.singers == ["alto", "bass"] and synth.languages == ["en", "es"]
    assert synth.vocoder == "harmonic"  # no vocoder recorded
    a = synth.sing(NOTES, "en", seed=3)
    b = SingingSynthesizer.from_checkpoint(checkpoint).sing(NOTES, "en", seed=3)
    assert a.wav.dtype == np.float32 and a.sample_rate == 22050
    assert np.array_equal(a.wav, b.wav)
    assert not np.array_equal(a.wav, synth.sing(NOTES, "en", seed=4).wav)
    assert not np.array_equal(a.wav, synth.sing(NOTES, "en", singer="bass", seed=3).wav)


def test_syllables_fill_their_notes_and_start_on_them(synth):
    out = synth.infer(NOTES, "en")
    track, durations = out["track"], np.array(out["durations"])
    for g, frames in enumerate(track.group_frames):
        assert durations[np.array(track.group) == g].sum() == frames
    assert len(out["mel"]) == track.total_frames
    audio = synth.sing(NOTES, "en")
    onsets = [n.onset for n in NOTES if not n.slur]
    assert len(audio.syllable_onsets) == len(onsets)
    assert np.abs(np.array(audio.syllable_onsets) - onsets).max() < 0.006  # half a frame
    assert len(audio.wav) == track.total_frames * 256


def test_harmonic_renderer_sings_the_f0_it_is_given():
    from cinematic.data.audio import pitch_praat

    cfg = MelConfig()
    frames = 200
    f0 = np.where(np.arange(frames) < 100, 57.0, 62.0).astype(np.float32)
    bins = np.arange(80)
    mel = (-2 - 0.05 * bins)[None, :].repeat(frames, 0).astype(np.float32)
    wav = render_harmonic(mel, f0, np.ones(frames, np.float32), cfg, seed=0)
    found = pitch_praat(wav, cfg.sample_rate, cfg.hop_length)
    inner = np.r_[10:90, 110:190]
    assert (found[inner] > 0).all()
    assert np.abs(hz_to_midi(found[inner]) - f0[inner]).max() < 0.1
    assert np.abs(wav).max() <= 0.99


def test_timbre_step_gives_the_reference_statistics_to_voiced_frames():
    rng = np.random.default_rng(0)
    mel = rng.normal(-4, 0.5, (300, 80)).astype(np.float32)
    voiced = (np.arange(300) % 3 > 0).astype(np.float32)
    reference = timbre_statistics(rng.normal(-3, 1.5, (200, 80)) - 0.02 * np.arange(80), np.ones(200))
    out = match_timbre(mel, voiced, reference, 1.0)

    def long_term(x: np.ndarray) -> np.ndarray:
        return x[voiced > 0].astype(np.float64).mean(0)

    # the long-term spectrum moves by the difference of the (smoothed) envelopes, all of it at strength 1
    gap = reference[0] - timbre_statistics(mel, voiced)[0]
    np.testing.assert_allclose(long_term(out) - long_term(mel), gap, atol=1e-4)
    mean, std = timbre_statistics(out, voiced)
    assert np.abs(mean - reference[0]).max() < 0.25 * np.abs(gap).mean()  # (smoothed twice)
    np.testing.assert_allclose(
        std, reference[1], rtol=0.1
    )  # each band moves about as much as the reference's
    assert np.array_equal(out[voiced == 0], mel[voiced == 0])  # unvoiced frames stay the model's
    half = match_timbre(mel, voiced, reference, 0.5)
    np.testing.assert_allclose(long_term(half) - long_term(mel), gap / 2, atol=1e-4)
    assert match_timbre(mel, voiced, reference, 0.0) is mel


def test_reference_clip_sets_the_sung_spectrum_with_the_timbre_step(synth, tmp_path):
    import soundfile as sf

    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    wav = sum(np.sin(2 * np.pi * 140 * k * t) / k**2 for k in range(1, 30)) * 0.3  # a buzzy 140 Hz voice
    clip = tmp_path / "me.wav"
    sf.write(str(clip), wav.astype(np.float32), sr)
    alone = synth.infer(NOTES, "en", reference=clip, timbre_strength=0)
    matched = synth.infer(NOTES, "en", reference=clip)
    voiced = matched["voiced"]
    assert np.array_equal(alone["voiced"], voiced)
    target, _ = reference_timbre(wav, sr, synth.mel_config)
    got, _ = timbre_statistics(matched["mel"], voiced)
    before, _ = timbre_statistics(alone["mel"], voiced)
    assert np.abs(got - target).mean() < 0.25 * np.abs(before - target).mean()
    with pytest.raises(UserError, match="timbre strength 3"):
        synth.infer(NOTES, "en", reference=clip, timbre_strength=3)


def test_bad_requests_are_user_errors(synth, tmp_path):
    with pytest.raises(UserError, match="no language 'fr'.*en, es"):
        synth.sing(NOTES, "fr")
    with pytest.raises(UserError, match="no notes"):
        synth.sing([], "en")
    with pytest.raises(UserError, match="unknown singer 'tenor'.*alto, bass"):
        synth.sing(NOTES, "en", singer="tenor")
    with pytest.raises(UserError, match="reference clip not found"):
        synth.sing(NOTES, "en", reference=tmp_path / "missing.wav")
    with pytest.raises(UserError, match="slurred note needs a sung note before it"):
        synth.sing([SungNote("", 60, 0, 1, slur=True)], "en")


def test_other_checkpoints_are_refused(tmp_path):
    path = tmp_path / "voice.pth"
    torch.save({"task": "voice", "model": {"acoustic": {}}, "task_state": {}}, path)
    with pytest.raises(UserError, match="not a singing model"):
        SingingSynthesizer.from_checkpoint(path)


def test_sing_command_writes_audio_and_exits_2_on_bad_input(checkpoint, tmp_path, capsys):
    from cinematic.cli import main

    melody = tmp_path / "melody.json"
    write_song(melody, NOTES)
    out = tmp_path / "sung.wav"
    assert main(["sing", "--checkpoint", str(checkpoint), "--melody", str(melody), "--out", str(out)]) == 0
    assert out.is_file()
    code = main(
        [
            "sing",
            "--checkpoint",
            str(checkpoint),
            "--melody",
            str(melody),
            "--language",
            "de",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert "en, es" in capsys.readouterr().err
    strong = ["--reference", str(melody), "--timbre_strength", "3"]
    args = ["sing", "--checkpoint", str(checkpoint), "--melody", str(melody), "--out", str(out)]
    assert main([*args, *strong]) == 2
    assert "timbre strength 3" in capsys.readouterr().err
    assert (
        main(
            ["sing", "--checkpoint", str(checkpoint), "--melody", str(tmp_path / "no.mid"), "--out", str(out)]
        )
        == 2
    )
