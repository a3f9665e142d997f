"""`cinematic data demo OUT_DIR`: a small, valid data set in the seed layout (DESIGN §3).

    OUT_DIR/music/NN_<emotion>_<genre>.mid|.wav|.json   12 pieces, 8–16 s, labels the notes follow
    OUT_DIR/voice/<speaker>/<utt>.wav|.txt, speaker.json 4 speakers × 12 utterances (espeak-ng), en/es/de
    OUT_DIR/lyrics/<language>/<song>.txt|.json           38 songs in en/es/fr/de (more en than de)
    OUT_DIR/singing/<singer>/<song>.wav|.json, singer.json  4 singers × 10 songs (espeak-ng + PSOLA), en/es

Enough for every model to train a few steps, and for tests. Labels are honest: a "sad" piece is slow,
soft, low and minor; a "triumphant" one fast, loud and major (see docs/demo.md for the whole mapping).

Deterministic: everything random comes from `numpy.random.default_rng([seed, ...])`, and no file holds
a path, time stamp or host name, so the same seed gives byte-identical files in any folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import symusic
from tqdm import tqdm

from cinematic.data.audio import save_audio
from cinematic.data.demo_singing import SINGERS, singer_metadata, singing_jobs, write_demo_song
from cinematic.data.demo_text import CONJUNCTION, LYRICS, SCENES, SENTENCES
from cinematic.data.synth import render_score
from cinematic.errors import UserError
from cinematic.utils import atomic_write_bytes

log = logging.getLogger(__name__)

MARKER = ".cinematic-demo"
MUSIC_SAMPLE_RATE = 44100
VOICE_SAMPLE_RATE = 22050  # espeak-ng's native rate
TPQ = 480  # MIDI ticks per quarter note
LABEL_KEYS = ("emotion", "genre", "scene")
MUSIC_LABEL_KEYS = (*LABEL_KEYS, "tempo", "key", "instruments")

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
GM_NAMES = {
    0: "acoustic grand piano", 4: "electric piano", 8: "celesta", 38: "synth bass", 40: "violin",
    41: "viola", 42: "cello", 43: "contrabass", 44: "tremolo strings", 46: "harp", 47: "timpani",
    48: "string ensemble", 49: "slow strings", 52: "choir aahs", 56: "trumpet", 60: "french horn",
    61: "brass section", 73: "flute", 89: "warm pad", 90: "polysynth pad", 91: "choir pad",
}  # fmt: skip

# ---------------------------------------------------------------------------------------------------
# Music: how each emotion sounds
# ---------------------------------------------------------------------------------------------------

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),  # major pentatonic: no semitones, nothing clashes
    "diminished": (0, 1, 3, 4, 6, 7, 9, 10),  # octatonic (half-whole): the tense, unresolved scale
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
# Chords as semitone offsets from the tonic (roman numerals: upper case major, lower case minor).
I_MAJ, IV_MAJ, V_MAJ, VI_MINOR, FLAT_VII = (0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (10, 14, 17)
I_MIN, IV_MIN, FLAT_VI, FLAT_II = (0, 3, 7), (5, 8, 12), (8, 12, 15), (1, 5, 8)
DIM7 = ((0, 3, 6, 9), (1, 4, 7, 10))  # the two diminished sevenths inside the octatonic scale
KEY_MODE_LABEL = {"pentatonic": "major", "diminished": "diminished"}


@dataclass(frozen=True)
class Arrangement:
    """Instruments of one piece. accompaniment None: melody and accompaniment share one track."""

    genre: str
    melody: int
    accompaniment: int | None
    bass: int | None = None
    drums: bool = False
    pedal: bool = False


@dataclass(frozen=True)
class Style:
    """Musical features of one emotion: the mapping docs/demo.md documents."""

    emotion: str
    scale: str
    tonics: tuple[int, ...]
    tempo: tuple[int, int]
    velocity: tuple[int, int]
    progressions: tuple[tuple[tuple[int, ...], ...], ...]
    rhythms: tuple[tuple[float, ...], ...]
    """Melody rhythm cells in beats, each filling a 4/4 bar."""
    register: int
    """Centre MIDI pitch of the melody."""
    contour: float
    """Mean melodic step in scale degrees: negative sinks (sad), positive rises (triumphant)."""
    accompaniment: str
    """arpeggio | block | ostinato | tremolo | pad."""
    arrangements: tuple[Arrangement, Arrangement]
    crescendo: int = 0
    """Velocity added from the first bar to the last."""


STYLES = (
    Style(
        emotion="sad", scale="minor", tonics=(9, 2, 4), tempo=(62, 72), velocity=(38, 62),
        progressions=((I_MIN, FLAT_VI, IV_MIN, V_MAJ), (I_MIN, IV_MIN, FLAT_VI, V_MAJ)),
        rhythms=((2, 2), (1, 1, 2), (3, 1), (1.5, 0.5, 2)), register=64, contour=-0.25,
        accompaniment="arpeggio",
        arrangements=(
            Arrangement("piano", melody=0, accompaniment=None, pedal=True),
            Arrangement("orchestral", melody=40, accompaniment=0, bass=42, pedal=True),
        ),
    ),
    Style(
        emotion="peaceful", scale="pentatonic", tonics=(0, 7, 5), tempo=(68, 84), velocity=(34, 58),
        progressions=((I_MAJ, IV_MAJ, I_MAJ, V_MAJ), (I_MAJ, VI_MINOR, IV_MAJ, I_MAJ)),
        rhythms=((2, 2), (1, 1, 2), (2, 1, 1), (4,)), register=72, contour=0.0,
        accompaniment="arpeggio",
        arrangements=(
            Arrangement("ambient", melody=73, accompaniment=89),
            Arrangement("new age", melody=0, accompaniment=None, pedal=True),
        ),
    ),
    Style(
        emotion="triumphant", scale="major", tonics=(2, 10, 0), tempo=(116, 136), velocity=(88, 118),
        progressions=((I_MAJ, IV_MAJ, V_MAJ, I_MAJ), (I_MAJ, V_MAJ, VI_MINOR, IV_MAJ)),
        rhythms=((1.5, 0.5, 1, 1), (1, 1, 2), (0.75, 0.25, 1, 2), (1, 0.5, 0.5, 2)), register=72, contour=0.3,
        accompaniment="block", crescendo=12,
        arrangements=(
            Arrangement("orchestral", melody=61, accompaniment=48, bass=43),
            Arrangement("march", melody=56, accompaniment=48, bass=42, drums=True),
        ),
    ),
    Style(
        emotion="epic", scale="major", tonics=(2, 7, 9), tempo=(100, 120), velocity=(90, 120),
        progressions=((I_MAJ, FLAT_VII, IV_MAJ, I_MAJ), (I_MAJ, V_MAJ, FLAT_VII, IV_MAJ)),
        rhythms=((2, 2), (1, 1, 2), (3, 1)), register=69, contour=0.2,
        accompaniment="ostinato", crescendo=10,
        arrangements=(
            Arrangement("trailer", melody=52, accompaniment=48, bass=43, drums=True),
            Arrangement("orchestral", melody=60, accompaniment=49, drums=True),
        ),
    ),
    Style(
        emotion="tense", scale="diminished", tonics=(0, 4, 11), tempo=(92, 112), velocity=(58, 92),
        progressions=((DIM7[0], DIM7[1]), (DIM7[0], DIM7[0], DIM7[1], DIM7[1])),
        rhythms=((1, 1, 1, 1), (0.5, 0.5, 1, 2), (1, 0.5, 0.5, 1, 1)), register=62, contour=0.0,
        accompaniment="tremolo",
        arrangements=(
            Arrangement("thriller", melody=41, accompaniment=44, bass=42),
            Arrangement("electronic", melody=0, accompaniment=90, bass=38),
        ),
    ),
    Style(
        emotion="mysterious", scale="phrygian", tonics=(4, 9, 11), tempo=(70, 86), velocity=(44, 74),
        progressions=((I_MIN, FLAT_II, I_MIN, IV_MIN),),
        rhythms=((2, 2), (1, 1, 2), (3, 1)), register=76, contour=0.0,
        accompaniment="pad",
        arrangements=(
            Arrangement("ambient", melody=8, accompaniment=91),
            Arrangement("electronic", melody=4, accompaniment=89, pedal=True),
        ),
    ),
)  # fmt: skip


def key_label(tonic: int, scale: str) -> str:
    """'A minor', 'D major', 'E phrygian', 'C diminished' (pentatonic pieces sit in a major key)."""
    return f"{NOTE_NAMES[tonic]} {KEY_MODE_LABEL.get(scale, scale)}"


def _key_signature(tonic: int, scale: str) -> tuple[int, int]:
    """(sharps, tonality) of the MIDI key signature: the parent major key's sharps (−: flats)."""
    parent = {"minor": 3, "diminished": 3, "phrygian": 8}.get(scale, 0)
    sharps = ((tonic + parent) % 12 * 7) % 12
    sharps = sharps - 12 if sharps > 6 else sharps
    return sharps, 0 if scale in ("major", "pentatonic") else 1


@dataclass
class Piece:
    stem: str
    score: symusic.Score
    labels: dict


def _scale_pitches(tonic: int, scale: str, low: int, high: int) -> np.ndarray:
    steps = SCALES[scale]
    return np.array([p for p in range(low, high + 1) if (p - tonic) % 12 in steps])


def _melody(rng: np.random.Generator, style: Style, tonic: int, chords: list[tuple[int, ...]], velocity: int):
    """(start beat, beats, pitch, velocity) of a melody: chord tones on each bar's first beat, steps
    through the scale in between, drifting by the style's contour; the last bar holds the tonic."""
    pitches = _scale_pitches(tonic, style.scale, style.register - 12, style.register + 12)
    index = int(np.argmin(np.abs(pitches - style.register)))
    notes = []
    bars = len(chords)
    for bar, chord in enumerate(chords):
        bar_velocity = velocity + style.crescendo * bar // max(bars - 1, 1)
        if bar == bars - 1:  # cadence: the tonic nearest the current pitch, held for the bar
            tonics = np.flatnonzero((pitches - tonic) % 12 == 0)
            index = int(tonics[np.argmin(np.abs(tonics - index))])
            notes.append((bar * 4.0, 4.0, int(pitches[index]), bar_velocity))
            break
        beat = 0.0
        for position, length in enumerate(style.rhythms[rng.integers(len(style.rhythms))]):
            if position == 0:
                tones = [i for i, p in enumerate(pitches) if (p - tonic) % 12 in {c % 12 for c in chord}]
                if tones:
                    index = min(tones, key=lambda i: (abs(i - index), i))
            else:
                step = rng.choice([-2, -1, -1, 1, 1, 2]) + rng.normal(style.contour, 0.3)
                index = int(np.clip(round(index + step), 0, len(pitches) - 1))
            accent = 10 if position == 0 else 0
            jitter = int(rng.integers(-6, 7))
            notes.append(
                (bar * 4.0 + beat, length * 0.95, int(pitches[index]), bar_velocity + accent + jitter)
            )
            beat += length
    return notes


def _voicing(tonic: int, chord: tuple[int, ...], base: int) -> list[int]:
    """Chord offsets placed in the octave starting at `base` (a MIDI pitch), root first."""
    root = base + (tonic - base) % 12
    return [root + offset for offset in chord]


def _accompaniment(rng: np.random.Generator, style: Style, tonic: int, chords, velocity: int):
    notes = []
    soft = velocity - 14
    bars = len(chords)
    for bar, chord in enumerate(chords):
        start = bar * 4.0
        bar_velocity = soft + style.crescendo * bar // max(bars - 1, 1)
        last = bar == bars - 1
        if style.accompaniment == "pad" or last:
            for pitch in _voicing(tonic, chord, 52):
                notes.append((start, 4.0, pitch, bar_velocity - 4))
        elif style.accompaniment == "arpeggio":  # broken chord in eighths, up and back down
            tones = _voicing(tonic, chord, 45)
            tones = [*tones, tones[0] + 12, tones[1] + 12]
            for step, i in enumerate((0, 1, 2, 3, 4, 3, 2, 1)):
                notes.append((start + step * 0.5, 0.5, tones[i], bar_velocity + (6 if step == 0 else 0)))
        elif style.accompaniment == "block":  # chords on every beat, accents on 1 and 3
            for beat in range(4):
                for pitch in _voicing(tonic, chord, 55):
                    notes.append((start + beat, 0.9, pitch, bar_velocity + (8 if beat % 2 == 0 else 0)))
        elif style.accompaniment == "ostinato":  # driving low eighths: root root fifth root …
            root = _voicing(tonic, chord, 40)[0]
            for step, interval in enumerate((0, 0, 7, 0, 12, 0, 7, 0)):
                notes.append(
                    (start + step * 0.5, 0.4, root + interval, bar_velocity + (10 if step % 4 == 0 else 0))
                )
        elif style.accompaniment == "tremolo":  # nervous sixteenths between two chord tones
            tones = _voicing(tonic, chord, 48)
            for step in range(16):
                pitch = tones[step % 2] if step < 8 else tones[2 + step % 2]
                notes.append((start + step * 0.25, 0.2, pitch, bar_velocity + int(rng.integers(-4, 5))))
    return notes


def _bass(tonic: int, chords, velocity: int):
    """Chord roots in half notes, two octaves down."""
    notes = []
    for bar, chord in enumerate(chords):
        root = _voicing(tonic, chord, 33)[0]
        for half in (0, 2):
            notes.append((bar * 4.0 + half, 1.9, root, velocity - 6))
    return notes


def _drums(style: Style, bars: int, velocity: int):
    """GM drum keys: epic = kick and toms with a crash per phrase; march = kick on 1/3, snare eighths."""
    notes = []
    for bar in range(bars):
        start = bar * 4.0
        if bar % 4 == 0:
            notes.append((start, 1.0, 49, velocity))  # crash
        if style.emotion == "epic":
            for beat, key in ((0, 36), (1.5, 36), (2, 45), (2.5, 47), (3, 48), (3.5, 50)):
                notes.append((start + beat, 0.25, key, velocity - (0 if key == 36 else 10)))
        else:
            for beat in (0, 2):
                notes.append((start + beat, 0.25, 36, velocity))
            for step in range(8):
                notes.append((start + step * 0.5, 0.125, 38, velocity - (0 if step % 2 == 0 else 22)))
    return notes


def _track(name: str, program: int, notes, beat_ticks: int = TPQ, is_drum: bool = False) -> symusic.Track:
    track = symusic.Track(name=name, program=program, is_drum=is_drum)
    for start, length, pitch, velocity in sorted(notes):
        track.notes.append(
            symusic.Note(
                int(round(start * beat_ticks)),
                max(1, int(round(length * beat_ticks))),
                int(np.clip(pitch, 0, 127)),
                int(np.clip(velocity, 1, 127)),
            )
        )
    return track


def _add_pedal(track: symusic.Track, bars: int) -> None:
    """Sustain pedal as CC64 (what symusic writes and reads back as `track.pedals`): released and
    pressed again at each bar line, the legato pedalling of a chord change."""
    bar_ticks = 4 * TPQ
    for bar in range(bars):
        track.controls.append(symusic.ControlChange(bar * bar_ticks + 30, 64, 127))
        track.controls.append(symusic.ControlChange((bar + 1) * bar_ticks - 10, 64, 0))


def compose(style: Style, variant: int, index: int, seed: int) -> Piece:
    """One labelled piece: its notes follow the style of its emotion."""
    rng = np.random.default_rng([seed, 1, index])
    arrangement = style.arrangements[variant]
    tonic = style.tonics[int(rng.integers(len(style.tonics)))]
    tempo = int(rng.integers(style.tempo[0], style.tempo[1] + 1))
    bar_seconds = 240.0 / tempo
    bars = max(2, round(rng.uniform(9.5, 14.0) / bar_seconds))
    bars = int(np.clip(bars, int(np.ceil(8.0 / bar_seconds)), int(16.0 // bar_seconds)))
    progression = style.progressions[int(rng.integers(len(style.progressions)))]
    chords = [progression[bar % len(progression)] for bar in range(bars - 1)] + [progression[0]]
    velocity = int(rng.integers(style.velocity[0], style.velocity[1] + 1))

    melody = _melody(rng, style, tonic, chords, velocity)
    accompaniment = _accompaniment(rng, style, tonic, chords, velocity)
    tracks = []
    if arrangement.accompaniment is None:  # one instrument plays both parts
        tracks.append(_track(GM_NAMES[arrangement.melody], arrangement.melody, melody + accompaniment))
    else:
        tracks.append(_track("melody", arrangement.melody, melody))
        tracks.append(_track("accompaniment", arrangement.accompaniment, accompaniment))
    if arrangement.bass is not None:
        tracks.append(_track("bass", arrangement.bass, _bass(tonic, chords, velocity)))
    if arrangement.drums:
        tracks.append(_track("drums", 0, _drums(style, bars, velocity), is_drum=True))
    if arrangement.pedal:
        _add_pedal(tracks[-1] if arrangement.accompaniment is None else tracks[1], bars)

    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, float(tempo)))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.key_signatures.append(symusic.KeySignature(0, *_key_signature(tonic, style.scale)))
    score.tracks.extend(tracks)

    instruments = [GM_NAMES[t.program] if not t.is_drum else "drums" for t in tracks]
    labels = {
        "emotion": style.emotion,
        "genre": arrangement.genre,
        "scene": SCENES[style.emotion][int(rng.integers(len(SCENES[style.emotion])))],
        "tempo": tempo,
        "key": key_label(tonic, style.scale),
        "instruments": instruments,
        "duration": round(bars * bar_seconds, 2),
        "source": "cinematic data demo (synthetic, rendered by cinematic.data.synth)",
    }
    stem = f"{index:02d}_{style.emotion}_{arrangement.genre.replace(' ', '_')}"
    return Piece(stem=stem, score=score, labels=labels)


def music_pieces(seed: int) -> list[Piece]:
    """Two pieces per emotion (different key, tempo, genre and instruments)."""
    return [
        compose(style, variant, variant * len(STYLES) + number, seed)
        for variant in (0, 1)
        for number, style in enumerate(STYLES)
    ]


def _write_piece(piece: Piece, folder: Path) -> None:
    atomic_write_bytes(folder / f"{piece.stem}.mid", bytes(piece.score.dumps_midi()))
    _write_json(folder / f"{piece.stem}.json", piece.labels)
    audio = render_score(piece.score, sample_rate=MUSIC_SAMPLE_RATE, stereo=True)
    save_audio(folder / f"{piece.stem}.wav", audio, MUSIC_SAMPLE_RATE, subtype="PCM_16")


# ---------------------------------------------------------------------------------------------------
# Voice: espeak-ng speakers
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Speaker:
    name: str
    language: str
    gender: str
    voice: str
    """espeak-ng voice (+ variant) name."""
    pitch: int
    """espeak-ng pitch, 0–99."""
    speed: int
    """Words per minute."""


SPEAKERS = (
    Speaker("en_anna", "en", "female", "en-us+f3", 68, 165),
    Speaker("en_marcus", "en", "male", "en+m3", 32, 150),
    Speaker("es_lucia", "es", "female", "es+f2", 58, 158),
    Speaker("de_jonas", "de", "male", "de+m1", 42, 148),
)
UTTERANCES_PER_SPEAKER = 12


def espeak_binary() -> str:
    """Path of espeak-ng, or a UserError that says how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise UserError(
            "espeak-ng is not installed; the demo voice data is spoken by it. Install it with "
            "`sudo apt-get install espeak-ng` (Debian/Ubuntu), or run `make install` as root."
        )
    return path


def _speak(binary: str, speaker: Speaker, text: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng → int16 samples at 22.05 kHz, trimmed to the speech plus 60 ms either side."""
    with tempfile.TemporaryDirectory(prefix="cinematic-espeak-") as tmp:
        out = Path(tmp) / "utt.wav"
        cmd = [binary, "-v", speaker.voice, "-p", str(pitch), "-s", str(speed), "-w", str(out), text]
        result = subprocess.run(cmd, capture_output=True, check=False)
        if result.returncode != 0 or not out.is_file():
            stderr = result.stderr.decode(errors="replace").strip()
            raise UserError(f"espeak-ng failed for voice {speaker.voice!r}: {stderr or result.returncode}")
        audio, rate = sf.read(str(out), dtype="float32")
    if rate != VOICE_SAMPLE_RATE:
        raise UserError(f"espeak-ng wrote {rate} Hz audio, expected {VOICE_SAMPLE_RATE}; is it espeak-ng?")
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    margin = int(0.06 * rate)
    if len(loud):
        audio = audio[max(0, loud[0] - margin) : loud[-1] + margin]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * (0.7 / peak) if peak > 0 else audio  # the same level for every voice (−3 dBFS)


@dataclass
class UtteranceJob:
    speaker: Speaker
    stem: str
    text: str
    speed: int
    pitch: int


def voice_jobs(seed: int) -> list[UtteranceJob]:
    """Which sentences each speaker reads, with a little per-utterance speed and pitch variation."""
    jobs = []
    for number, speaker in enumerate(SPEAKERS):
        rng = np.random.default_rng([seed, 2, number])
        pool = SENTENCES[speaker.language]
        for i, choice in enumerate(rng.permutation(len(pool))[:UTTERANCES_PER_SPEAKER]):
            jobs.append(
                UtteranceJob(
                    speaker=speaker,
                    stem=f"{speaker.name}_{i + 1:03d}",
                    text=pool[int(choice)],
                    speed=int(round(speaker.speed * rng.uniform(0.94, 1.06))),
                    pitch=int(np.clip(speaker.pitch + rng.integers(-3, 4), 0, 99)),
                )
            )
    return jobs


def _write_utterance(binary: str, job: UtteranceJob, folder: Path) -> None:
    audio = _speak(binary, job.speaker, job.text, job.speed, job.pitch)
    save_audio(folder / f"{job.stem}.wav", audio, VOICE_SAMPLE_RATE, subtype="PCM_16")
    atomic_write_bytes(folder / f"{job.stem}.txt", (job.text + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------------------
# Lyrics
# ---------------------------------------------------------------------------------------------------

SONGS_PER_LANGUAGE = {"en": 13, "es": 10, "fr": 8, "de": 7}  # imbalanced on purpose: balancing has work
LYRIC_GENRES = ("ballad", "pop", "folk", "rock", "soundtrack")


def _capital(line: str) -> str:
    return line[:1].upper() + line[1:]


def _lyric_line(rng: np.random.Generator, language: str, emotion: str) -> str:
    subjects, verbs, firsts, _ = LYRICS[language][emotion]
    kind = rng.integers(3)
    subject, verb = subjects[rng.integers(len(subjects))], verbs[rng.integers(len(verbs))]
    if kind == 0:
        return _capital(f"{subject} {verb}")
    if kind == 1:
        return _capital(f"{CONJUNCTION[language]} {subject} {verb}")
    return _capital(firsts[rng.integers(len(firsts))])


def write_song(rng: np.random.Generator, language: str, emotion: str) -> tuple[str, str]:
    """(text, hook): verses of four template lines, a chorus built on a hook, sometimes a bridge
    before the last chorus."""
    hooks = LYRICS[language][emotion][3]
    hook = hooks[rng.integers(len(hooks))]
    chorus = [hook, _lyric_line(rng, language, emotion), hook, _lyric_line(rng, language, emotion)]
    sections = [("verse", [_lyric_line(rng, language, emotion) for _ in range(4)]), ("chorus", chorus)]
    sections += [("verse", [_lyric_line(rng, language, emotion) for _ in range(4)]), ("chorus", chorus)]
    if rng.random() < 0.5:
        firsts = LYRICS[language][emotion][2]
        bridge = [_capital(firsts[i]) for i in rng.choice(len(firsts), size=2, replace=False)]
        sections += [("bridge", bridge), ("chorus", chorus)]
    text = "\n\n".join(f"[{name}]\n" + "\n".join(lines) for name, lines in sections) + "\n"
    return text, hook


def lyric_songs(seed: int) -> list[tuple[str, str, str, dict]]:
    """(language, stem, text, labels) of every demo song; each language covers every emotion."""
    songs = []
    emotions = list(LYRICS["en"])
    for number, (language, count) in enumerate(SONGS_PER_LANGUAGE.items()):
        rng = np.random.default_rng([seed, 3, number])
        order = [emotions[i] for i in rng.permutation(len(emotions))]
        for i in range(count):
            emotion = order[i % len(order)]
            text, hook = write_song(rng, language, emotion)
            labels = {
                "emotion": emotion,
                "genre": LYRIC_GENRES[rng.integers(len(LYRIC_GENRES))],
                "scene": SCENES[emotion][rng.integers(len(SCENES[emotion]))],
                "title": hook.split(",")[0],
            }
            songs.append((language, f"song_{i + 1:03d}", text, labels))
    return songs


# ---------------------------------------------------------------------------------------------------
# Writing the tree
# ---------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _prepare(out_dir: Path) -> None:
    """Refuse to mix demo files into someone's data; replace a previous demo set wholesale."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise UserError(
                f"{out_dir} is not empty and was not made by `cinematic data demo`; "
                "choose an empty or new folder so the demo files do not mix with your data"
            )
        for name in ("music", "voice", "lyrics", "singing"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def write_demo_data(out_dir: str | Path, seed: int = 0, progress: bool | None = None) -> dict:
    """Write the demo data set under `out_dir` (music/, voice/, lyrics/) and return a summary.

    `progress`: show a tqdm bar (None: only on a terminal; otherwise one log line per part).
    Raises UserError when espeak-ng is missing or `out_dir` holds other data.
    """
    out_dir = Path(out_dir)
    binary = espeak_binary()  # fail before writing anything
    started = time.monotonic()
    _prepare(out_dir)
    atomic_write_bytes(out_dir / MARKER, f"made by `cinematic data demo --seed {seed}`\n".encode())

    pieces = music_pieces(seed)
    utterances = voice_jobs(seed)
    songs = lyric_songs(seed)
    sung = singing_jobs(seed)
    for singer in SINGERS:
        (out_dir / "singing" / singer.name).mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "singing" / singer.name / "singer.json", singer_metadata(singer))
    for folder in {out_dir / "music", *(out_dir / "voice" / s.name for s in SPEAKERS)}:
        folder.mkdir(parents=True, exist_ok=True)
    for speaker in SPEAKERS:
        meta = {"language": speaker.language, "gender": speaker.gender, "espeak_voice": speaker.voice}
        _write_json(out_dir / "voice" / speaker.name / "speaker.json", meta)
    for language, stem, text, labels in songs:
        atomic_write_bytes(out_dir / "lyrics" / language / f"{stem}.txt", text.encode("utf-8"))
        _write_json(out_dir / "lyrics" / language / f"{stem}.json", labels)

    work: list[Callable[[], None]] = [
        *(lambda p=p: _write_piece(p, out_dir / "music") for p in pieces),
        *(lambda j=j: _write_utterance(binary, j, out_dir / "voice" / j.speaker.name) for j in utterances),
        *(lambda j=j: write_demo_song(binary, j, out_dir / "singing" / j.singer.name) for j in sung),
    ]
    show = sys.stderr.isatty() if progress is None else progress
    with (
        ThreadPoolExecutor(max_workers=3) as pool,
        tqdm(total=len(work), desc="demo data", unit="file", disable=not show) as bar,
    ):
        for future in [pool.submit(job) for job in work]:
            future.result()
            bar.update()
    summary = {
        "out_dir": str(out_dir),
        "music": len(pieces),
        "speakers": len(SPEAKERS),
        "utterances": len(utterances),
        "songs": {lang: sum(1 for s in songs if s[0] == lang) for lang in SONGS_PER_LANGUAGE},
        "singers": len(SINGERS),
        "sung_songs": len(sung),
        "seconds": round(time.monotonic() - started, 1),
    }
    if not show:
        log.info("demo data: %s", summary)
    return summary


def demo_command(args: argparse.Namespace) -> int:
    summary = write_demo_data(Path(args.out_dir), seed=args.seed)
    songs = sum(summary["songs"].values())
    print(
        f"wrote {summary['out_dir']}: music/ {summary['music']} MIDI pieces with WAV renderings and labels; "
        f"voice/ {summary['speakers']} speakers × {summary['utterances'] // summary['speakers']} utterances; "
        f"lyrics/ {songs} songs ({', '.join(f'{k} {v}' for k, v in summary['songs'].items())})"
        + (
            f"; singing/ {summary['singers']} singers × {summary['sung_songs'] // summary['singers']} songs"
            if summary.get("singers")
            else ""
        )
        + " "
        f"in {summary['seconds']:.1f} s"
    )
    return 0


__all__ = ["LABEL_KEYS", "MUSIC_LABEL_KEYS", "SPEAKERS", "demo_command", "write_demo_data"]
