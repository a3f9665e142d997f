"""Voice data: utterances of a voice folder, their cached acoustic features, and FastSpeech 2 batches.

Used by the voice task (training) and by `cinematic.generation.speech` (adaptation, evaluation).

Per utterance the features — log-mel, log-F0 per frame (Praat, unvoiced frames interpolated), log energy
per frame, the GE2E d-vector — are cached under `<cache_dir>/features/`, keyed by the audio's content
hash and the feature settings, so a second run skips finished work. A Praat/MFA TextGrid beside a clip
(`<utt>.TextGrid`, a "phones" tier) gives its symbols and durations instead of the phonemizer and the
aligner.

The speaker encoder is passed in (anything with `embed(wav, sample_rate) -> (256,) ndarray`, e.g.
`cinematic.models.speaker_encoder.SpeakerEncoder`): data never builds models.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from cinematic.configs.model_config import MelConfig
from cinematic.data.skips import UnreadableFile
from cinematic.data.tokenizers.phonemes import SymbolTable, TextFrontEnd, espeak_voice
from cinematic.errors import UserError
from cinematic.utils import file_sha1

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
"""Bump when the cached features change meaning."""
TRIM_TOP_DB = 40.0
DVECTOR_DIM = 256
SILENCE_PEAK = 1e-3
"""A clip whose peak stays below this (−60 dBFS) is silent."""
MIN_SOUND_S = 0.1
"""Sound a clip needs between its first and last sample above 1 % of its peak: less gives no d-vector
(the speaker encoder's limit) and no usable frames."""

OnUnreadable = Callable[[Path, str], None]
"""Where a reader reports a file it leaves out or ignores (`SkippedFiles.skip`: path, reason)."""


class SpeakerEmbedder(Protocol):
    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------------- features


@dataclass
class Features:
    """One utterance's cached acoustic features, all per mel frame (T frames)."""

    mel: np.ndarray
    """(T, n_mels) log-mel."""
    log_f0: np.ndarray
    """(T,) natural log of F0 in Hz, unvoiced frames linearly interpolated (0 everywhere if none voiced)."""
    voiced: np.ndarray
    """(T,) bool."""
    log_energy: np.ndarray
    """(T,) log of the STFT magnitude's L2 norm per frame."""
    dvector: np.ndarray
    """(256,) GE2E d-vector of the clip (zeros without a speaker encoder)."""


def clip_problem(wav: np.ndarray, sample_rate: int) -> str | None:
    """Why a clip is no use as speech (None when it is): no samples, NaN/inf samples, silence (peak below
    −60 dBFS), or less than `MIN_SOUND_S` of sound once its quiet ends (under 1 % of the peak) are cut."""
    wav = np.asarray(wav)
    if wav.size == 0:
        return "the clip holds no samples"
    if not np.isfinite(wav).all():
        return "the clip holds NaN or infinite samples"
    magnitude = np.abs(wav if wav.ndim == 1 else wav.mean(axis=0))
    peak = float(magnitude.max())
    if peak < SILENCE_PEAK:
        level = f"its peak is {20 * math.log10(peak):.0f} dBFS" if peak > 0 else "every sample is 0"
        return f"the clip is silent ({level})"
    loud = np.flatnonzero(magnitude > 0.01 * peak)
    sound = (loud[-1] - loud[0] + 1) / sample_rate
    if sound < MIN_SOUND_S:
        return f"the clip has only {sound * 1000:.0f} ms of sound (at least {MIN_SOUND_S:g} s is needed)"
    return None


def load_clip(path: Path, mel_cfg: MelConfig) -> np.ndarray:
    """Audio at the model's rate with leading and trailing silence trimmed (the aligner has no silence
    token at the edges; trimming keeps them from being glued onto the first and last phonemes).
    `UnreadableFile` (its `reason` says why) for a file that cannot be decoded or holds no usable sound
    (`clip_problem`)."""
    import librosa

    from cinematic.data.audio import load_audio

    wav, _ = load_audio(path, sample_rate=mel_cfg.sample_rate)
    problem = clip_problem(wav, mel_cfg.sample_rate)
    if problem is not None:
        raise UnreadableFile(path, problem)
    trimmed, _ = librosa.effects.trim(wav, top_db=TRIM_TOP_DB, frame_length=1024, hop_length=256)
    return trimmed.astype(np.float32) if trimmed.size >= mel_cfg.hop_length * 4 else wav


def interpolate_unvoiced(log_f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Fill unvoiced frames by linear interpolation between voiced neighbours (held flat at the ends)."""
    if not voiced.any():
        return np.zeros_like(log_f0)
    index = np.arange(len(log_f0))
    return np.interp(index, index[voiced], log_f0[voiced]).astype(np.float32)


def extract_features(
    wav: np.ndarray, mel_cfg: MelConfig, speaker_encoder: SpeakerEmbedder | None
) -> Features:
    from cinematic.data.audio import frame_energy, mel_spectrogram, pitch_praat

    mel = mel_spectrogram(wav, mel_cfg).T.numpy().astype(np.float32)  # (T, n_mels)
    frames = mel.shape[0]
    f0 = pitch_praat(wav, mel_cfg.sample_rate, mel_cfg.hop_length, frames)
    voiced = f0 > 0
    log_f0 = interpolate_unvoiced(np.log(np.maximum(f0, 1.0)).astype(np.float32), voiced)
    energy = frame_energy(wav, mel_cfg)[:frames]
    log_energy = np.log(np.maximum(energy, 1e-5)).astype(np.float32)
    dvector = (
        speaker_encoder.embed(wav, mel_cfg.sample_rate)
        if speaker_encoder is not None
        else np.zeros(DVECTOR_DIM, np.float32)
    )
    return Features(mel, log_f0, voiced, log_energy, dvector.astype(np.float32))


class FeatureCache:
    """Per-utterance features in the data pipeline's content-addressed cache (`cinematic.data.preprocessing`),
    under `<cache_dir>/features/`, keyed by sha1(audio bytes) + the feature settings + FEATURE_VERSION.
    `cache_dir=None` keeps them in memory only (adaptation and evaluation clips). Without a
    `speaker_encoder` the d-vectors are zeros (and cached under another key)."""

    def __init__(self, cache_dir: Path | None, mel_cfg: MelConfig, speaker_encoder: SpeakerEmbedder | None):
        from cinematic.data.preprocessing import FeatureCache as Store

        self.store = Store(cache_dir / "features") if cache_dir is not None else None
        self.memory: dict[Path, Features] = {}
        self.mel_cfg = mel_cfg
        self.encoder = speaker_encoder
        with_dvectors = speaker_encoder is not None
        self.extra = {"voice_task": FEATURE_VERSION, "dvectors": with_dvectors, "trim_top_db": TRIM_TOP_DB}

    def get(self, audio: Path) -> Features:
        """The clip's features; `UnreadableFile` when it cannot be decoded or holds no usable sound."""
        from cinematic.data.preprocessing import feature_key

        if self.store is None:
            if audio not in self.memory:
                self.memory[audio] = self._extract(audio)
            return self.memory[audio]
        key = feature_key(file_sha1(audio), "voice_fastspeech2", self.mel_cfg, self.extra)
        cached = self.store.load(key)
        if cached is not None and set(Features.__dataclass_fields__) <= set(cached):
            return Features(**{k: cached[k] for k in Features.__dataclass_fields__})
        features = self._extract(audio)
        self.store.store(key, asdict(features))
        return features

    def _extract(self, audio: Path) -> Features:
        wav = load_clip(audio, self.mel_cfg)
        try:
            return extract_features(wav, self.mel_cfg, self.encoder)
        except UserError as err:  # the speaker encoder found too little sound for a d-vector
            raise UnreadableFile(audio, str(err)) from None


# ---------------------------------------------------------------------------------------------- TextGrids


def read_textgrid_phones(path: Path, mel_cfg: MelConfig) -> tuple[list[str], list[int]] | None:
    """Symbols and frame durations from a Praat/MFA TextGrid's phone tier (long text format); empty
    intervals become a pause symbol. None when the file has no phone tier."""
    text = path.read_text(encoding="utf-8", errors="replace")
    tiers = re.split(r"\n\s*item \[\d+\]:", text)
    for tier in tiers[1:]:
        name = re.search(r'name = "([^"]*)"', tier)
        if not name or "phone" not in name.group(1).lower():
            continue
        intervals = re.findall(r'xmin = ([\d.eE+-]+)\s*xmax = ([\d.eE+-]+)\s*text = "([^"]*)"', tier)
        frames_per_s = mel_cfg.sample_rate / mel_cfg.hop_length
        symbols, durations = [], []
        for xmin, xmax, label in intervals:
            start, end = round(float(xmin) * frames_per_s), round(float(xmax) * frames_per_s)
            if end <= start:
                continue
            symbols.append(label.strip() or " ")
            durations.append(end - start)
        return symbols, durations
    return None


# ---------------------------------------------------------------------------------------------- dataset


@dataclass
class VoiceItem:
    audio_path: Path
    text: str
    speaker: str
    language: str
    symbols: list[str]
    durations: list[int] | None = None


class VoiceDataset(Dataset):
    """Utterances as tensors: token ids, normalised frame features, speaker row, language id, d-vector.

    `stats` holds pitch_mean, pitch_std, energy_mean and energy_std (a voice task state's "stats")."""

    def __init__(
        self,
        items: list[VoiceItem],
        cache: FeatureCache,
        table: SymbolTable,
        speakers: dict[str, int],
        languages: dict[str, int],
        stats: Mapping[str, float],
    ):
        self.items, self.cache, self.table = items, cache, table
        self.speakers, self.languages, self.stats = speakers, languages, stats

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        feats = self.cache.get(item.audio_path)
        tokens = self.table.encode(item.symbols, context=str(item.audio_path))
        mel = feats.mel
        durations = None
        if item.durations is not None:
            durations = torch.tensor(item.durations, dtype=torch.long)
            total = int(durations.sum())
            mel = (
                mel[:total]
                if total <= len(mel)
                else np.pad(mel, ((0, total - len(mel)), (0, 0)), mode="edge")
            )
        frames = len(mel)
        s = self.stats
        pitch = (feats.log_f0[:frames] - s["pitch_mean"]) / s["pitch_std"]
        energy = (feats.log_energy[:frames] - s["energy_mean"]) / s["energy_std"]
        return {
            "tokens": torch.tensor(tokens, dtype=torch.long),
            "mel": torch.from_numpy(np.ascontiguousarray(mel)),
            "pitch": torch.from_numpy(np.pad(pitch, (0, frames - len(pitch))).astype(np.float32)),
            "energy": torch.from_numpy(np.pad(energy, (0, frames - len(energy))).astype(np.float32)),
            "speaker": self.speakers[item.speaker],
            "language": self.languages[item.language],
            "dvector": torch.from_numpy(feats.dvector),
            "durations": durations,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the longest text and mel in the batch."""
    n_text = max(len(i["tokens"]) for i in items)
    n_mel = max(len(i["mel"]) for i in items)
    batch_size, n_mels = len(items), items[0]["mel"].shape[1]
    tokens = torch.zeros(batch_size, n_text, dtype=torch.long)
    mels = torch.zeros(batch_size, n_mel, n_mels)
    pitch, energy = torch.zeros(batch_size, n_mel), torch.zeros(batch_size, n_mel)
    durations = torch.zeros(batch_size, n_text, dtype=torch.long)
    for b, item in enumerate(items):
        tokens[b, : len(item["tokens"])] = item["tokens"]
        mels[b, : len(item["mel"])] = item["mel"]
        pitch[b, : len(item["pitch"])] = item["pitch"]
        energy[b, : len(item["energy"])] = item["energy"]
        if item["durations"] is not None:
            durations[b, : len(item["durations"])] = item["durations"]
    batch = {
        "tokens": tokens,
        "text_lengths": torch.tensor([len(i["tokens"]) for i in items]),
        "mels": mels,
        "mel_lengths": torch.tensor([len(i["mel"]) for i in items]),
        "pitch": pitch,
        "energy": energy,
        "speakers": torch.tensor([i["speaker"] for i in items]),
        "languages": torch.tensor([i["language"] for i in items]),
        "dvectors": torch.stack([i["dvector"] for i in items]),
    }
    # Known durations are used only when the whole batch has them (TextGrid corpora are all-or-nothing).
    if all(i["durations"] is not None for i in items):
        batch["durations"] = durations
    return batch


def read_items(
    data_dir: Path,
    front: TextFrontEnd,
    mel_cfg: MelConfig,
    default_language: str,
    on_unreadable: OnUnreadable | None = None,
) -> list[VoiceItem]:
    """Utterances of a voice folder with their symbols (TextGrid phones when one sits beside the clip).

    `on_unreadable(path, reason)` hears of the metadata files the folder reader ignored (a speaker.json
    or <utt>.json that is no JSON object, a transcript that is not UTF-8). A language espeak-ng does not
    know is a `UserError` naming where it was set."""
    from cinematic.data.dataset import read_voice_dir

    utterances = read_voice_dir(data_dir)
    if on_unreadable is not None:
        for path, reason in _metadata_problems(data_dir):
            on_unreadable(path, reason)
    if not utterances:
        raise UserError(
            f"no utterances found in {data_dir}: expected <speaker>/<utt>.wav with <utt>.txt beside it "
            "(or an LJSpeech/VCTK folder)"
        )
    languages = [u.language or default_language for u in utterances]
    if front.mode == "phonemes":
        _check_languages([u.audio_path for u in utterances], languages)
    symbols = front.batch([u.text for u in utterances], languages)
    items = []
    for utt, language, syms in zip(utterances, languages, symbols, strict=True):
        durations = None
        grid = utt.audio_path.with_suffix(".TextGrid")
        if grid.is_file():
            parsed = read_textgrid_phones(grid, mel_cfg)
            if parsed:
                syms, durations = parsed
        if not syms:
            log.warning("skipping %s: its transcript has nothing to speak", utt.audio_path)
            continue
        items.append(VoiceItem(utt.audio_path, utt.text, utt.speaker, language, list(syms), durations))
    return items


def _check_languages(clips: list[Path], languages: list[str]) -> None:
    """A `UserError` naming the metadata that set a language espeak-ng has no voice for."""
    for language in sorted(set(languages)):
        try:
            espeak_voice(language)
        except UserError as err:
            where = sorted(
                {_language_source(clip, language) for clip, lang in zip(clips, languages) if lang == language}
            )
            shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
            raise UserError(
                f"{err}. It is set by {shown}: write an espeak-ng language code there (en, es, fr-fr, de, ...)"
            ) from None


def _language_source(clip: Path, language: str) -> str:
    """Where a clip's language came from: its <utt>.json or a speaker.json, else the default."""
    for candidate in (
        clip.with_suffix(".json"),
        clip.parent / "speaker.json",
        clip.parent.parent / "speaker.json",
    ):
        if _json_language(candidate) == language:
            return f'the "language" of {candidate}'
    return "voice_model.languages (its first entry is the default language)"


def _json_language(path: Path) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(value["language"]) if isinstance(value, dict) and value.get("language") else None


def _metadata_problems(data_dir: Path) -> list[tuple[Path, str]]:
    """Metadata `read_voice_dir` ignores with a warning: a speaker.json (or, in the <speaker>/<utt>.wav
    layout, an <utt>.json) that is no JSON object, and transcripts beside clips that are not UTF-8."""
    from cinematic.data.audio import AUDIO_SUFFIXES
    from cinematic.data.dataset import detect_voice_layout

    seed = detect_voice_layout(data_dir) == "seed"
    folders = [data_dir]
    if seed:
        folders += sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    problems = []
    for folder in folders:
        paths = [folder / "speaker.json"]
        if seed and folder != data_dir:
            paths += sorted(
                p for p in folder.rglob("*") if p.suffix in {".json", ".txt"} and p.name != "speaker.json"
            )
        for path in paths:
            is_clip_file = any(path.with_suffix(s).is_file() for s in AUDIO_SUFFIXES)
            if not path.is_file() or (path.name != "speaker.json" and not is_clip_file):
                continue
            try:
                # as read_voice_dir reads them: transcripts may start with a BOM, JSON may not
                text = path.read_text(encoding="utf-8-sig" if path.suffix == ".txt" else "utf-8")
            except (OSError, UnicodeDecodeError):
                effect = "its clip is left out" if path.suffix == ".txt" else "its labels are ignored"
                problems.append((path, f"not UTF-8 text, so {effect}; re-save it as UTF-8"))
                continue
            if path.suffix == ".json":
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    value = exc
                if not isinstance(value, dict):
                    problems.append(
                        (path, f"not a JSON object ({value}), so its labels (language, ...) are ignored")
                    )
    return problems
