"""Attributes measured from the music itself, as discrete condition values (DESIGN §3).

Every MIDI or audio file carries conditions for free — key and mode, tempo, note density, register,
polyphony, instrumentation; for audio tempo, loudness and brightness — whether or not anyone labelled
it (MuseCoco and FIGARO condition on such attributes). The music tasks measure them once at
preprocessing (cached by the file's hash), use them as conditions beside emotion/genre/scene (a label
given in the file's `.json` wins over the measured value), and `cinematic evaluate music` measures the
generated pieces with the same functions to score control accuracy.

Which library does what, and why:
- **Key and mode**: the Krumhansl–Schmuckler method: the duration-weighted pitch-class histogram is
  correlated with the 24 rotations of a major and a minor key profile, the best correlation wins.
  The profiles are music21's (`music21.analysis.discrete.KrumhanslSchmuckler.getWeights`, the
  Krumhansl–Kessler probe-tone ratings), the method its `KeyWeightKeyAnalysis`. Building a music21
  stream per file costs seconds for a long piece, so the histogram is read from the notes directly
  and only the correlation (a 12 × 24 product) is done here.
- **Tempo**: librosa's tempo estimator (`librosa.feature.tempo`: autocorrelation of an onset-strength
  envelope with a log-normal prior around 120 bpm). For audio the envelope is librosa's onset strength;
  for MIDI it is built from the note onsets (velocity-weighted, 100 frames per second). The MIDI tempo
  map is *not* used: the performance encoding keeps only times in seconds, so a generated piece always
  carries the default 120 bpm map, and tempo read from the notes is the one quantity training data and
  generated pieces share.
- **Loudness**: ITU-R BS.1770 integrated loudness from pyloudnorm (RMS dBFS for clips shorter than its
  400 ms gate). **Brightness**: librosa's spectral centroid (mean over frames, weighted by energy).
- Density (notes per second), register (duration-weighted mean pitch), polyphony (mean number of
  sounding notes while any sounds) and instrumentation (the General MIDI program family with the most
  notes; `drums` when only drum tracks play) are simple counts over the notes read with symusic.

Numbers become buckets (`SYMBOLIC_ATTRIBUTES` / `AUDIO_ATTRIBUTES` list the values, in a fixed order).
`measure_score_raw` keeps the numbers, so a training crop that is transposed or time-stretched gets the
attributes of what the model actually sees (`augment_raw`: the key moves with the transposition, tempo
and density with the stretch). `parse_attribute` turns user input ("D minor", "dm", 90, "high") into a
bucket value and refuses anything else with the list of accepted values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.errors import UserError

# ------------------------------------------------------------------------------------- vocabularies

PITCH_CLASSES = ("c", "c#", "d", "eb", "e", "f", "f#", "g", "ab", "a", "bb", "b")
"""Canonical spellings of the 12 tonics (the common ones: sharps for C#/F#, flats for Eb/Ab/Bb)."""
MODES = ("major", "minor")
KEYS = tuple(f"{tonic} {mode}" for mode in MODES for tonic in PITCH_CLASSES)

TEMPO_EDGES = (76.0, 108.0, 132.0)
"""bpm: slow < 76 ≤ moderate < 108 ≤ fast < 132 ≤ very_fast."""
TEMPO_BUCKETS = ("slow", "moderate", "fast", "very_fast")
DENSITY_EDGES = (4.0, 8.0)
"""Notes per second: low < 4 ≤ medium < 8 ≤ high."""
REGISTER_EDGES = (57.0, 66.0)
"""Duration-weighted mean MIDI pitch: low < A3 (57) ≤ medium < F#4 (66) ≤ high."""
POLYPHONY_EDGES = (1.5, 3.0)
"""Mean notes sounding while any sounds: low < 1.5 ≤ medium < 3 ≤ high."""
LEVELS = ("low", "medium", "high")
LOUDNESS_EDGES = (-30.0, -18.0)
"""LUFS: quiet < −30 ≤ medium < −18 ≤ loud."""
LOUDNESS_BUCKETS = ("quiet", "medium", "loud")
BRIGHTNESS_EDGES = (1500.0, 3000.0)
"""Energy-weighted mean spectral centroid in Hz: dark < 1500 ≤ medium < 3000 ≤ bright."""
BRIGHTNESS_BUCKETS = ("dark", "medium", "bright")

GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
"""The 16 General MIDI program families (programs 8·i … 8·i + 7)."""

SYMBOLIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "key": KEYS,
    "mode": MODES,
    "tempo": TEMPO_BUCKETS,
    "density": LEVELS,
    "register": LEVELS,
    "polyphony": LEVELS,
    "instruments": (*GM_FAMILIES, "drums"),
}
"""Attributes measured from a MIDI file → accepted values (fixed order)."""

AUDIO_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "tempo": TEMPO_BUCKETS,
    "loudness": LOUDNESS_BUCKETS,
    "brightness": BRIGHTNESS_BUCKETS,
}
"""Attributes measured from a waveform → accepted values (fixed order)."""

ALL_ATTRIBUTES: dict[str, tuple[str, ...]] = {**SYMBOLIC_ATTRIBUTES, **AUDIO_ATTRIBUTES}

_NUMERIC_EDGES: dict[str, tuple[tuple[float, ...], tuple[str, ...]]] = {
    "tempo": (TEMPO_EDGES, TEMPO_BUCKETS),
    "density": (DENSITY_EDGES, LEVELS),
    "register": (REGISTER_EDGES, LEVELS),
    "polyphony": (POLYPHONY_EDGES, LEVELS),
    "loudness": (LOUDNESS_EDGES, LOUDNESS_BUCKETS),
    "brightness": (BRIGHTNESS_EDGES, BRIGHTNESS_BUCKETS),
}
_UNITS = {
    "tempo": "bpm",
    "density": "notes per second",
    "register": "mean MIDI pitch",
    "polyphony": "notes sounding at once",
    "loudness": "LUFS",
    "brightness": "Hz",
}


def bucket(name: str, number: float) -> str:
    """The bucket of a number for a numeric attribute (tempo in bpm, density in notes/s, ...)."""
    edges, names = _NUMERIC_EDGES[name]
    return names[int(np.searchsorted(edges, float(number), side="right"))]


# ------------------------------------------------------------------------------------ user input

_SPELLINGS = {
    "c": 0, "b#": 0, "c#": 1, "db": 1, "d": 2, "d#": 3, "eb": 3, "e": 4, "fb": 4, "e#": 5, "f": 5,
    "f#": 6, "gb": 6, "g": 7, "g#": 8, "ab": 8, "a": 9, "a#": 10, "bb": 10, "b": 11, "cb": 11,
}  # fmt: skip
_MODE_WORDS = {"major": "major", "maj": "major", "ionian": "major", "minor": "minor", "min": "minor",
               "aeolian": "minor", "m": "minor", "": "major"}  # fmt: skip


def _parse_key(text: str) -> str | None:
    """'D minor', 'dm', 'Bb', 'b-flat major', 'F# min', 'E-' (music21's flat) → 'd minor', ... or None."""
    raw = text.strip().replace("♭", "b").replace("♯", "#")
    compact = raw.replace("-flat", "b").replace(" flat", "b").replace("-sharp", "#").replace(" sharp", "#")
    compact = compact.replace("-", "b").replace("_", " ")
    letter = compact[:1].lower()
    rest = compact[1:]
    accidental = ""
    if rest[:1] in ("#", "b"):  # "Bb minor", "bbm": b-flat; "B minor", "bm": b natural
        accidental, rest = rest[:1], rest[1:]
    word = rest.strip().lower()
    tonic = _SPELLINGS.get(letter + accidental)
    mode = _MODE_WORDS.get(word)
    if tonic is None or mode is None:
        return None
    return f"{PITCH_CLASSES[tonic]} {mode}"


def _instrument_family(value: str | float) -> str | None:
    if isinstance(value, int | float) or str(value).strip().isdigit():
        program = int(float(value))
        return GM_FAMILIES[program // 8] if 0 <= program < 128 else None
    text = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    aliases = {"drum": "drums", "percussion": "drums", "synth": "synth_lead", "pad": "synth_pad",
               "effects": "synth_effects", "sfx": "sound_effects", "woodwind": "pipe", "winds": "pipe",
               "string": "strings", "orchestra": "strings", "choir": "ensemble", "voice": "ensemble"}  # fmt: skip
    text = aliases.get(text, text)
    return text if text in SYMBOLIC_ATTRIBUTES["instruments"] else None


def parse_attribute(name: str, value: str | float) -> str:
    """User input → the attribute's bucket value, e.g. ("key", "D minor") → "d minor", ("key", "dm") →
    "d minor", ("tempo", 90) → "moderate", ("density", "High") → "high", ("instruments", 41) →
    "strings". An unknown name or value is a `UserError` that lists what is accepted."""
    if name not in ALL_ATTRIBUTES:
        raise UserError(f"unknown attribute {name!r}; the attributes are: {', '.join(ALL_ATTRIBUTES)}")
    accepted = ALL_ATTRIBUTES[name]
    result: str | None = None
    text = str(value).strip()
    if text.lower().replace(" ", "_") in accepted:
        result = text.lower().replace(" ", "_")
    elif name == "key":
        result = _parse_key(text) if text else None
    elif name == "mode":
        result = _MODE_WORDS.get(text.lower()) if text.lower() not in ("", "m") else None
    elif name == "instruments":
        result = _instrument_family(value)
    elif name in _NUMERIC_EDGES:
        try:
            number = float(text.lower().removesuffix("bpm").removesuffix("hz").removesuffix("lufs"))
        except ValueError:
            number = math.nan
        if math.isfinite(number) and (name not in ("tempo", "density", "brightness") or number > 0):
            result = bucket(name, number)
    if result is None:
        hint = f", or a number in {_UNITS[name]}" if name in _UNITS else ""
        if name == "key":
            hint = " (also written 'D minor', 'dm', 'Bb', 'F# major')"
        raise UserError(f"unknown {name} {value!r}; accepted values: {', '.join(accepted)}{hint}")
    return result


def parse_attributes(values: Mapping[str, Any], names: Any = None) -> dict[str, str]:
    """The attributes among `values` (e.g. a `.json` sidecar's keys) parsed to bucket values; only
    `names` (default: all attributes) are read, missing or empty ones skipped."""
    wanted = ALL_ATTRIBUTES if names is None else names
    return {
        name: parse_attribute(name, values[name])
        for name in wanted
        if name in values and values[name] not in (None, "")
    }


def resolve_labels(vocab: Mapping[str, Any], labels: Mapping[str, Any]) -> dict[str, str | None]:
    """Labels and attribute values as a user gives them → the strings a checkpoint's vocabularies hold:
    the attributes it conditions on parsed to their bucket ("D minor" → "d minor", 90 → "moderate");
    everything else as given (str), so an unknown condition is named by the caller's lookup."""
    out: dict[str, str | None] = {}
    for name, value in labels.items():
        if value is None or value == "":
            out[name] = None
        elif name in ALL_ATTRIBUTES and name in vocab:
            out[name] = parse_attribute(name, value)
        else:
            out[name] = value if isinstance(value, str) else str(value)
    return out


def attribute_kwargs(args: Any) -> dict[str, Any]:
    """The attribute flags of `cinematic generate music` (--key, --tempo, ...) that were given."""
    return {name: getattr(args, name) for name in ALL_ATTRIBUTES if getattr(args, name, None) is not None}


# ------------------------------------------------------------------------------------- symbolic


def _key_profiles() -> np.ndarray:
    """(24, 12) mean-centred key profiles, row i = KEYS[i] (major tonics, then minor)."""
    from music21.analysis.discrete import KrumhanslSchmuckler

    analysis = KrumhanslSchmuckler()
    rows = []
    for mode in MODES:
        weights = np.asarray(analysis.getWeights(mode), dtype=np.float64)
        for tonic in range(12):
            rows.append(np.roll(weights, tonic))
    profiles = np.stack(rows)
    return profiles - profiles.mean(axis=1, keepdims=True)


_PROFILES: np.ndarray | None = None


def estimate_key(histogram: np.ndarray) -> str | None:
    """Krumhansl–Schmuckler: the key whose profile correlates best with a 12-bin pitch-class histogram
    (None when the histogram is flat or empty)."""
    global _PROFILES
    if _PROFILES is None:
        _PROFILES = _key_profiles()
    h = np.asarray(histogram, dtype=np.float64)
    h = h - h.mean()
    if not np.any(np.abs(h) > 1e-12):
        return None
    corr = _PROFILES @ h / (np.linalg.norm(_PROFILES, axis=1) * np.linalg.norm(h))
    return KEYS[int(np.argmax(corr))]


def _score_notes(score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Notes of every track in seconds: (N, 4) rows (onset, offset, pitch, velocity) and each note's
    family ("drums" for drum tracks)."""
    sec = score.to("second")
    rows, families = [], []
    for track in sec.tracks:
        if track.note_num() == 0:
            continue
        arr = track.notes.numpy()
        onset = arr["time"].astype(np.float64)
        notes = np.stack(
            [onset, onset + arr["duration"].astype(np.float64), arr["pitch"], arr["velocity"]], axis=1
        )
        rows.append(notes)
        family = "drums" if track.is_drum else GM_FAMILIES[int(track.program) // 8 % 16]
        families.extend([family] * len(notes))
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, dtype=object)
    return np.concatenate(rows).astype(np.float64), np.asarray(families, dtype=object)


def _onset_tempo(onsets: np.ndarray, velocities: np.ndarray) -> float | None:
    """bpm from librosa's tempo estimator on a velocity-weighted onset envelope at 100 frames/s."""
    if len(onsets) < 4:
        return None
    rate = 100
    frames = np.round((onsets - onsets.min()) * rate).astype(np.int64)
    envelope = np.zeros(frames.max() + 2, dtype=np.float64)
    np.add.at(envelope, frames, velocities / 127.0)
    if len(envelope) < 2 * rate:
        return None
    import librosa

    # small autocorrelation window for short pieces (the default 8 s needs longer envelopes)
    ac_size = min(8.0, len(envelope) / rate)
    tempo = librosa.feature.tempo(onset_envelope=envelope, sr=rate, hop_length=1, ac_size=ac_size)
    value = float(np.asarray(tempo).ravel()[0])
    return value if value > 0 else None


def measure_notes_raw(
    notes: np.ndarray, families: np.ndarray | None = None, with_tempo: bool = True
) -> dict[str, Any]:
    """Raw measurements of notes (N, 4) = (onset_s, offset_s, pitch, velocity): tonic (pitch class of
    the key), mode, bpm (unless `with_tempo` is False), notes_per_second, mean_pitch, polyphony, instruments.
    Quantities that cannot be measured (no pitched notes, too few onsets) are left out."""
    raw: dict[str, Any] = {}
    if families is not None and len(families):
        names, counts = np.unique(families[families != "drums"], return_counts=True)
        raw["instruments"] = str(names[np.argmax(counts)]) if len(names) else "drums"
        pitched = notes[families != "drums"]
    else:
        pitched = notes
    if with_tempo and len(notes):
        tempo = _onset_tempo(np.unique(np.round(notes[:, 0], 2)), _onset_strength(notes))
        if tempo is not None:
            raw["bpm"] = tempo
    if not len(pitched):
        return raw
    durations = np.maximum(pitched[:, 1] - pitched[:, 0], 1e-3)
    pcs = pitched[:, 2].astype(np.int64) % 12
    histogram = np.bincount(pcs, weights=durations, minlength=12)
    key = estimate_key(histogram)
    if key is not None:
        tonic, mode = key.split(" ")
        raw["tonic"] = PITCH_CLASSES.index(tonic)
        raw["mode"] = mode
    span = float(pitched[:, 1].max() - pitched[:, 0].min())
    if span > 0:
        raw["notes_per_second"] = len(pitched) / span
        raw["polyphony"] = float(durations.sum() / _sounding_time(pitched))
    raw["mean_pitch"] = float(np.average(pitched[:, 2], weights=durations))
    return raw


def _onset_strength(notes: np.ndarray) -> np.ndarray:
    """Summed velocity per distinct onset (10 ms), matching `np.unique(np.round(onsets, 2))`."""
    onsets = np.round(notes[:, 0], 2)
    _, inverse = np.unique(onsets, return_inverse=True)
    return np.bincount(inverse, weights=notes[:, 3])


def _sounding_time(notes: np.ndarray) -> float:
    """Seconds during which at least one note sounds (union of the note intervals)."""
    order = np.argsort(notes[:, 0])
    total, end = 0.0, -math.inf
    for onset, offset in notes[order, :2]:
        if onset > end:
            total += offset - onset
            end = offset
        elif offset > end:
            total += offset - end
            end = offset
    return max(total, 1e-6)


WINDOWED = ("tonic", "mode", "notes_per_second", "mean_pitch", "polyphony")
"""Raw measurements that a training crop takes from its own stretch of music (`window_raw`); tempo and
instrumentation stay the whole piece's (a few seconds say little about either)."""


def window_raw(piece_raw: Mapping[str, Any], window_score: Any) -> dict[str, Any]:
    """A piece's raw measurements with key, mode, density, register and polyphony measured on one
    stretch of it (a symusic Score, e.g. the tokens a training crop starts with decoded), so that a
    crop's key is the key of what follows its start, not of the whole piece (chorales modulate). What
    the piece's `.json` gave (`piece_raw["given"]`) still wins; a stretch without notes keeps the
    piece's values."""
    notes, families = _score_notes(window_score)
    measured = measure_notes_raw(notes, families, with_tempo=False)
    given = set(piece_raw.get("given", ()))
    local = {k: v for k, v in measured.items() if k in WINDOWED and k not in given}
    if ("tonic" in local) != ("mode" in local):  # key and mode come as a pair
        local.pop("tonic", None), local.pop("mode", None)
    return {**piece_raw, **local}


def attributes_from_raw(raw: Mapping[str, Any]) -> dict[str, str]:
    """Raw measurements (from `measure_notes_raw`, `measure_audio_raw` or `augment_raw`) → bucket values."""
    out: dict[str, str] = {}
    if "tonic" in raw and "mode" in raw:
        out["key"] = f"{PITCH_CLASSES[int(raw['tonic']) % 12]} {raw['mode']}"
        out["mode"] = str(raw["mode"])
    if "bpm" in raw:
        out["tempo"] = bucket("tempo", raw["bpm"])
    if "notes_per_second" in raw:
        out["density"] = bucket("density", raw["notes_per_second"])
    if "mean_pitch" in raw:
        out["register"] = bucket("register", raw["mean_pitch"])
    if "polyphony" in raw:
        out["polyphony"] = bucket("polyphony", raw["polyphony"])
    if "instruments" in raw:
        out["instruments"] = str(raw["instruments"])
    if "lufs" in raw:
        out["loudness"] = bucket("loudness", raw["lufs"])
    if "centroid_hz" in raw:
        out["brightness"] = bucket("brightness", raw["centroid_hz"])
    return out


def augment_raw(raw: Mapping[str, Any], semitones: int = 0, stretch: float = 1.0) -> dict[str, Any]:
    """The raw measurements of the piece transposed by `semitones` and time-stretched by `stretch`
    (> 1: slower): the tonic and the mean pitch move, tempo and density scale by 1/stretch."""
    out = dict(raw)
    if "tonic" in out:
        out["tonic"] = (int(out["tonic"]) + semitones) % 12
    if "mean_pitch" in out:
        out["mean_pitch"] = float(out["mean_pitch"]) + semitones
    for name in ("bpm", "notes_per_second"):
        if name in out:
            out[name] = float(out[name]) / stretch
    return out


def _as_score(path_or_score: Any) -> Any:
    if isinstance(path_or_score, str | Path):
        from cinematic.data.tokenizers.midi import load_score

        return load_score(path_or_score)
    return path_or_score


def measure_score_raw(path_or_score: Any) -> dict[str, Any]:
    """Raw measurements of a MIDI file or symusic Score (see `measure_notes_raw`)."""
    notes, families = _score_notes(_as_score(path_or_score))
    return measure_notes_raw(notes, families)


def measure_score(path_or_score: Any) -> dict[str, str]:
    """Attributes of a MIDI file (path) or a symusic Score, e.g. {"key": "d minor", "mode": "minor",
    "tempo": "moderate", "density": "high", "register": "medium", "polyphony": "high",
    "instruments": "piano"}; an attribute that cannot be measured (no notes) is left out."""
    return attributes_from_raw(measure_score_raw(path_or_score))


# ---------------------------------------------------------------------------------------- audio


def _loudness(wav: np.ndarray, sample_rate: int) -> float | None:
    if not np.any(wav):
        return None
    if len(wav) >= int(0.4 * sample_rate) + 1:
        import pyloudnorm

        value = float(pyloudnorm.Meter(sample_rate).integrated_loudness(wav.astype(np.float64)))
        if math.isfinite(value):
            return value
    return float(20 * np.log10(np.sqrt(np.mean(wav.astype(np.float64) ** 2)) + 1e-12))


def measure_audio_raw(wav: np.ndarray, sample_rate: int) -> dict[str, float]:
    """Raw measurements of a waveform (mono (N,) or channels-first (C, N)): bpm, lufs, centroid_hz."""
    import librosa

    y = np.asarray(wav, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    if y.ndim != 1:
        raise UserError(f"measure_audio: expected a mono (N,) or (channels, N) waveform, got {y.shape}")
    raw: dict[str, float] = {}
    if len(y) < 2048 or not np.any(y):
        return raw
    loud = _loudness(y, sample_rate)
    if loud is not None:
        raw["lufs"] = loud
    spectrum = np.abs(librosa.stft(y))
    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=sample_rate)[0]
    energy = spectrum.sum(axis=0)  # frames weighted by their energy: silence has no brightness
    raw["centroid_hz"] = float(np.sum(centroid * energy) / max(float(energy.sum()), 1e-12))
    if len(y) >= 2 * sample_rate:
        envelope = librosa.onset.onset_strength(y=y, sr=sample_rate)
        ac_size = min(8.0, len(y) / sample_rate)
        tempo = float(
            np.asarray(
                librosa.feature.tempo(onset_envelope=envelope, sr=sample_rate, ac_size=ac_size)
            ).ravel()[0]
        )
        if tempo > 0:
            raw["bpm"] = tempo
    return raw


def measure_audio(wav: np.ndarray, sample_rate: int) -> dict[str, str]:
    """Attributes of a waveform: {"tempo": ..., "loudness": ..., "brightness": ...}; silent or very
    short clips (< 2048 samples; tempo needs ≥ 2 s) leave attributes out."""
    return attributes_from_raw(measure_audio_raw(wav, sample_rate))


# ------------------------------------------------------------------------- preprocessing helpers

MEASURE_VERSION = 1
"""Part of the cache key: bump it when a measurement changes."""


def measure_file_cached(
    path: str | Path, cache_dir: str | Path | None, kind: str = "symbolic", sample_rate: int = 22050
) -> dict[str, Any]:
    """Raw measurements of one file (`measure_score_raw` for MIDI, `measure_audio_raw` for audio),
    computed once and kept in `<cache_dir>/music_attributes/<sha1>-<kind>-v<N>.json`. An unreadable
    file raises the loader's `UnreadableFile`."""
    import json

    from cinematic.utils import atomic_write_bytes, file_sha1

    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / "music_attributes" / f"{file_sha1(path)}-{kind}-v{MEASURE_VERSION}.json"
        if cache.is_file():
            try:
                return dict(json.loads(cache.read_text()))
            except (ValueError, OSError):  # a damaged cache entry is measured again
                pass
    if kind == "symbolic":
        raw = measure_score_raw(path)
    else:
        from cinematic.data.audio import load_audio

        wav, sr = load_audio(path, sample_rate)
        raw = measure_audio_raw(wav, sr)
    if cache is not None:
        atomic_write_bytes(cache, json.dumps(raw).encode("utf-8"))
    return raw


def sidecar_attributes(
    labels: Mapping[str, Any], names: Any
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The attribute values a file's `.json` gives, which win over measured ones: (raw overrides that
    still follow transposition/stretch — key and a numeric tempo —, fixed bucket values, problems).
    A value that is not an accepted one (e.g. "key": "E phrygian", a list of instrument names) is
    reported in `problems` and left to the measurement."""
    raw: dict[str, Any] = {}
    fixed: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        value = labels.get(name)
        if value in (None, "") or isinstance(value, list | dict | bool):
            if isinstance(value, list | dict | bool):
                problems.append(f"{name}={value!r}")
            continue
        try:
            parsed = parse_attribute(name, value)
        except UserError:
            problems.append(f"{name}={value!r}")
            continue
        if name == "key":
            tonic, mode = parsed.split(" ")
            raw["tonic"], raw["mode"] = PITCH_CLASSES.index(tonic), mode
        elif name == "tempo" and isinstance(value, int | float):
            raw["bpm"] = float(value)
        else:
            fixed[name] = parsed
    return raw, fixed, problems


def with_sidecar(
    raw: Mapping[str, Any], labels: Mapping[str, Any], names: Any
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A file's raw measurements with what its `.json` gives (`sidecar_attributes`): (raw with the
    overrides and their names in `"given"`, so a crop's own window leaves them be, fixed values, problems)."""
    overrides, fixed, problems = sidecar_attributes(labels, names)
    merged = {**raw, **overrides}
    if overrides:
        merged["given"] = sorted(overrides)
    return merged, fixed, problems


def piece_attributes(
    raw: Mapping[str, Any], fixed: Mapping[str, str], semitones: int = 0, stretch: float = 1.0
) -> dict[str, str]:
    """Bucket values of a (possibly transposed / stretched) piece: measured raw values with the
    sidecar's overrides, then the sidecar's fixed values on top."""
    values = attributes_from_raw(augment_raw(raw, semitones, stretch))
    values.update(fixed)
    return values
