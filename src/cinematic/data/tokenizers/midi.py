"""MIDI ↔ tokens for the symbolic Music Transformer.

`PerformanceTokenizer` is the performance encoding of Oore et al. (2018) used by the Music Transformer
(Huang et al. 2018, §4.2): 388 events —

    128 NOTE_ON(pitch) · 128 NOTE_OFF(pitch) · 100 TIME_SHIFT(10 ms … 1 s) · 32 VELOCITY(bin)

— plus PAD, BOS and EOS in front (ids 0, 1, 2), so `vocab_size` is 391. Conditions (emotion, genre,
scene) are not token ids of this vocabulary: the model embeds them from their own tables and prepends
them as control positions (see `cinematic.models.music_transformer`).

What a MIDI file becomes (`normalize` returns exactly the notes the encoding represents):
- every non-drum track is merged into one stream (the encoding has no instrument events); drum
  tracks are dropped, because unpitched hits would read as random pitches;
- the sustain pedal (CC 64) extends a note released while it is held until the pedal lifts, or until
  the same pitch is struck again, whichever comes first (as in the Magenta/Music Transformer data);
- a pitch struck again while still sounding ends the sounding note first (one voice per pitch);
- times are quantized to 10 ms; a note keeps at least one 10 ms step.

Decoding writes one piano track at 120 bpm with 500 ticks per quarter, so one tick is exactly 1 ms.

`RemiTokenizer` (`music_model.tokenizer: remi`) wraps miditok's REMI (beat-relative positions, tempo
tokens) over the same merged track, for users who prefer a score-like encoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cinematic.data.skips import UnreadableFile
from cinematic.errors import UserError

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
STEPS_PER_SECOND = 100
"""TIME_SHIFT resolution: 10 ms."""
MAX_SHIFT = 100
"""The longest single TIME_SHIFT is 100 steps (1 s); longer gaps are several shifts."""
NUM_VELOCITY_BINS = 32
PIANO_RANGE = (21, 108)
"""A0…C8: transpositions must not move a note that is inside it outside it."""


def load_score(path: str | Path) -> Any:
    """A symusic Score, with an `UnreadableFile` (a UserError) naming the file when it is not a
    readable MIDI file."""
    from symusic import Score

    try:
        return Score(str(path))
    except Exception as err:  # symusic raises RuntimeError/ValueError on corrupt files
        raise UnreadableFile(path, f"not a readable MIDI file ({err})") from None


def notes_to_score(notes: np.ndarray) -> Any:
    """A one-track Score from rows (onset_s, offset_s, pitch, velocity), 1 tick = 1 ms."""
    from symusic import Note, Score, Tempo, Track

    score = Score(500)  # 500 ticks per quarter at 120 bpm: 1000 ticks per second
    score.tempos.append(Tempo(0, 120.0))
    track = Track(name="piano", program=0, is_drum=False)
    for onset, offset, pitch, velocity in notes:
        start = int(round(onset * 1000))
        end = max(int(round(offset * 1000)), start + 1)
        track.notes.append(Note(start, end - start, int(pitch), int(velocity)))
    score.tracks.append(track)
    return score


class MidiTokenizer(Protocol):
    """What the music task needs from a symbolic tokenizer."""

    kind: str
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, score: Any) -> np.ndarray: ...
    def decode(self, ids: Any) -> Any: ...
    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray | None: ...
    def stretch(self, ids: np.ndarray, factor: float) -> np.ndarray: ...
    def seconds(self, ids: np.ndarray) -> float: ...
    def state(self) -> dict[str, Any]: ...


class PerformanceTokenizer:
    """The 388-event performance encoding (+ PAD/BOS/EOS). Stateless: every setting is fixed by the paper."""

    kind = "performance"
    pad_id, bos_id, eos_id = PAD, BOS, EOS
    note_on_offset = NUM_SPECIAL
    note_off_offset = note_on_offset + 128
    shift_offset = note_off_offset + 128
    velocity_offset = shift_offset + MAX_SHIFT
    vocab_size = velocity_offset + NUM_VELOCITY_BINS  # 391

    # ----------------------------------------------------------------------------------- helpers

    @staticmethod
    def velocity_bin(velocity: int) -> int:
        return min(int(velocity) * NUM_VELOCITY_BINS // 128, NUM_VELOCITY_BINS - 1)

    @staticmethod
    def bin_velocity(bin_index: int) -> int:
        """The middle of a 4-wide bin, so decoding is within one bin of the original."""
        return int(bin_index) * (128 // NUM_VELOCITY_BINS) + 2

    def describe(self, token: int) -> str:
        """A readable name for one id, e.g. NOTE_ON_60, TIME_SHIFT_250ms (for debugging and docs)."""
        token = int(token)
        if token < NUM_SPECIAL:
            return ("PAD", "BOS", "EOS")[token]
        if token < self.note_off_offset:
            return f"NOTE_ON_{token - self.note_on_offset}"
        if token < self.shift_offset:
            return f"NOTE_OFF_{token - self.note_off_offset}"
        if token < self.velocity_offset:
            return f"TIME_SHIFT_{(token - self.shift_offset + 1) * 10}ms"
        if token < self.vocab_size:
            return f"VELOCITY_{token - self.velocity_offset}"
        raise ValueError(f"token {token} outside the vocabulary of {self.vocab_size}")

    # ---------------------------------------------------------------------------------- encoding

    def normalize(self, score: Any) -> np.ndarray:
        """The notes the encoding represents, as float rows (onset_s, offset_s, pitch, velocity), sorted.

        Merges non-drum tracks, applies the sustain pedal, cuts same-pitch overlaps, drops notes of
        velocity 0 (note-offs in disguise), quantizes to 10 ms."""
        sec = score.to("second")
        rows = []
        for track in sec.tracks:
            if track.is_drum or track.note_num() == 0:
                continue
            arr = track.notes.numpy()
            onset = arr["time"].astype(np.float64)
            offset = onset + arr["duration"].astype(np.float64)
            pitch = arr["pitch"].astype(np.int64)
            velocity = arr["velocity"].astype(np.int64)
            pedals = [(float(p.time), float(p.time + p.duration)) for p in track.pedals]
            offset = self._apply_pedal(onset, offset, pedals)
            rows.append(np.stack([onset, offset, pitch, velocity], axis=1))
        if not rows:
            return np.zeros((0, 4))
        notes = np.concatenate(rows)
        notes = notes[(notes[:, 3] > 0) & (notes[:, 2] >= 0) & (notes[:, 2] < 128)]
        on = np.round(notes[:, 0] * STEPS_PER_SECOND)
        off = np.maximum(np.round(notes[:, 1] * STEPS_PER_SECOND), on + 1)
        notes = np.stack([on, off, notes[:, 2], notes[:, 3]], axis=1)
        notes = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
        notes = self._cut_overlaps(notes)
        notes[:, :2] /= STEPS_PER_SECOND
        return notes

    @staticmethod
    def _apply_pedal(onset: np.ndarray, offset: np.ndarray, pedals: list) -> np.ndarray:
        """Sustain: a note released under a held pedal lasts until the pedal lifts or its pitch is re-struck."""
        if not pedals:
            return offset
        offset = offset.copy()
        for down, up in pedals:
            held = (offset >= down) & (offset < up)
            offset[held] = up
        # the re-strike of a sustained pitch is handled by `_cut_overlaps`, which runs next
        return offset

    @staticmethod
    def _cut_overlaps(notes: np.ndarray) -> np.ndarray:
        """One voice per pitch: a note still sounding when its pitch is struck again ends there."""
        keep = np.ones(len(notes), dtype=bool)
        last: dict[int, int] = {}
        for i, (on, _off, pitch, _vel) in enumerate(notes):
            p = int(pitch)
            j = last.get(p)
            if j is not None and notes[j, 1] > on:
                if notes[j, 0] == on:  # two notes at one onset: keep the longer one
                    notes[j, 1] = max(notes[j, 1], notes[i, 1])
                    keep[i] = False
                    continue
                notes[j, 1] = on
            last[p] = i
        return notes[keep]

    def encode_notes(self, notes: np.ndarray) -> np.ndarray:
        """Rows (onset_s, offset_s, pitch, velocity) → event ids (no BOS/EOS)."""
        events = []  # (step, order, token): note-offs before note-ons at the same step
        current_bin = -1
        for on, off, pitch, velocity in notes:
            events.append((int(round(on * STEPS_PER_SECOND)), 1, int(pitch), int(velocity)))
            events.append((int(round(off * STEPS_PER_SECOND)), 0, int(pitch), 0))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        out: list[int] = []
        now = 0
        for step, is_on, pitch, velocity in events:
            out.extend(self._shifts(step - now))
            now = step
            if is_on:
                vbin = self.velocity_bin(velocity)
                if vbin != current_bin:
                    out.append(self.velocity_offset + vbin)
                    current_bin = vbin
                out.append(self.note_on_offset + pitch)
            else:
                out.append(self.note_off_offset + pitch)
        return np.asarray(out, dtype=np.int64)

    def _shifts(self, steps: int) -> list[int]:
        full, rest = divmod(max(int(steps), 0), MAX_SHIFT)
        shifts = [self.shift_offset + MAX_SHIFT - 1] * full
        if rest:
            shifts.append(self.shift_offset + rest - 1)
        return shifts

    def encode(self, score: Any) -> np.ndarray:
        """A symusic Score (or a path) → event ids, without BOS/EOS."""
        if isinstance(score, str | Path):
            score = load_score(score)
        return self.encode_notes(self.normalize(score))

    # ---------------------------------------------------------------------------------- decoding

    def decode_notes(self, ids: Any) -> np.ndarray:
        """Event ids → rows (onset_s, offset_s, pitch, velocity). Tolerant of what a sampler may emit:
        a NOTE_OFF without a NOTE_ON is ignored, a NOTE_ON of a sounding pitch restarts it, notes still
        sounding at the end are closed there (at least 10 ms long). Stops at EOS; skips PAD/BOS."""
        now = 0
        velocity = self.bin_velocity(NUM_VELOCITY_BINS // 2)
        sounding: dict[int, tuple[int, int]] = {}
        notes: list[tuple[int, int, int, int]] = []
        for token in np.asarray(ids, dtype=np.int64).reshape(-1):
            token = int(token)
            if token == self.eos_id:
                break
            if token < NUM_SPECIAL or token >= self.vocab_size:
                continue
            if token < self.note_off_offset:
                pitch = token - self.note_on_offset
                if pitch in sounding:
                    start, vel = sounding.pop(pitch)
                    notes.append((start, max(now, start + 1), pitch, vel))
                sounding[pitch] = (now, velocity)
            elif token < self.shift_offset:
                pitch = token - self.note_off_offset
                if pitch in sounding:
                    start, vel = sounding.pop(pitch)
                    notes.append((start, max(now, start + 1), pitch, vel))
            elif token < self.velocity_offset:
                now += token - self.shift_offset + 1
            else:
                velocity = self.bin_velocity(token - self.velocity_offset)
        for pitch, (start, vel) in sounding.items():
            notes.append((start, max(now, start + 1), pitch, vel))
        if not notes:
            return np.zeros((0, 4))
        arr = np.asarray(sorted(notes), dtype=np.float64)
        arr[:, :2] /= STEPS_PER_SECOND
        return arr

    def decode(self, ids: Any) -> Any:
        """Event ids → a one-track symusic Score (1 tick = 1 ms); `.dump_midi(path)` writes the file."""
        return notes_to_score(self.decode_notes(ids))

    # ------------------------------------------------------------------- augmentation (token level)

    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray | None:
        """Shift every NOTE_ON/NOTE_OFF by `semitones`; None when a note would leave the piano range
        (or MIDI's 0…127 for notes already outside it), so the caller draws again or keeps the original."""
        if semitones == 0:
            return ids
        is_note = (ids >= self.note_on_offset) & (ids < self.shift_offset)
        pitch = (ids[is_note] - self.note_on_offset) % 128
        if pitch.size:
            low = min(PIANO_RANGE[0], int(pitch.min()))
            high = max(PIANO_RANGE[1], int(pitch.max()))
            if pitch.min() + semitones < low or pitch.max() + semitones > high:
                return None
        out = ids.copy()
        out[is_note] += semitones
        return out

    def stretch(self, ids: np.ndarray, factor: float) -> np.ndarray:
        """Scale time by `factor` (>1 slower): event times are scaled and re-quantized on the absolute
        time line, so rounding never accumulates; TIME_SHIFT runs are re-emitted."""
        if factor == 1.0:
            return ids
        is_shift = (ids >= self.shift_offset) & (ids < self.velocity_offset)
        steps = np.where(is_shift, ids - self.shift_offset + 1, 0)
        t_old = np.cumsum(steps)
        t_new = np.round(t_old * factor).astype(np.int64)
        out: list[int] = []
        now = 0
        for i, token in enumerate(ids):
            if is_shift[i]:
                continue
            out.extend(self._shifts(t_new[i] - now))
            now = t_new[i]
            out.append(int(token))
        out.extend(self._shifts(t_new[-1] - now) if len(ids) else [])
        return np.asarray(out, dtype=np.int64)

    def seconds(self, ids: np.ndarray) -> float:
        """Music time covered by these tokens (sum of their TIME_SHIFTs)."""
        ids = np.asarray(ids)
        is_shift = (ids >= self.shift_offset) & (ids < self.velocity_offset)
        return float((ids[is_shift] - self.shift_offset + 1).sum()) / STEPS_PER_SECOND

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size}


class RemiTokenizer:
    """miditok REMI over the merged non-drum track (pitch 21…108, 8 positions per beat, tempo tokens).

    Time-stretch does not apply (positions are relative to the beat; a stretch would only change
    tempo tokens), so `stretch` returns its input; transposition shifts Pitch tokens."""

    kind = "remi"

    def __init__(self) -> None:
        import miditok

        config = miditok.TokenizerConfig(use_programs=False, use_tempos=True, use_velocities=True)
        self._tok = miditok.REMI(config)
        self.vocab_size = len(self._tok)
        self.pad_id = self._tok.pad_token_id
        self.bos_id = self._tok.vocab["BOS_None"]
        self.eos_id = self._tok.vocab["EOS_None"]
        self._pitch_ids = {
            int(name.split("_")[1]): idx for name, idx in self._tok.vocab.items() if name.startswith("Pitch_")
        }
        self._pitch_of = {idx: pitch for pitch, idx in self._pitch_ids.items()}
        self._perf = PerformanceTokenizer()

    def encode(self, score: Any) -> np.ndarray:
        if isinstance(score, str | Path):
            score = load_score(score)
        merged = notes_to_score(self._perf.normalize(score))
        seq = self._tok.encode(merged)
        seq = seq[0] if isinstance(seq, list) else seq
        return np.asarray(seq.ids, dtype=np.int64)

    def decode(self, ids: Any) -> Any:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        ids = [i for i in ids if i not in (self.pad_id, self.bos_id)]
        return self._tok.decode([ids])

    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray | None:
        if semitones == 0:
            return ids
        out = ids.copy()
        for i, token in enumerate(ids):
            pitch = self._pitch_of.get(int(token))
            if pitch is not None:
                moved = self._pitch_ids.get(pitch + semitones)
                if moved is None:
                    return None
                out[i] = moved
        return out

    def stretch(self, ids: np.ndarray, factor: float) -> np.ndarray:
        return ids

    def seconds(self, ids: np.ndarray) -> float:
        try:
            return float(self.decode(ids).to("second").end())
        except Exception:  # a crop that starts mid-bar may not decode; count no time rather than fail
            return 0.0

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size}


def make_tokenizer(kind: str) -> PerformanceTokenizer | RemiTokenizer:
    """`music_model.tokenizer` (or a checkpoint's stored `state()["kind"]`) → a tokenizer."""
    if kind == "performance":
        return PerformanceTokenizer()
    if kind == "remi":
        return RemiTokenizer()
    raise UserError(f"music_model.tokenizer: unknown tokenizer {kind!r}; choose performance or remi")
