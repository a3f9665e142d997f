"""A melody for lyrics, and an accompaniment for the melody, from the symbolic Music Transformer.

The model speaks the 388-event performance encoding (NOTE_ON/NOTE_OFF per pitch, 10 ms TIME_SHIFTs,
VELOCITY): it has no notion of syllables, bars or lines. The song pipeline therefore uses it in two steps.

1. **Decoding under constraints** (`generate_material`): the model samples freely except that every
   NOTE_ON whose pitch is outside the song's key (its diatonic scale) or outside a pitch range is masked
   to −inf before sampling, as are PAD/BOS/EOS (the piece cannot stop early). Every note it writes is
   therefore in key and in range: for the melody, the singer's range; for the accompaniment, the octaves
   below the voice. Emotion/genre/scene are its usual condition labels.
2. **Picking notes from the material under the lyric constraints** (`compose_melody`): the material's top
   voice (the highest note at each onset, the "skyline") gives a stream of pitches and inter-onset
   intervals. Each line of lyrics starts on a bar line (4/4 at the song tempo) and takes the next events:
   - one note per syllable, its length the event's inter-onset interval quantised to 1–4 eighth notes;
   - a melisma where the material ornaments: when the next onset follows within 0.6 of an eighth, the
     syllable takes that pitch too, as a slurred second note (at most one syllable in five, never the
     line's last);
   - the line ends on a phrase boundary: its last syllable lasts at least a half note, on the nearest
     tone of the tonic triad (a cadence), followed by at least an eighth of rest up to the next bar line;
   - a line whose text was sung before (a chorus sung again) reuses that line's melody note for note;
   - each pitch keeps its pitch class but takes the octave, inside the singer's range, nearest the note
     before it: leaps stay within a tritone, as a singable line mostly does (the model's top voice
     jumps between registers).
3. **Accompaniment** (`arrange_accompaniment`): more material in key, below the voice, with onsets and
   lengths quantised to sixteenth notes at the song tempo, repeated in whole bars until it covers the song.

A user's own melody (`fit_melody`) keeps its pitches and rhythm: syllables are given to its notes in order
(slurred notes continue the syllable before), so it needs at least as many notes as syllables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cinematic.data.singing import SungNote
from cinematic.data.syllables import LyricLine
from cinematic.errors import UserError

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
MINOR_EMOTIONS = frozenset({"sad", "tense", "mysterious", "dark", "melancholic", "fearful", "angry"})
TEMPO_BY_EMOTION = {
    "sad": 72,
    "peaceful": 80,
    "mysterious": 88,
    "epic": 96,
    "tense": 104,
    "triumphant": 112,
    "happy": 116,
}
DEFAULT_TEMPO = 96
SINGER_RANGE = (55, 74)
"""G3–D5: the default range of a melody when the singing model does not say its singers' ranges."""
BEATS_PER_BAR = 4
MELISMA_SHARE = 0.2
MELISMA_GAP = 0.6
"""A material onset this close (in eighths) after the previous one makes a melisma."""


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C) and mode (major or natural minor)."""

    tonic: int
    mode: str

    @classmethod
    def parse(cls, text: str) -> Key:
        """ "d minor", "D", "F# major", "Bbm" → Key, read as the music attributes read a key
        (`cinematic.data.attributes`); anything else is a `UserError` listing what is accepted."""
        from cinematic.data.attributes import PITCH_CLASSES, parse_attribute

        tonic, mode = parse_attribute("key", text).split()
        return cls(PITCH_CLASSES.index(tonic), mode)

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.tonic + step) % 12 for step in SCALES[self.mode])

    @property
    def triad(self) -> frozenset[int]:
        third = 3 if self.mode == "minor" else 4
        return frozenset({self.tonic, (self.tonic + third) % 12, (self.tonic + 7) % 12})


def default_key(emotion: str | None, seed: int) -> Key:
    """The key when none is given: minor for dark emotions, major otherwise; the tonic drawn by the seed
    from the keys that suit most voices (C D Eb F G A Bb)."""
    mode = "minor" if (emotion or "").lower() in MINOR_EMOTIONS else "major"
    tonics = (0, 2, 3, 5, 7, 9, 10)
    return Key(tonics[int(np.random.default_rng(seed).integers(len(tonics)))], mode)


def default_tempo(emotion: str | None) -> int:
    """Beats per minute when none is given, by emotion (slow for sad/peaceful, fast for triumphant)."""
    return TEMPO_BY_EMOTION.get((emotion or "").lower(), DEFAULT_TEMPO)


def estimate_key(pitches: Sequence[int], durations: Sequence[float]) -> Key:
    """The key of a melody: Krumhansl–Schmuckler on its duration-weighted pitch classes, as the music
    attributes measure a piece's key (C major for a melody without notes)."""
    from cinematic.data.attributes import estimate_key as profile_key

    histogram = np.zeros(12)
    for pitch, duration in zip(pitches, durations, strict=True):
        histogram[int(pitch) % 12] += max(float(duration), 0.0)
    found = profile_key(histogram)
    return Key.parse(found) if found else Key(0, "major")


# ------------------------------------------------------------------------------------------- material


def generate_material(
    music: Any,
    labels: Mapping[str, Any],
    key: Key,
    pitch_range: tuple[int, int],
    length: int,
    seed: int,
    temperature: float = 1.0,
    progress: bool = False,
) -> np.ndarray:
    """`length` tokens from the music model with every NOTE_ON outside `key`'s scale or `pitch_range`
    (inclusive) masked, and no PAD/BOS/EOS; `labels`: the model's conditions (`music.condition_ids`); returned as note rows (onset_s, offset_s, pitch, velocity)."""
    from cinematic.generation.music import complete_conditions, generate_tokens

    tok = music.tokenizer
    if getattr(tok, "kind", None) != "performance":
        raise UserError(
            f"the song pipeline needs a music checkpoint with the performance tokenizer (this one uses "
            f"{getattr(tok, 'kind', '?')!r}); train one with music_model.tokenizer: performance"
        )
    low, high = pitch_range
    allowed = key.pitch_classes
    banned = [tok.pad_id, tok.bos_id, tok.eos_id]
    banned += [tok.note_on_offset + p for p in range(128) if p % 12 not in allowed or not low <= p <= high]
    conditions = music.condition_ids(**labels)
    sets = getattr(music, "attribute_sets", None)
    if sets:  # attributes left out: from a training piece with the given conditions, as `generate music`
        conditions = complete_conditions(conditions, music.labels, sets, seed)
    ids = generate_tokens(
        music.model,
        conditions,
        length,
        bos_id=tok.bos_id,
        eos_id=None,
        banned=banned,
        temperature=temperature,
        seed=seed,
        progress=progress,
    )
    return tok.normalize(tok.decode(ids))


def skyline(notes: np.ndarray, window: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """The top voice of note rows: (pitches, inter-onset intervals in seconds), one per onset group
    (onsets within `window` seconds are one group; its highest pitch wins). The last interval is the
    last note's length."""
    if len(notes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.lexsort((-notes[:, 2], notes[:, 0]))
    rows = notes[order]
    starts = [0]
    for i in range(1, len(rows)):
        if rows[i, 0] - rows[starts[-1], 0] > window:
            starts.append(i)
    onsets = rows[starts, 0]
    pitches = rows[starts, 2].astype(np.int64)
    last = rows[starts[-1], 1] - rows[starts[-1], 0]
    ioi = np.append(np.diff(onsets), last)
    return pitches, ioi


# -------------------------------------------------------------------------------------------- melody


@dataclass
class SungLine:
    """One lyric line with its notes (absolute times) and where it sits on the bar grid."""

    line: LyricLine
    notes: list[SungNote]
    start_bar: int
    bars: int
    reused_from: int | None = None
    """Index of the earlier line whose melody this one repeats (a chorus sung again)."""
    syllable_onsets: list[float] = field(default_factory=list)
    """Where the singer really starts each syllable (filled in after singing)."""

    @property
    def onset(self) -> float:
        return self.notes[0].onset


def fold_pitch(pitch: int, low: int, high: int, previous: int | None = None) -> int:
    """`pitch`'s pitch class placed in [low, high] (when the range spans an octave): in the octave nearest
    `previous` (the smoothest voice leading), or the one nearest `pitch` itself for a line's first note."""
    if high - low < 11:
        return pitch
    target = pitch if previous is None else previous
    candidates = [p for p in range(low, high + 1) if p % 12 == pitch % 12]
    return min(candidates, key=lambda p: (abs(p - target), p))


def _cadence(pitch: int, key: Key, low: int, high: int) -> int:
    """The nearest tonic-triad tone to `pitch` inside the range (a line's final note)."""
    candidates = [p for p in range(low, high + 1) if p % 12 in key.triad]
    if not candidates:
        return pitch
    return min(candidates, key=lambda p: (abs(p - pitch), p))


def compose_melody(
    lines: Sequence[LyricLine],
    material: np.ndarray,
    key: Key,
    tempo: float,
    pitch_range: tuple[int, int] = SINGER_RANGE,
    start_bar: int = 1,
) -> list[SungLine]:
    """Notes for every syllable of `lines` from the model's `material` (see the module docstring)."""
    pitches, ioi = skyline(material)
    if len(pitches) == 0:
        raise UserError("the music model wrote no notes for the melody; try another --seed")
    low, high = pitch_range
    eighth = 30.0 / tempo
    bar_eighths = 2 * BEATS_PER_BAR
    cursor = 0  # next material event
    bar = start_bar
    previous: int | None = None
    patterns: dict[str, tuple[int, list[tuple[int, int, int, bool]]]] = {}
    out: list[SungLine] = []
    total_syllables = sum(len(line.syllables) for line in lines)
    melismas_left = int(MELISMA_SHARE * total_syllables)
    for index, line in enumerate(lines):
        reused = patterns.get(line.key)
        if reused is not None and len(lines[reused[0]].syllables) == len(line.syllables):
            source, pattern = reused
            previous = pattern[-1][2]  # the next new line continues from where this one ends
        else:
            source, pattern = None, []
            position = 0  # eighths from the line's first bar line
            n = len(line.syllables)
            for s in range(n):
                p = int(pitches[cursor % len(pitches)])
                gap = float(ioi[cursor % len(ioi)]) / eighth
                cursor += 1
                p = fold_pitch(p, low, high, previous)
                if s == n - 1:
                    length = int(np.clip(round(gap), 4, 8))
                    p = _cadence(p, key, low, high)
                    pattern.append((position, length, p, False))
                    position += length
                    previous = p
                    break
                length = int(np.clip(round(gap), 1, 4))
                next_gap = float(ioi[cursor % len(ioi)]) / eighth
                if melismas_left > 0 and gap < MELISMA_GAP:
                    # an ornament in the material: this syllable takes the next pitch too
                    q = fold_pitch(int(pitches[cursor % len(pitches)]), low, high, p)
                    cursor += 1
                    second = int(np.clip(round(next_gap), 1, 3))
                    pattern.append((position, 1, p, False))
                    pattern.append((position + 1, second, q, True))
                    position += 1 + second
                    melismas_left -= 1
                    previous = q
                    continue
                pattern.append((position, length, p, False))
                position += length
                previous = p
            # phrase boundary: the last note lasts at most a whole bar and at least an eighth of rest follows
            end = position + 1
            bars_needed = max(1, math.ceil(end / bar_eighths))
            last_on, _, last_p, last_slur = pattern[-1]
            room = bars_needed * bar_eighths - 1 - last_on  # >= its length (4..8), since end fits the bars
            pattern[-1] = (last_on, min(room, 8), last_p, last_slur)
            patterns.setdefault(line.key, (index, pattern))
        bars = max(1, math.ceil((pattern[-1][0] + pattern[-1][1] + 1) / bar_eighths))
        notes = _notes_from_pattern(line, pattern, bar * bar_eighths * eighth, eighth)
        out.append(SungLine(line, notes, bar, bars, reused_from=source))
        bar += bars
    return out


def _notes_from_pattern(
    line: LyricLine, pattern: list[tuple[int, int, int, bool]], start: float, eighth: float
) -> list[SungNote]:
    notes = []
    syllables = iter(line.syllables)
    for position, length, pitch, slur in pattern:
        text = "" if slur else next(syllables)
        notes.append(SungNote(text, int(pitch), start + position * eighth, length * eighth, slur=slur))
    return notes


def fit_melody(
    lines: Sequence[LyricLine],
    melody: Sequence[SungNote],
    source: str,
    pitch_range: tuple[int, int] = SINGER_RANGE,
    tempo: float = 120.0,
) -> list[SungLine]:
    """A user's melody given the syllables of `lines` in order: each non-slurred note takes the next
    syllable, a slurred note continues it. Notes after the last syllable are left out. The whole melody
    is moved by octaves so that its middle sits in the singer's range (its intervals are kept).
    Fewer notes than syllables is a `UserError` naming the melody file."""
    needed = sum(len(line.syllables) for line in lines)
    notes = sorted(melody, key=lambda n: n.onset)
    if notes and notes[0].slur:  # a slur with nothing before it starts a syllable
        notes[0] = SungNote(notes[0].syllable, notes[0].pitch, notes[0].onset, notes[0].duration)
    available = sum(1 for n in notes if not n.slur)
    if available < needed:
        raise UserError(
            f"--melody {source}: it has {available} notes for {needed} syllables of lyrics; give a melody "
            "with at least one note per syllable, or shorter lyrics (--lyrics_file)"
        )
    low, high = pitch_range
    middle = (low + high) / 2
    pitches = [n.pitch for n in notes]
    shift = 12 * round((middle - float(np.median(pitches))) / 12) if pitches else 0
    bar_seconds = BEATS_PER_BAR * 60.0 / tempo
    out: list[SungLine] = []
    cursor = 0
    for line in lines:
        line_notes: list[SungNote] = []
        for syllable in line.syllables:
            first = notes[cursor]
            cursor += 1
            line_notes.append(SungNote(syllable, first.pitch + shift, first.onset, first.duration))
            while cursor < len(notes) and notes[cursor].slur:
                extra = notes[cursor]
                line_notes.append(SungNote("", extra.pitch + shift, extra.onset, extra.duration, slur=True))
                cursor += 1
        start_bar = int(line_notes[0].onset // bar_seconds)
        end = line_notes[-1].onset + line_notes[-1].duration
        bars = max(1, math.ceil(end / bar_seconds) - start_bar)
        out.append(SungLine(line, line_notes, start_bar, bars))
    return out


def melody_notes(sung: Sequence[SungLine]) -> list[SungNote]:
    return [note for line in sung for note in line.notes]


# -------------------------------------------------------------------------------------- accompaniment


def arrange_accompaniment(
    material: np.ndarray, tempo: float, total_bars: int, start_bar: int = 0
) -> np.ndarray:
    """Note rows (onset_s, offset_s, pitch, velocity) covering bars [start_bar, total_bars): the material's
    onsets and lengths quantised to sixteenth notes at `tempo`, its whole bars repeated until the song ends."""
    sixteenth = 15.0 / tempo
    bar_steps = 4 * BEATS_PER_BAR
    if len(material) == 0 or total_bars <= start_bar:
        return np.zeros((0, 4))
    on = np.round(material[:, 0] / sixteenth).astype(np.int64)
    length = np.maximum(np.round((material[:, 1] - material[:, 0]) / sixteenth).astype(np.int64), 1)
    loop_bars = max(1, int((on.max() + 1) // bar_steps))
    loop_steps = loop_bars * bar_steps
    keep = on < loop_steps
    on, length = on[keep], np.minimum(length[keep], 2 * bar_steps)
    pitch, velocity = material[keep, 2], material[keep, 3]
    rows = []
    end_step = total_bars * bar_steps
    repeat = 0
    while start_bar * bar_steps + repeat * loop_steps < end_step:
        offset = start_bar * bar_steps + repeat * loop_steps
        starts = on + offset
        inside = starts < end_step
        ends = np.minimum(starts + length, end_step)
        rows.append(np.stack([starts, ends, pitch, velocity], axis=1)[inside])
        repeat += 1
    notes = np.concatenate(rows).astype(np.float64)
    notes[:, :2] *= sixteenth
    # one voice per pitch: a repeated pitch ends the note still sounding
    notes = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    last_end: dict[int, int] = {}
    for i, (onset, _off, p, _v) in enumerate(notes):
        j = last_end.get(int(p))
        if j is not None and notes[j, 1] > onset:
            notes[j, 1] = onset
        last_end[int(p)] = i
    return notes[notes[:, 1] > notes[:, 0]]
