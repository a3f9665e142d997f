"""Singing from a singing checkpoint (XiaoiceSing): notes with syllables in, a waveform out.

    singer = SingingSynthesizer.from_checkpoint("work_dir/singing/checkpoints/best.pth")
    audio = singer.sing(notes, language="en", singer="en_ava", seed=0)   # SungAudio
    # audio.wav: float32 mono at audio.sample_rate; audio.syllable_onsets: one per non-slur note

Each syllable's phonemes (given, or espeak-ng's for the syllable alone) fill its note: the model's
predicted phoneme durations are rescaled within every note (largest remainders, ≥ 1 frame each), so a
syllable starts on its note's first frame (within half a frame, 5.8 ms at hop 256 / 22.05 kHz).

Two ways to turn the model's mel into a waveform:
- the HiFi-GAN vocoder at the speech mel settings (`vocoder=` a checkpoint or object; default: the one
  the training run recorded);
- `vocoder="harmonic"`: a source-filter (harmonic plus noise) synthesis driven by the model's own F0 and
  voicing, with the spectral envelope read from its mel — the kind of parametric rendering XiaoiceSing
  itself used (WORLD). Its pitch is exactly the model's F0, whatever the vocoder's training. It is the
  default when no vocoder was recorded. A briefly trained HiFi-GAN (the quickstart's 200 steps) does not
  yet reproduce pitch — copy-synthesis of the demo songs came out 8–30 semitones off — so tests and the
  quickstart measure pitch with the harmonic renderer.

Zero-shot singing (`reference=` a clip): the model sings with singer-table row 0 plus the clip's d-vector,
then the reference-timbre step (`match_timbre`, `timbre_strength`, default 1, 0: off) moves the sung mel's
voiced frames to the clip's per-band spectral mean and spread. At demo scale the model alone does not
beat the training singers' similarity to the clip; with the step it does (docs/singing.md, "Zero-shot
singers").
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cinematic.checkpoint_io import find_companion, inference_weights, read_checkpoint
from cinematic.configs.model_config import MelConfig
from cinematic.data.singing import (
    SungNote,
    check_notes,
    encode_symbols,
    fit_durations,
    midi_to_hz,
    phoneme_track,
    phonemize_notes,
)
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd
from cinematic.errors import UserError
from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig

log = logging.getLogger(__name__)

HARMONIC = "harmonic"
TAIL_S = 0.15
"""Silence (a rest) sung after the last note, so its release is not cut."""
TIMBRE_STRENGTH = 1.0
"""Default strength of the reference-timbre step (`match_timbre`) when singing from a reference clip."""
TIMBRE_SMOOTH_BANDS = 5
"""Mel bands the spectral statistics are averaged over before they are compared: the spectral envelope
without the harmonics of the speaker's and the melody's pitches."""
REFERENCE_HINT = (
    "Pass a recording of the voice to clone: a few seconds of clear speech or singing (3 to 10 s work "
    "best), as wav, flac, ogg or mp3 at any sample rate."
)


@dataclass
class SungAudio:
    """What `SingingSynthesizer.sing` returns."""

    wav: np.ndarray
    """float32 mono."""
    sample_rate: int
    syllable_onsets: list[float]
    """Seconds, one per non-slur note: where each syllable's first phoneme starts."""


# ---------------------------------------------------------------------------------------------- rendering


def render_harmonic(
    mel: np.ndarray, f0_midi: np.ndarray, voiced: np.ndarray, mel_cfg: MelConfig, seed: int = 0
) -> np.ndarray:
    """Harmonic-plus-noise synthesis of a log-mel (T, n_mels) with F0 (T,) in MIDI semitones and voicing
    (T,) in [0, 1]: sinusoids at every multiple of F0 below fmax, each as loud as the mel's envelope at
    its frequency, plus noise shaped by the envelope where the frames are unvoiced (and a little breath
    where they are voiced); then a per-frame gain so the result's mel matches the given one in level.
    Deterministic for a seed. → float32 (T·hop,)."""
    import librosa
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    from cinematic.data.audio import mel_spectrogram

    frames, n_mels = mel.shape
    hop, sr = mel_cfg.hop_length, mel_cfg.sample_rate
    n = frames * hop
    if frames == 0:
        return np.zeros(0, np.float32)
    fmax = mel_cfg.fmax if mel_cfg.fmax is not None else sr / 2
    basis = librosa.filters.mel(sr=sr, n_fft=mel_cfg.n_fft, n_mels=n_mels, fmin=mel_cfg.fmin, fmax=fmax)
    centres = librosa.mel_frequencies(n_mels + 2, fmin=mel_cfg.fmin, fmax=fmax)[1:-1]
    # the envelope: band magnitude per unit filter weight, peaks kept (harmonics fall between band centres)
    envelope = np.exp(maximum_filter1d(mel.astype(np.float64), 3, axis=1)) / basis.sum(1)
    frame_times = (np.arange(frames) + 0.5) * hop
    samples = np.arange(n)
    hz = np.clip(midi_to_hz(f0_midi.astype(np.float64)), 30.0, sr / 4)
    f0 = np.interp(samples, frame_times, hz)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    band = np.arange(n_mels, dtype=np.float64)
    harmonic = np.zeros(n)
    for k in range(1, int(min(fmax, sr / 2) / hz.min()) + 1):
        freq = k * hz
        inside = freq < min(fmax, sr / 2 - 50)
        if not inside.any():
            break
        position = np.interp(freq, centres, band)
        low = np.floor(position).astype(int).clip(0, n_mels - 1)
        high = np.minimum(low + 1, n_mels - 1)
        frac = position - low
        amp = (
            envelope[np.arange(frames), low] * (1 - frac) + envelope[np.arange(frames), high] * frac
        ) * inside
        harmonic += np.interp(samples, frame_times, amp) * np.sin(k * phase)
    rng = np.random.default_rng(seed)
    spec = librosa.stft(rng.standard_normal(n + mel_cfg.n_fft), n_fft=mel_cfg.n_fft, hop_length=hop)
    bins = np.fft.rfftfreq(mel_cfg.n_fft, 1 / sr)
    shaped = np.stack(
        [np.interp(bins, centres, envelope[min(t, frames - 1)]) for t in range(spec.shape[1])], 1
    )
    noise = librosa.istft(spec / np.abs(spec).mean() * shaped, hop_length=hop, length=n + mel_cfg.n_fft)[:n]
    v = np.interp(samples, frame_times, np.clip(voiced.astype(np.float64), 0, 1))
    wav = harmonic * v + noise * (1 - v + 0.05)
    for _ in range(2):  # match the level of the given mel frame by frame
        got = mel_spectrogram(wav.astype(np.float32), mel_cfg).numpy().T[:frames]
        target = mel[: len(got)]
        weight = np.exp(target - target.max(1, keepdims=True))
        gain = np.exp(((target - got) * weight).sum(1) / weight.sum(1))
        gain = uniform_filter1d(np.concatenate([gain, gain[-1:].repeat(frames - len(gain))]), 3)
        wav = wav * np.interp(samples, frame_times, gain)
    peak = float(np.abs(wav).max())
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.astype(np.float32)


# ---------------------------------------------------------------------------------------------- reference timbre


def timbre_statistics(mel: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, n_mels) log-mel and (T,) frame weights in [0, 1] (voicing) → the weighted per-band mean (the
    long-term average spectrum) and standard deviation over time (how much each band moves from sound to
    sound), each averaged over TIMBRE_SMOOTH_BANDS neighbouring bands."""
    from scipy.ndimage import uniform_filter1d

    mean, std = _band_moments(mel, weights)
    smooth = functools.partial(uniform_filter1d, size=TIMBRE_SMOOTH_BANDS, mode="nearest")
    return smooth(mean), smooth(std)


def _band_moments(mel: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.clip(np.asarray(weights, np.float64), 0, 1)
    if w.sum() <= 0:
        w = np.ones(len(mel))
    x = np.asarray(mel, np.float64)
    mean = (x * w[:, None]).sum(0) / w.sum()
    std = np.sqrt((((x - mean) ** 2) * w[:, None]).sum(0) / w.sum())
    return mean, std


def reference_timbre(wav: np.ndarray, sample_rate: int, mel_cfg: MelConfig) -> tuple[np.ndarray, np.ndarray]:
    """`timbre_statistics` of a reference clip's voiced frames (Praat F0; its frames with sound when none
    is voiced), at the model's mel settings."""
    from cinematic.data.audio import mel_spectrogram, pitch_praat, resample

    wav = np.asarray(wav, np.float32)
    if sample_rate != mel_cfg.sample_rate:
        wav = np.asarray(resample(wav, sample_rate, mel_cfg.sample_rate), np.float32)
    mel = mel_spectrogram(wav, mel_cfg).numpy().T
    voiced = pitch_praat(wav, mel_cfg.sample_rate, mel_cfg.hop_length, len(mel)) > 0
    if not voiced.any():
        voiced = mel.max(1) > mel.max() - 6.0  # within ~50 dB of the loudest frame
    return timbre_statistics(mel, voiced.astype(np.float64))


def match_timbre(
    mel: np.ndarray, voiced: np.ndarray, reference: tuple[np.ndarray, np.ndarray], strength: float
) -> np.ndarray:
    """The reference-timbre step: move the sung log-mel's voiced frames towards a reference's spectral
    statistics (`reference_timbre`) by `strength` (0: unchanged; 1: the same smoothed long-term envelope,
    and each band moving over time as much as the reference's does), each frame in proportion to its
    voicing. A per-band offset and scale of each frame's deviation from the song's own average, so the
    melody, the phonemes and their timing stay the model's."""
    if strength == 0:
        return mel
    ref_mean, ref_std = reference
    mean, _ = _band_moments(mel, voiced)
    smooth_mean, smooth_std = timbre_statistics(mel, voiced)
    scale = np.clip(ref_std / np.maximum(smooth_std, 1e-3), 0.25, 4.0)
    target = mean + (ref_mean - smooth_mean) + (mel - mean) * scale
    weight = strength * np.clip(voiced, 0, 1)[:, None]
    return (mel + weight * (target - mel)).astype(mel.dtype)


# ---------------------------------------------------------------------------------------------- synthesizer


class SingingSynthesizer:
    """What `cinematic.load` returns for a singing checkpoint."""

    def __init__(
        self,
        model: XiaoiceSing,
        state: dict[str, Any],
        mel_config: MelConfig,
        device: str | torch.device = "cpu",
        vocoder: Any = None,
        checkpoint_path: Path | None = None,
    ):
        self.state = state
        self.model_cfg: XiaoiceSingConfig = model.cfg
        self.mel_config = mel_config
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.front = TextFrontEnd(state.get("front_end", "phonemes"))
        self.table = SymbolTable.from_state(state["symbols"])
        self._vocoder_spec = vocoder
        self._vocoder: Any = None
        self._encoder: Any = None
        self.checkpoint_path = checkpoint_path

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path | dict[str, Any],
        device: str | torch.device = "cpu",
        vocoder: Any = None,
        checkpoint_path: str | Path | None = None,
    ) -> SingingSynthesizer:
        """A ready synthesizer from a singing checkpoint (a path or a dict) alone: model settings, phoneme
        table, singers and languages come from its task state. `vocoder`: a vocoder checkpoint (path or
        dict) or object, or "harmonic"; default: the vocoder the training run recorded, else "harmonic"."""
        path = checkpoint if isinstance(checkpoint, str | Path) else checkpoint_path
        source = str(path or "checkpoint")
        ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
        state = ckpt.get("task_state") or {}
        if "singer" not in (ckpt.get("model") or {}) or not {"model_config", "symbols", "speakers"} <= set(
            state
        ):
            raise UserError(
                f"{source} is a {ckpt.get('task')!r} checkpoint, not a singing model's; pass a checkpoint of "
                "`cinematic train singing`"
            )
        model = XiaoiceSing(XiaoiceSingConfig(**state["model_config"]))
        model.load_state_dict(inference_weights(ckpt, "singer"))
        mel = MelConfig.model_validate(state["mel_config"])
        return cls(
            model, state, mel, device=device, vocoder=vocoder, checkpoint_path=Path(path) if path else None
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def singers(self) -> list[str]:
        return list(self.state["speakers"])

    @property
    def singer_ranges(self) -> dict[str, list[int]]:
        """Each training singer's lowest and highest MIDI note in the training data."""
        return {k: [int(v[0]), int(v[1])] for k, v in (self.state.get("singer_ranges") or {}).items()}

    @property
    def languages(self) -> list[str]:
        return list(self.state["languages"])

    @property
    def sample_rate(self) -> int:
        return self.mel_config.sample_rate

    @property
    def frames_per_second(self) -> float:
        return self.mel_config.sample_rate / self.mel_config.hop_length

    @property
    def vocoder(self) -> Any:
        """The HiFi-GAN vocoder object, or "harmonic" (the source-filter renderer)."""
        if self._vocoder is None:
            spec = self._vocoder_spec
            if spec is None:
                recorded = self.state.get("vocoder_checkpoint")
                if not recorded:
                    self._vocoder = HARMONIC
                    return self._vocoder
                spec = find_companion(
                    recorded,
                    self.checkpoint_path,
                    "vocoder",
                    hint='pass --vocoder VCKPT (a speech vocoder at the singing model\'s mel settings) or "harmonic"',
                )
            if isinstance(spec, str) and spec == HARMONIC:
                self._vocoder = HARMONIC
                return self._vocoder
            if isinstance(spec, (str, Path)) and not Path(spec).is_file():
                raise UserError(f'vocoder checkpoint not found: {spec} (pass --vocoder VCKPT or "harmonic")')
            if hasattr(spec, "vocode"):
                vocoder = spec
            else:
                from cinematic.generation.vocode import Vocoder

                vocoder = Vocoder.from_checkpoint(spec, device=self.device)
            try:
                vocoder.check_mel_config(self.mel_config)
            except UserError as err:
                raise UserError(f"{spec if isinstance(spec, (str, Path)) else 'vocoder'}: {err}") from None
            self._vocoder = vocoder
        return self._vocoder

    # ------------------------------------------------------------------------------------------ conditioning

    def speaker_encoder(self) -> Any:
        if self._encoder is None:
            from cinematic.models.speaker_encoder import SpeakerEncoder

            self._encoder = SpeakerEncoder()
        return self._encoder

    def reference_clip(self, reference: str | Path) -> tuple[np.ndarray, int]:
        """A reference clip's samples and rate, checked; a `UserError` naming it when it is missing, cannot
        be decoded, is silent or too short."""
        from cinematic.data.audio import load_audio
        from cinematic.data.skips import UnreadableFile
        from cinematic.data.voice import clip_problem

        if not Path(reference).is_file():
            raise UserError(f"reference clip not found: {reference}. {REFERENCE_HINT}")
        try:
            wav, sr = load_audio(reference)
        except UnreadableFile as err:
            raise UserError(f"reference clip {reference}: {err.reason}. {REFERENCE_HINT}") from None
        problem = clip_problem(wav, sr)
        if problem is not None:
            raise UserError(f"reference clip {reference}: {problem.rstrip('.')}. {REFERENCE_HINT}")
        return wav, sr

    def reference_dvector(self, reference: str | Path) -> np.ndarray:
        """The d-vector of a reference clip (speech or singing, any rate); a `UserError` naming it when it
        is missing, cannot be decoded, is silent or too short."""
        wav, sr = self.reference_clip(reference)
        try:
            return self.speaker_encoder().embed(wav, sr)
        except UserError as err:
            raise UserError(f"reference clip {reference}: {str(err).rstrip('.')}. {REFERENCE_HINT}") from None

    def reference_timbre(self, reference: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """The spectral statistics of a reference clip's voiced frames (`match_timbre`)."""
        wav, sr = self.reference_clip(reference)
        return reference_timbre(wav, sr, self.mel_config)

    def conditioning(self, singer: str | None, reference: str | Path | None) -> tuple[int, np.ndarray | None]:
        """(singer-table row, d-vector): a training singer's row and mean d-vector (default: the first
        singer), or row 0 and the reference clip's d-vector."""
        if singer is not None and reference is not None:
            raise UserError("give a singer or a reference clip, not both")
        if reference is not None:
            if not self.model_cfg.speaker_encoder:
                raise UserError(
                    "this singing model was trained without a speaker encoder (singing_model.speaker_encoder: "
                    "false), so it cannot clone from a reference; pass --singer"
                )
            return 0, self.reference_dvector(reference)
        name = singer if singer is not None else self.singers[0]
        if name not in self.singers:
            raise UserError(
                f"unknown singer {name!r}; this model knows: {', '.join(self.singers)} (or pass --reference)"
            )
        vector = self.state.get("speaker_dvectors", {}).get(name)
        vector = vector.numpy() if isinstance(vector, torch.Tensor) else vector
        return self.singers.index(name) + 1, vector

    # ------------------------------------------------------------------------------------------ singing

    def infer(
        self,
        notes: Sequence[SungNote],
        language: str,
        singer: str | None = None,
        reference: str | Path | None = None,
        timbre_strength: float = TIMBRE_STRENGTH,
    ) -> dict[str, Any]:
        """The model's outputs for a melody: mel (T, n_mels), F0 (T,) in MIDI semitones, voicing (T,),
        the frames per phoneme, the phoneme track and the first frame of each syllable. With a
        `reference`, the model's zero-shot mel is moved towards the clip's spectral statistics by
        `timbre_strength` (the reference-timbre step, `match_timbre`; 0: the model's own cloning alone)."""
        if not 0 <= timbre_strength <= 2:
            raise UserError(
                f"timbre strength {timbre_strength} is outside 0-2 (0: the model alone, 1: the reference's)"
            )
        if language not in self.languages:
            raise UserError(
                f"this singing model has no language {language!r}; it knows: {', '.join(self.languages)} "
                "(pass one of them with --language)"
            )
        notes = check_notes(list(notes), "the melody")
        row, dvector = self.conditioning(singer, reference)
        phonemes = phonemize_notes(notes, language, self.front)
        end = max(n.onset + n.duration for n in notes) + TAIL_S
        track = phoneme_track(
            notes, phonemes, self.frames_per_second, int(round(end * self.frames_per_second))
        )
        device = self.device
        tokens = torch.tensor([encode_symbols(self.table, track.symbols, "the melody")], device=device)
        pitch = torch.tensor([track.pitch], device=device)
        note_frames = torch.tensor([track.token_group_frames()], device=device)
        slur = torch.tensor([track.slur], device=device)
        language_id = torch.tensor([self.languages.index(language)], device=device)
        speakers = torch.tensor([row], device=device)
        dvectors = (
            torch.as_tensor(np.asarray(dvector, np.float32), device=device).unsqueeze(0)
            if dvector is not None and self.model_cfg.speaker_encoder
            else None
        )
        hidden, speaker, predicted = self.model.predict_durations(
            tokens, pitch, note_frames, slur, language_id, speakers, dvectors
        )
        predicted = predicted[0].float().cpu().numpy()
        durations: list[int] = []
        for g, frames in enumerate(track.group_frames):
            members = [i for i, x in enumerate(track.group) if x == g]
            durations += fit_durations(predicted[members] + 0.5, frames)
        out = self.model.synthesize(hidden, speaker, pitch, torch.tensor([durations], device=device))
        starts = np.concatenate([[0], np.cumsum(track.group_frames)])
        onsets = [int(starts[g]) for g, k in enumerate(track.note_of_group) if k >= 0 and not notes[k].slur]
        mel = out["mel"][0].float().cpu().numpy()
        voiced = out["voiced"][0].float().cpu().numpy()
        if reference is not None and timbre_strength > 0:
            mel = match_timbre(mel, voiced, self.reference_timbre(reference), timbre_strength)
        return {
            "mel": mel,
            "f0_midi": out["f0_midi"][0].float().cpu().numpy(),
            "voiced": voiced,
            "frame_note": out["frame_note"][0].float().cpu().numpy(),
            "durations": durations,
            "track": track,
            "onset_frames": onsets,
        }

    def render(self, mel: np.ndarray, f0_midi: np.ndarray, voiced: np.ndarray, seed: int = 0) -> np.ndarray:
        """A waveform from the model's outputs, with the vocoder or the harmonic renderer."""
        vocoder = self.vocoder
        if isinstance(vocoder, str):
            return render_harmonic(mel, f0_midi, voiced, self.mel_config, seed=seed)
        torch.manual_seed(seed)
        return np.asarray(vocoder.vocode(mel.T), dtype=np.float32).reshape(-1)

    def sing(
        self,
        notes: Sequence[SungNote],
        language: str,
        singer: str | None = None,
        reference: Path | None = None,
        seed: int = 0,
        timbre_strength: float = TIMBRE_STRENGTH,
    ) -> SungAudio:
        """Sing `notes` in `language` as a training `singer` (default: the first) or zero-shot like the voice
        in a `reference` clip (speech or singing). Each syllable's phonemes fill its note(s); the same seed
        gives the same samples. A `UserError` for an empty note list, an unknown singer, or a language
        the model lacks (naming the languages it has). `timbre_strength`: the reference-timbre step
        (`infer`; 0 for the model's zero-shot voice alone)."""
        out = self.infer(notes, language, singer=singer, reference=reference, timbre_strength=timbre_strength)
        wav = self.render(out["mel"], out["f0_midi"], out["voiced"], seed=seed)
        hop = self.mel_config.hop_length
        onsets = [frame * hop / self.sample_rate for frame in out["onset_frames"]]
        return SungAudio(wav=wav, sample_rate=self.sample_rate, syllable_onsets=onsets)


# ---------------------------------------------------------------------------------------------- CLI


def sing_command(args: argparse.Namespace) -> int:
    from cinematic.data.audio import save_audio
    from cinematic.data.singing import read_melody

    notes = read_melody(args.melody)
    synth = SingingSynthesizer.from_checkpoint(args.checkpoint, device=args.device, vocoder=args.vocoder)
    audio = synth.sing(
        notes,
        language=args.language,
        singer=args.singer,
        reference=args.reference,
        seed=args.seed,
        timbre_strength=args.timbre_strength,
    )
    save_audio(args.out, audio.wav, audio.sample_rate)
    renderer = "harmonic renderer" if isinstance(synth.vocoder, str) else "HiFi-GAN vocoder"
    print(
        f"wrote {args.out} ({len(audio.wav) / audio.sample_rate:.2f} s, {len(audio.syllable_onsets)} syllables, "
        f"{renderer})"
    )
    return 0
