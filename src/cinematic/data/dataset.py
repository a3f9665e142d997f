"""Readers for the data layouts of DESIGN §3, plus torch datasets built on them.

- music/: `*.mid|*.midi` (symbolic) and `*.wav|*.flac|*.ogg|*.mp3` (audio), each with an optional
  same-stem `.json` of labels (`emotion`, `genre`, `scene`, `tempo`, `key`, ...; unknown keys kept).
- voice/: the seed layout `<speaker>/<utt>.wav + <utt>.txt` (optional `<speaker>/speaker.json` with
  `language`, `gender`, ...), LJSpeech (`metadata.csv` + `wavs/`) and VCTK (`wav48*/<spk>/*.wav|flac` +
  `txt/<spk>/*.txt`), detected automatically.
- lyrics/: `<language>/<song>.txt` + optional same-stem `.json`.

Readers return lists sorted by path, so every process sees the same order. Bad input never ends in a
library traceback: a malformed JSON sidecar is a warning naming the file (the item keeps empty labels),
an utterance without a transcript is skipped with a warning, and a missing folder is a `UserError`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from cinematic.data.audio import AUDIO_SUFFIXES
from cinematic.errors import UserError

log = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")


@dataclass
class MusicItem:
    """One music file: a MIDI file or an audio file, with its labels (empty dict when none)."""

    path: Path
    kind: Literal["midi", "audio"]
    labels: dict = field(default_factory=dict)


@dataclass
class Utterance:
    """One spoken clip with its transcript, speaker name, language (None when unknown) and metadata."""

    audio_path: Path
    text: str
    speaker: str
    language: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Song:
    """One lyrics text with its language folder and labels."""

    path: Path
    language: str
    text: str
    labels: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def _require_dir(root: str | Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{what} folder not found: {root}. Pass the folder that holds your {what} data.")
    return root


def read_json_labels(path: Path) -> dict:
    """The JSON object in `path`, or {} with a warning naming the file when it is missing a dict,
    malformed, or not UTF-8."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        log.warning("ignoring malformed JSON metadata %s (%s); the item keeps empty labels", path, exc)
        return {}
    if not isinstance(value, dict):
        log.warning("ignoring JSON metadata %s: expected an object, got %s", path, type(value).__name__)
        return {}
    return value


def read_text(path: Path) -> str | None:
    """UTF-8 text (BOM tolerated) stripped of surrounding whitespace, or None with a warning."""
    try:
        return path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError:
        log.warning("skipping %s: not UTF-8 text (re-save it as UTF-8)", path)
    except OSError as exc:
        log.warning("skipping %s: %s", path, exc)
    return None


def _files(root: Path, suffixes: Sequence[str], recursive: bool = True) -> list[Path]:
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(
        p for p in pattern if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
    )


# ---------------------------------------------------------------------------------------------------
# music/
# ---------------------------------------------------------------------------------------------------


def read_music_dir(root: str | Path) -> list[MusicItem]:
    """Every MIDI and audio file under `root` (recursively), sorted by path, with same-stem JSON labels."""
    root = _require_dir(root, "music")
    items = []
    for path in _files(root, MIDI_SUFFIXES + AUDIO_SUFFIXES):
        kind: Literal["midi", "audio"] = "midi" if path.suffix.lower() in MIDI_SUFFIXES else "audio"
        items.append(MusicItem(path=path, kind=kind, labels=read_json_labels(path.with_suffix(".json"))))
    return items


# ---------------------------------------------------------------------------------------------------
# voice/
# ---------------------------------------------------------------------------------------------------


def detect_voice_layout(root: str | Path) -> Literal["ljspeech", "vctk", "seed"]:
    """Which voice layout `root` holds: LJSpeech (metadata.csv), VCTK (wav48*/ + txt/) or the seed's."""
    root = Path(root)
    if (root / "metadata.csv").is_file():
        return "ljspeech"
    if (root / "txt").is_dir() and any(p.is_dir() and p.name.startswith("wav48") for p in root.iterdir()):
        return "vctk"
    return "seed"


def read_voice_dir(root: str | Path) -> list[Utterance]:
    """All utterances under `root` in whichever supported layout it uses, sorted by audio path."""
    root = _require_dir(root, "voice")
    layout = detect_voice_layout(root)
    reader = {"ljspeech": _read_ljspeech, "vctk": _read_vctk, "seed": _read_seed_voice}[layout]
    utterances = reader(root)
    return sorted(utterances, key=lambda u: str(u.audio_path))


def _speaker_meta(folder: Path) -> dict:
    return read_json_labels(folder / "speaker.json")


def _read_seed_voice(root: Path) -> list[Utterance]:
    utterances = []
    for speaker_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = _speaker_meta(speaker_dir)
        language = meta.get("language")
        for audio in _files(speaker_dir, AUDIO_SUFFIXES):
            transcript = audio.with_suffix(".txt")
            if not transcript.is_file():
                log.warning("skipping %s: no transcript %s", audio, transcript.name)
                continue
            text = read_text(transcript)
            if not text:
                if text == "":
                    log.warning("skipping %s: transcript %s is empty", audio, transcript.name)
                continue
            utt_meta = {**meta, **read_json_labels(audio.with_suffix(".json"))}
            lang = utt_meta.get("language", language)
            utterances.append(
                Utterance(
                    audio_path=audio,
                    text=text,
                    speaker=speaker_dir.name,
                    language=str(lang) if lang else None,
                    meta=utt_meta,
                )
            )
    return utterances


def _read_ljspeech(root: Path) -> list[Utterance]:
    """LJSpeech: `metadata.csv` lines `id|raw text|normalized text`, audio in `wavs/<id>.wav`."""
    meta = _speaker_meta(root)
    speaker = str(meta.get("speaker", root.name or "ljspeech"))
    language = meta.get("language", "en")
    wav_dir = root / "wavs" if (root / "wavs").is_dir() else root
    utterances = []
    try:
        lines = (root / "metadata.csv").read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{root / 'metadata.csv'} is not UTF-8 text: {exc}") from exc
    for number, row in enumerate(csv.reader(lines, delimiter="|", quoting=csv.QUOTE_NONE), start=1):
        if not row or not row[0].strip():
            continue
        if len(row) < 2:
            log.warning(
                "skipping %s line %d: expected 'id|text[|normalized text]'", root / "metadata.csv", number
            )
            continue
        text = (row[2] if len(row) > 2 and row[2].strip() else row[1]).strip()
        audio = next(
            (wav_dir / f"{row[0]}{s}" for s in AUDIO_SUFFIXES if (wav_dir / f"{row[0]}{s}").is_file()), None
        )
        if audio is None:
            log.warning(
                "skipping %s line %d: no audio file %s.wav", root / "metadata.csv", number, wav_dir / row[0]
            )
            continue
        if not text:
            log.warning("skipping %s: empty transcript in metadata.csv line %d", audio, number)
            continue
        utterances.append(
            Utterance(audio_path=audio, text=text, speaker=speaker, language=language, meta=dict(meta))
        )
    return utterances


def _read_vctk_speakers(root: Path) -> dict[str, dict]:
    """speaker-info.txt (`ID AGE GENDER ACCENTS REGION`) → {'p225': {'gender': 'F', ...}}; {} if absent."""
    info = root / "speaker-info.txt"
    speakers: dict[str, dict] = {}
    if not info.is_file():
        return speakers
    for line in info.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3:
            name = parts[0] if parts[0].startswith("p") or parts[0].startswith("s") else f"p{parts[0]}"
            speakers[name] = {"age": parts[1], "gender": parts[2], "accent": " ".join(parts[3:4])}
    return speakers


def _read_vctk(root: Path) -> list[Utterance]:
    """VCTK 0.80 (`wav48/<spk>/<spk>_<n>.wav`) and 0.92 (`wav48_silence_trimmed/<spk>/<spk>_<n>_mic1.flac`)."""
    speakers = _read_vctk_speakers(root)
    audio_root = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("wav48"))[0]
    utterances = []
    seen: set[str] = set()
    for audio in _files(audio_root, AUDIO_SUFFIXES):
        speaker = audio.parent.name
        stem = audio.stem
        for mic in ("_mic1", "_mic2"):
            stem = stem.removesuffix(mic)
        if stem in seen:  # 0.92 ships two microphones per sentence; keep mic1 (sorted first)
            continue
        transcript = root / "txt" / speaker / f"{stem}.txt"
        if not transcript.is_file():
            log.warning("skipping %s: no transcript %s", audio, transcript)
            continue
        text = read_text(transcript)
        if not text:
            continue
        seen.add(stem)
        meta = dict(speakers.get(speaker, {}))
        utterances.append(Utterance(audio_path=audio, text=text, speaker=speaker, language="en", meta=meta))
    return utterances


# ---------------------------------------------------------------------------------------------------
# lyrics/
# ---------------------------------------------------------------------------------------------------


def read_lyrics_dir(root: str | Path) -> list[Song]:
    """Every `<language>/<song>.txt` under `root`, sorted by path, with same-stem JSON labels.

    A JSON `language` key does not override the folder name: the folder is the language.
    """
    root = _require_dir(root, "lyrics")
    songs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _files(folder, (".txt",)):
            text = read_text(path)
            if text is None:
                continue
            if not text:
                log.warning("skipping %s: empty lyrics file", path)
                continue
            songs.append(
                Song(
                    path=path,
                    language=folder.name,
                    text=text,
                    labels=read_json_labels(path.with_suffix(".json")),
                )
            )
    return songs


# ---------------------------------------------------------------------------------------------------
# Torch datasets over audio files
# ---------------------------------------------------------------------------------------------------


class AudioSegmentDataset(Dataset):
    """Fixed-length random crops of audio files (for vocoders and the music audio route).

    Item i of epoch e is cropped with `item_rng(seed, e, i)`, so a resumed run draws the same crops.
    The trainer calls `set_epoch(e)` at the start of each epoch.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        sample_rate: int,
        segment_samples: int,
        seed: int = 0,
        mono: bool = True,
        loader: Callable[[Path, int], np.ndarray] | None = None,
    ):
        self.paths = list(paths)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        self.seed = seed
        self.mono = mono
        self.epoch = 0
        self._load = loader or self._default_load

    def _default_load(self, path: Path, sample_rate: int) -> np.ndarray:
        from cinematic.data.audio import load_audio

        return load_audio(path, sample_rate, mono=self.mono)[0]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        from cinematic.utils import item_rng

        audio = self._load(self.paths[index], self.sample_rate)
        n = audio.shape[-1]
        if n >= self.segment_samples:
            start = int(item_rng(self.seed, self.epoch, index).integers(0, n - self.segment_samples + 1))
            return np.ascontiguousarray(audio[..., start : start + self.segment_samples])
        pad = [(0, 0)] * (audio.ndim - 1) + [(0, self.segment_samples - n)]
        return np.pad(audio, pad)
