"""Singing data: the note type every singing part shares, the readers of singing corpora and melodies, and
the phoneme track the singing model reads.

A sung melody is a list of `SungNote`s: one per syllable, plus one slurred continuation per extra pitch of
a melisma (`slur=True`, empty syllable). Onsets and durations are in seconds from the start of the song.

Layouts `read_singing_dir` reads (docs/singing.md):

- the project's own: `<singer>/<song>.wav` + `<song>.json` ({"language", "notes": [{"syllable",
  "phonemes", "pitch", "onset", "duration", "slur", optional "ph_dur"}], ...}), optional
  `<singer>/singer.json` ({"language", ...});
- openvpi (DiffSinger): `transcriptions.csv` (`name, ph_seq, ph_dur, ph_num, note_seq, note_dur`,
  optional `note_slur`) beside `wavs/<name>.wav`, in the folder or in one folder per singer;
- Opencpop: `transcriptions.txt` (`id|text|phonemes|notes|note durations|phoneme durations|slurs`) beside
  `wavs/<id>.wav`.

`read_melody` reads the melody side alone: MusicXML with lyrics (music21), MIDI with lyric meta events
(symusic) or the project's song JSON.

`phoneme_track` turns notes with phonemes into what the model reads: one token per phoneme with its note's
pitch, its note's length in frames and a slur flag, rests as "SP" tokens, and the note (group) each token
belongs to, whose frames its phonemes must fill.
"""

from __future__ import annotations

import csv
import json
import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.errors import UserError

log = logging.getLogger(__name__)

REST = "SP"
"""The token of a rest (silence between notes, and before the first and after the last)."""
BREATH = "AP"
SILENT = {REST, BREATH, "sil", "pau", "<sp>", ""}
"""Phoneme labels of corpora that mean no singing (rests, breaths)."""
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_VOWEL_LETTERS = set("aeiouyɑɐɒæɛɜəɘɚɝɞɤɨɪʉʊʌɔøœɶʏɯɵɷAEIOUv")
_DROP = {"ˈ", "ˌ", " ", "-", "‿"} | set(".,;:!?¡¿—–…'\"«»()")


@dataclass(frozen=True)
class SungNote:
    """One note of a sung melody."""

    syllable: str
    """Text of the syllable ("" for a slurred continuation)."""
    pitch: int
    """MIDI note number."""
    onset: float
    """Seconds from the start of the song."""
    duration: float
    """Seconds."""
    slur: bool = False
    """True: continues the previous syllable on a new pitch (melisma)."""
    phonemes: tuple[str, ...] | None = None
    """The syllable's phonemes; None: the front end phonemises the syllable."""


def midi_to_hz(pitch: float | np.ndarray) -> Any:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def hz_to_midi(hz: float | np.ndarray) -> Any:
    return 69.0 + 12.0 * np.log2(np.maximum(np.asarray(hz, dtype=np.float64), 1e-6) / 440.0)


def note_number(name: str, where: str) -> int | None:
    """MIDI number of a note name ("C#4", "Db4", "C#4/Db4"); None for a rest."""
    import librosa

    name = name.strip()
    if name.lower() in {"rest", "r", ""}:
        return None
    try:
        return int(librosa.note_to_midi(name.split("/")[0]))
    except Exception:
        raise UserError(f"{where}: {name!r} is not a note name (write C4, D#4, Eb4 or rest)") from None


# ---------------------------------------------------------------------------------------------- checks


def check_notes(notes: Sequence[SungNote], where: str) -> list[SungNote]:
    """The notes sorted by onset, checked: pitch 0–127, positive duration, onset ≥ 0, a slur only after a
    sung note, text or phonemes for every sung note. Overlapping notes are cut at the next onset."""
    if not notes:
        raise UserError(f"{where}: no notes to sing (give at least one note with a syllable)")
    ordered = sorted(notes, key=lambda n: n.onset)
    out: list[SungNote] = []
    for i, note in enumerate(ordered):
        what = f"{where}: note {i + 1} (onset {note.onset:g} s)"
        if not 0 <= int(note.pitch) <= 127:
            raise UserError(f"{what}: pitch {note.pitch} is not a MIDI note number (0–127)")
        if not note.duration > 0 or not np.isfinite(note.duration):
            raise UserError(f"{what}: duration {note.duration} must be a positive number of seconds")
        if note.onset < 0 or not np.isfinite(note.onset):
            raise UserError(f"{what}: onset {note.onset} must be ≥ 0 seconds")
        if note.slur and not out:
            raise UserError(f"{what}: a slurred note needs a sung note before it")
        if not note.slur and not note.syllable.strip() and not note.phonemes:
            raise UserError(
                f"{what}: it has neither a syllable nor phonemes (mark a melisma with slur: true)"
            )
        if out and out[-1].onset + out[-1].duration > note.onset + 1e-6:
            prev = out[-1]
            if note.onset - prev.onset <= 0:
                raise UserError(
                    f"{what}: starts together with the note before it (a melody has one note at a time)"
                )
            out[-1] = SungNote(
                prev.syllable, prev.pitch, prev.onset, note.onset - prev.onset, prev.slur, prev.phonemes
            )
        out.append(note)
    return out


# ---------------------------------------------------------------------------------------------- song JSON


def note_dict(note: SungNote, ph_dur: Sequence[float] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "syllable": note.syllable,
        "pitch": int(note.pitch),
        "onset": round(float(note.onset), 4),
        "duration": round(float(note.duration), 4),
        "slur": bool(note.slur),
    }
    if note.phonemes is not None:
        item["phonemes"] = list(note.phonemes)
    if ph_dur is not None:
        item["ph_dur"] = [round(float(d), 4) for d in ph_dur]
    return item


def write_song(
    path: Path,
    notes: Sequence[SungNote],
    language: str | None = None,
    extra: dict | None = None,
    phoneme_durations: Sequence[Sequence[float] | None] | None = None,
) -> None:
    """A song's `<song>.json`: {"language", ...extra, "notes": [...]}; `phoneme_durations`: seconds per
    phoneme of each note (None for slurs), written as the notes' "ph_dur"."""
    from cinematic.utils import atomic_write_bytes

    data: dict[str, Any] = {}
    if language:
        data["language"] = language
    data.update(extra or {})
    durations = list(phoneme_durations) if phoneme_durations is not None else [None] * len(notes)
    data["notes"] = [note_dict(n, d) for n, d in zip(notes, durations, strict=True)]
    atomic_write_bytes(Path(path), (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _parse_note(raw: Any, where: str) -> tuple[SungNote, tuple[float, ...] | None]:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a note must be an object with syllable, pitch, onset, duration")
    missing = [k for k in ("pitch", "onset", "duration") if k not in raw]
    if missing:
        raise UserError(f"{where}: the note lacks {', '.join(missing)}")
    try:
        pitch = raw["pitch"]
        pitch = note_number(pitch, where) if isinstance(pitch, str) else int(pitch)
        if pitch is None:
            raise UserError(f"{where}: a rest is a gap between notes, not a note")
        phonemes = raw.get("phonemes")
        if isinstance(phonemes, str):
            phonemes = phonemes.split()
        note = SungNote(
            syllable=str(raw.get("syllable", "") or ""),
            pitch=int(pitch),
            onset=float(raw["onset"]),
            duration=float(raw["duration"]),
            slur=bool(raw.get("slur", False)),
            phonemes=tuple(str(p) for p in phonemes) if phonemes is not None else None,
        )
        ph_dur = raw.get("ph_dur")
        durations = tuple(float(d) for d in ph_dur) if ph_dur is not None else None
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {err}") from None
    if durations is not None and (note.phonemes is None or len(durations) != len(note.phonemes)):
        raise UserError(f"{where}: ph_dur needs one duration per phoneme (and the phonemes)")
    return note, durations


def read_song(path: Path) -> tuple[list[SungNote], dict[str, Any], list[tuple[float, ...] | None]]:
    """(notes, the JSON's other keys, per-note phoneme durations or None) of a song JSON."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path}: not a readable song JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("notes"), list):
        raise UserError(f'{path}: a song JSON is an object with a "notes" list')
    parsed = [_parse_note(raw, f"{path}: note {i + 1}") for i, raw in enumerate(data["notes"])]
    meta = {k: v for k, v in data.items() if k != "notes"}
    return [p[0] for p in parsed], meta, [p[1] for p in parsed]


# ---------------------------------------------------------------------------------------------- items


@dataclass
class SingingItem:
    """One sung recording with its notes."""

    audio_path: Path
    singer: str
    language: str | None
    """None: the default language (the first of singing_model.languages)."""
    notes: list[SungNote]
    phoneme_durations: list[tuple[float, ...] | None] | None = None
    """Seconds per phoneme of each note (corpora that give them); None: the aligner finds them."""
    meta: dict[str, Any] = field(default_factory=dict)


def _audio_beside(path: Path) -> Path | None:
    return next((path.with_suffix(s) for s in AUDIO_SUFFIXES if path.with_suffix(s).is_file()), None)


def detect_layout(data_dir: Path) -> str:
    """ "openvpi", "opencpop" or "seed" (`<singer>/<song>.wav + .json`)."""
    for folder in (data_dir, *sorted(p for p in data_dir.iterdir() if p.is_dir())):
        if (folder / "transcriptions.csv").is_file():
            return "openvpi"
        if (folder / "transcriptions.txt").is_file():
            return "opencpop"
    return "seed"


def read_singing_dir(
    data_dir: str | Path, on_unreadable: Callable[[Path, str], None] | None = None
) -> list[SingingItem]:
    """Every recording of a singing folder (see the module docstring for the layouts)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"singing data folder not found: {data_dir}")
    layout = detect_layout(data_dir)
    if layout == "openvpi":
        items = [
            item
            for csv_path in sorted(
                {*data_dir.glob("transcriptions.csv"), *data_dir.glob("*/transcriptions.csv")}
            )
            for item in read_openvpi(csv_path)
        ]
    elif layout == "opencpop":
        items = [
            item
            for txt in sorted({*data_dir.glob("transcriptions.txt"), *data_dir.glob("*/transcriptions.txt")})
            for item in read_opencpop(txt)
        ]
    else:
        items = _read_seed(data_dir, on_unreadable)
    if not items:
        raise UserError(
            f"no sung recordings found in {data_dir}: expected <singer>/<song>.wav with <song>.json beside it "
            "(notes with syllables), an openvpi transcriptions.csv or an Opencpop transcriptions.txt"
        )
    return items


def _read_seed(data_dir: Path, on_unreadable: Callable[[Path, str], None] | None) -> list[SingingItem]:
    items = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        singer_meta: dict[str, Any] = {}
        meta_path = folder / "singer.json"
        if meta_path.is_file():
            try:
                singer_meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if not isinstance(singer_meta, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as err:
                singer_meta = {}
                if on_unreadable is not None:
                    on_unreadable(meta_path, f"ignored: {err}")
        for song in sorted(folder.rglob("*.json")):
            if song.name == "singer.json":
                continue
            audio = _audio_beside(song)
            if audio is None:
                if on_unreadable is not None:
                    on_unreadable(song, "no audio file (.wav, .flac, .ogg, .mp3) beside it")
                continue
            notes, meta, durations = read_song(song)
            language = meta.get("language") or singer_meta.get("language")
            check_notes(notes, str(song))
            known = durations if any(d is not None for d in durations) else None
            if known is not None and any(d is None for d, n in zip(known, notes, strict=True) if not n.slur):
                raise UserError(f"{song}: give ph_dur for every sung note or for none")
            items.append(SingingItem(audio, folder.name, language, notes, known, meta))
    return items


def _split(value: str) -> list[str]:
    return value.split()


def read_openvpi(csv_path: Path) -> list[SingingItem]:
    """Items of an openvpi/DiffSinger `transcriptions.csv`: notes from note_seq/note_dur, phonemes grouped
    by ph_num into the notes their middles fall in, phoneme durations from ph_dur. The singer is the
    folder's name; the language is unknown (phonemes are given)."""
    singer = csv_path.parent.name
    items = []
    try:
        rows = list(csv.DictReader(csv_path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{csv_path}: not a readable CSV ({err})") from None
    need = {"name", "ph_seq", "ph_dur", "note_seq", "note_dur"}
    if rows and not need <= set(rows[0]):
        raise UserError(f"{csv_path}: columns {', '.join(sorted(need - set(rows[0])))} are missing")
    for line, row in enumerate(rows, start=2):
        where = f"{csv_path}, line {line}"
        audio = _audio_beside(csv_path.parent / "wavs" / row["name"])
        if audio is None:
            raise UserError(f"{where}: no audio wavs/{row['name']}.wav beside it")
        try:
            phones = _split(row["ph_seq"])
            ph_dur = [float(d) for d in _split(row["ph_dur"])]
            note_names = _split(row["note_seq"])
            note_dur = [float(d) for d in _split(row["note_dur"])]
            slurs = [int(s) for s in _split(row.get("note_slur") or "")] or [0] * len(note_names)
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        if len(phones) != len(ph_dur) or len(note_names) != len(note_dur) or len(slurs) != len(note_names):
            raise UserError(f"{where}: ph_seq/ph_dur or note_seq/note_dur/note_slur differ in length")
        items.append(
            SingingItem(
                audio, singer, None, *_notes_from_timeline(phones, ph_dur, note_names, note_dur, slurs, where)
            )
        )
    return items


def _notes_from_timeline(
    phones: list[str],
    ph_dur: list[float],
    note_names: list[str],
    note_dur: list[float],
    slurs: list[int],
    where: str,
) -> tuple[list[SungNote], list[tuple[float, ...] | None]]:
    """Notes (with phonemes) and per-note phoneme durations from a phoneme timeline and a note timeline:
    each sung phoneme joins the note its middle falls in; a note no phoneme joins continues the syllable
    before it (a slur); rests and silent phonemes are dropped (rests are the gaps between notes)."""
    ends = np.cumsum(note_dur)
    starts = ends - np.asarray(note_dur)
    pitches = [note_number(n, where) for n in note_names]
    members: list[list[int]] = [[] for _ in note_names]
    t = 0.0
    for i, (phone, dur) in enumerate(zip(phones, ph_dur, strict=True)):
        middle = t + dur / 2
        t += dur
        if phone in SILENT:
            continue
        k = int(np.clip(np.searchsorted(ends, middle, side="right"), 0, len(note_names) - 1))
        if pitches[k] is None:  # a consonant before a note falls in the rest: give it to the next note
            later = [j for j in range(k + 1, len(note_names)) if pitches[j] is not None]
            if not later:
                continue
            k = later[0]
        members[k].append(i)
    notes: list[SungNote] = []
    durations: list[tuple[float, ...] | None] = []
    for k, pitch in enumerate(pitches):
        if pitch is None:
            continue
        idx = members[k]
        if idx and not (slurs[k] and notes):
            text = "".join(phones[i] for i in idx)
            notes.append(
                SungNote(
                    text, pitch, float(starts[k]), float(note_dur[k]), False, tuple(phones[i] for i in idx)
                )
            )
            durations.append(tuple(ph_dur[i] for i in idx))
        elif notes:
            notes.append(SungNote("", pitch, float(starts[k]), float(note_dur[k]), True))
            durations.append(None)
    if not notes:
        raise UserError(f"{where}: no sung notes")
    return notes, durations


def read_opencpop(txt_path: Path) -> list[SingingItem]:
    """Items of an Opencpop `transcriptions.txt` (`id|text|phonemes|notes|note_durs|phoneme_durs|slurs`, one
    value per phoneme): phonemes whose durations fill one note are that note's syllable; a phoneme flagged
    as slur starts a slurred note. Language "zh"; the singer is the folder's name."""
    singer = txt_path.parent.name
    items = []
    try:
        lines = txt_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{txt_path}: not readable as UTF-8 text ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{txt_path}, line {number}"
        parts = line.split("|")
        if len(parts) < 7:
            raise UserError(
                f"{where}: expected 7 fields separated by | (id|text|phonemes|notes|note durations|phoneme durations|slurs)"
            )
        uid, _text, phones, names, note_durs, ph_durs, slur_flags = parts[:7]
        audio = _audio_beside(txt_path.parent / "wavs" / uid)
        if audio is None:
            raise UserError(f"{where}: no audio wavs/{uid}.wav beside it")
        try:
            phones_l, names_l = _split(phones), _split(names)
            nd = [float(x) for x in _split(note_durs)]
            pd = [float(x) for x in _split(ph_durs)]
            sl = [int(x) for x in _split(slur_flags)]
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        if not len(phones_l) == len(names_l) == len(nd) == len(pd) == len(sl):
            raise UserError(f"{where}: the per-phoneme fields differ in length")
        notes, durations = _opencpop_notes(phones_l, names_l, nd, pd, sl, where)
        items.append(SingingItem(audio, singer, "zh", notes, durations))
    return items


def _opencpop_notes(
    phones: list[str],
    names: list[str],
    note_durs: list[float],
    ph_durs: list[float],
    slurs: list[int],
    where: str,
) -> tuple[list[SungNote], list[tuple[float, ...] | None]]:
    """Group Opencpop's per-phoneme rows into notes: a new note starts at a slur flag, a rest, a new note
    name, or once the phonemes so far fill the note's duration."""
    groups: list[tuple[float, list[int]]] = []
    t = 0.0
    for i in range(len(phones)):
        new = not groups or bool(slurs[i]) or phones[i] in SILENT
        if groups and not new:
            first = groups[-1][1][0]
            filled = sum(ph_durs[j] for j in groups[-1][1])
            new = phones[first] in SILENT or filled >= note_durs[first] - 0.015 or names[i] != names[first]
        if new:
            groups.append((t, [i]))
        else:
            groups[-1][1].append(i)
        t += ph_durs[i]
    notes: list[SungNote] = []
    durations: list[tuple[float, ...] | None] = []
    for start, members in groups:
        first = members[0]
        pitch = note_number(names[first], where)
        if phones[first] in SILENT or pitch is None:
            continue
        length = sum(ph_durs[i] for i in members)
        if slurs[first] and notes:
            notes.append(SungNote("", pitch, start, length, True))
            durations.append(None)
            continue
        sung = [i for i in members if phones[i] not in SILENT]
        symbols = tuple(phones[i] for i in sung)
        notes.append(SungNote("".join(symbols), pitch, start, length, False, symbols))
        durations.append(tuple(ph_durs[i] for i in sung))
    return notes, durations


# ---------------------------------------------------------------------------------------------- melodies


MELODY_SUFFIXES = (".musicxml", ".xml", ".mxl", ".mid", ".midi", ".json")


def read_melody(path: str | Path) -> list[SungNote]:
    """The sung melody of a MusicXML file with lyrics (music21), a MIDI file with lyric meta events
    (symusic) or a song JSON: one note per syllable, notes without a lyric after a sung one are slurs
    (melisma), tied notes are merged. A `UserError` naming the file when it cannot be read or has no lyrics."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"melody file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        notes = read_song(path)[0]
    elif suffix in {".mid", ".midi"}:
        notes = _read_midi_melody(path)
    elif suffix in {".musicxml", ".xml", ".mxl"}:
        notes = _read_musicxml_melody(path)
    else:
        raise UserError(f"{path}: a melody is a .musicxml/.xml/.mxl, .mid/.midi or song .json file")
    return check_notes(notes, str(path))


def _read_musicxml_melody(path: Path) -> list[SungNote]:
    import music21

    try:
        score = music21.converter.parse(str(path))
    except Exception as err:
        raise UserError(f"{path}: music21 cannot read it as MusicXML ({type(err).__name__}: {err})") from None
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    part = next((p for p in parts if any(n.lyric for n in p.recurse().notes)), None)
    if part is None:
        raise UserError(f"{path}: no part has lyrics; add the syllables as lyrics under the melody's notes")
    timed = part.stripTies().flatten()
    seconds = {id(entry["element"]): entry for entry in timed.secondsMap}
    notes: list[SungNote] = []
    for element in timed.notes:
        entry = seconds.get(id(element))
        if entry is None:
            continue
        pitch = max(p.midi for p in element.pitches) if element.isChord else element.pitch.midi
        lyric = (element.lyric or "").strip()
        onset, duration = float(entry["offsetSeconds"]), float(entry["durationSeconds"])
        if duration <= 0:
            continue  # grace notes
        if lyric:
            notes.append(SungNote(lyric.strip("-"), int(pitch), onset, duration))
        elif notes:
            notes.append(SungNote("", int(pitch), onset, duration, slur=True))
    if not notes:
        raise UserError(f"{path}: no sung notes with lyrics found")
    return notes


def _read_midi_melody(path: Path) -> list[SungNote]:
    import symusic

    try:
        score = symusic.Score(str(path)).to("second")
    except Exception as err:
        raise UserError(f"{path}: not a readable MIDI file ({err})") from None
    lyrics = sorted((float(m.time), str(m.text)) for t in score.tracks for m in t.lyrics)
    lyrics = [
        (t, text.strip().strip("-"))
        for t, text in lyrics
        if text.strip() and text.strip() not in {"\\", "/", "-"}
    ]
    if not lyrics:
        raise UserError(
            f"{path}: the MIDI file has no lyric meta events; put one syllable per note as a lyric event, "
            "or give the melody as MusicXML with lyrics"
        )
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if not tracks:
        raise UserError(f"{path}: the MIDI file has no notes")
    track = tracks[0]
    starts: dict[float, Any] = {}
    for n in track.notes:  # one note per onset: the highest (the tune sits on top of a chord)
        key = round(float(n.time), 3)
        if key not in starts or n.pitch > starts[key].pitch:
            starts[key] = n
    ordered = [starts[k] for k in sorted(starts)]
    times = np.array([float(n.time) for n in ordered])
    words: dict[int, str] = {}
    for t, text in lyrics:
        i = int(np.argmin(np.abs(times - t)))
        if abs(times[i] - t) <= 0.03:
            words[i] = (words.get(i, "") + text) if i in words else text
    notes: list[SungNote] = []
    for i, n in enumerate(ordered):
        if i in words:
            notes.append(SungNote(words[i], int(n.pitch), float(n.time), float(n.duration)))
        elif notes:
            notes.append(SungNote("", int(n.pitch), float(n.time), float(n.duration), slur=True))
    return notes


# ---------------------------------------------------------------------------------------------- phonemes


def sung_phonemes(symbols: Sequence[str]) -> tuple[str, ...]:
    """A syllable's phonemes from the front end's symbols: stress marks, word spaces and punctuation are
    dropped (a sung note's timing carries what they say in speech)."""
    return tuple(s for s in symbols if s not in _DROP and s.strip())


def is_vowel(phoneme: str) -> bool:
    base = unicodedata.normalize("NFD", phoneme)[:1]
    return base in _VOWEL_LETTERS


def nucleus(phonemes: Sequence[str]) -> str:
    """The phoneme a slurred note holds on: the syllable's last vowel (else its last phoneme)."""
    vowels = [p for p in phonemes if is_vowel(p)]
    return vowels[-1] if vowels else phonemes[-1]


def phonemize_notes(notes: Sequence[SungNote], language: str, front: Any) -> list[tuple[str, ...]]:
    """Each note's phonemes: its own when given, else the front end's (`TextFrontEnd`) for its syllable,
    spoken alone (one espeak-ng call for all of them); () for a slurred note."""
    todo = [i for i, n in enumerate(notes) if not n.slur and n.phonemes is None]
    symbols = front.batch([notes[i].syllable for i in todo], [language] * len(todo)) if todo else []
    found = dict(zip(todo, (sung_phonemes(s) for s in symbols), strict=True))
    out = []
    for i, note in enumerate(notes):
        if note.slur:
            out.append(())
        elif note.phonemes is not None:
            out.append(tuple(note.phonemes))
        else:
            out.append(found[i])
    return out


@dataclass
class PhonemeTrack:
    """What the singing model reads for one song: per token (phoneme or rest) and per group (a note or a
    rest), plus the frame timeline of the notes."""

    symbols: list[str]
    pitch: list[int]
    """MIDI pitch of the token's note (0 for a rest)."""
    slur: list[int]
    group: list[int]
    """Index of the token's group."""
    group_frames: list[int]
    """Frames each group lasts (its note or rest): its tokens' durations must add up to it."""
    group_is_note: list[bool]
    note_of_group: list[int]
    """Index into the notes of each group (−1 for a rest)."""
    durations: list[int] | None = None
    """Frames per token when the corpus gives phoneme durations."""

    @property
    def total_frames(self) -> int:
        return int(sum(self.group_frames))

    def token_group_frames(self) -> list[int]:
        return [self.group_frames[g] for g in self.group]


def phoneme_track(
    notes: Sequence[SungNote],
    phonemes: Sequence[Sequence[str]],
    frames_per_second: float,
    total_frames: int | None = None,
    phoneme_durations: Sequence[Sequence[float] | None] | None = None,
    where: str = "song",
) -> PhonemeTrack:
    """Tokens and groups of a song: a rest before the first note, one group per note (its phonemes; a slur
    holds the previous syllable's vowel), a rest in every gap, and one after the last note up to
    `total_frames` (the recording's length) when given. Group lengths are the notes' boundaries rounded to
    frames, so the groups tile the timeline exactly; each group gets at least as many frames as tokens."""
    track = PhonemeTrack([], [], [], [], [], [], [])
    given = [] if phoneme_durations is not None else None

    def bound(t: float) -> int:
        return int(round(t * frames_per_second))

    cursor = 0
    last_syllable: tuple[str, ...] = ()
    for k, (note, phones) in enumerate(zip(notes, phonemes, strict=True)):
        start, end = bound(note.onset), bound(note.onset + note.duration)
        if start > cursor:
            _add_group(track, [REST], 0, 0, start - cursor, -1)
            if given is not None:
                given.append(start - cursor)
        start = max(start, cursor)
        if note.slur:
            if not last_syllable:
                raise UserError(f"{where}: note {k + 1} is a slur with no sung syllable before it")
            symbols = [nucleus(last_syllable)]
        else:
            if not phones:
                raise UserError(
                    f"{where}: note {k + 1} ({note.syllable!r}) has nothing to sing (no phonemes); "
                    "check its syllable text and language"
                )
            symbols = list(phones)
            last_syllable = tuple(phones)
        frames = max(end - start, len(symbols))
        _add_group(track, symbols, int(note.pitch), int(note.slur), frames, k)
        if given is not None:
            durs = phoneme_durations[k] if phoneme_durations is not None else None
            if note.slur or durs is None:
                given.append(frames)
            else:
                given.extend(_fit_durations([d * frames_per_second for d in durs], frames))
        cursor = start + frames
    if total_frames is not None and total_frames > cursor:
        _add_group(track, [REST], 0, 0, total_frames - cursor, -1)
        if given is not None:
            given.append(total_frames - cursor)
    if given is not None:
        track.durations = given
    return track


def _add_group(
    track: PhonemeTrack, symbols: list[str], pitch: int, slur: int, frames: int, note: int
) -> None:
    g = len(track.group_frames)
    track.group_frames.append(int(frames))
    track.group_is_note.append(note >= 0)
    track.note_of_group.append(note)
    for s in symbols:
        track.symbols.append(s)
        track.pitch.append(pitch)
        track.slur.append(slur)
        track.group.append(g)


def _fit_durations(frames: Sequence[float], total: int) -> list[int]:
    """Integer durations ≥ 1 proportional to `frames` that add up to `total` (largest remainders)."""
    weights = np.maximum(np.asarray(frames, dtype=np.float64), 1e-3)
    n = len(weights)
    if total < n:
        raise ValueError(f"{total} frames cannot hold {n} phonemes")
    share = weights / weights.sum() * total
    base = np.maximum(np.floor(share), 1).astype(int)
    while base.sum() > total:  # the 1-frame floors took frames: give them back from the longest
        base[int(np.argmax(np.where(base > 1, base - share, -np.inf)))] -= 1
    spare = total - int(base.sum())
    order = np.argsort(-(share - base), kind="stable")[:spare]
    base[order] += 1
    return [int(b) for b in base]


def fit_durations(frames: Sequence[float], total: int) -> list[int]:
    """Public form of the largest-remainder fit: durations ≥ 1 frame, proportional to `frames`, summing to
    `total` (the syllable-fills-its-note constraint at synthesis)."""
    return _fit_durations(frames, total)


# ---------------------------------------------------------------------------------------------- pieces


@dataclass
class SongPiece:
    """A stretch of a recording the model trains on: [start, end) seconds of the audio, its notes (onsets
    relative to `start`), their phonemes and phoneme durations (or None)."""

    audio_path: Path
    singer: str
    language: str
    start: float
    end: float | None
    notes: list[SungNote]
    phonemes: list[tuple[str, ...]]
    phoneme_durations: list[tuple[float, ...] | None] | None
    formant_ratio: float = 1.0
    """1: the recording as it is; otherwise its formants moved by this ratio, pitch and timing kept: a
    virtual singer (speaker augmentation, `augmented_pieces`)."""
    transpose: int = 0
    """Semitones the recording is sung higher (its notes already moved; formants kept): the same singer
    in another register (`augmented_pieces`)."""

    @property
    def shift(self) -> tuple[float, int]:
        """(formant ratio, semitones): how the recording is changed before its features are taken."""
        return (self.formant_ratio, self.transpose)


PITCH_FLOOR_HZ, PITCH_CEILING_HZ = 60.0, 1000.0
"""Praat's F0 search range for shifting sung recordings."""


VIRTUAL_SINGER = "{singer}@formant{ratio:g}"
"""Name of a virtual singer: a real one with its formants moved (it has no singer-table row)."""


def augmented_pieces(
    pieces: Sequence[SongPiece], formant_ratios: Sequence[float], transpositions: Sequence[int]
) -> list[SongPiece]:
    """Speaker augmentation, from the training pieces (`shift_voice` does it to the audio):

    - every piece again for every formant ratio (≠ 1), sung by a virtual singer named after its singer
      and the ratio (`VIRTUAL_SINGER`): same notes, pitch and timing, its own d-vector. The model sees
      them without a singer-table row, so only the d-vector tells it the voice: a continuum of voices
      instead of a handful of singers for the d-vector path to learn from;
    - every piece again for every transposition (≠ 0 semitones), sung by the same singer (table row)
      with its notes moved and its formants kept: each singer in other registers, so the model cannot
      read a singer's timbre off the pitch of the notes (each demo singer has its own register) and has
      to take it from the singer vector.
    """
    from dataclasses import replace

    out = [
        replace(piece, singer=VIRTUAL_SINGER.format(singer=piece.singer, ratio=ratio), formant_ratio=ratio)
        for ratio in formant_ratios
        if abs(ratio - 1.0) > 1e-6
        for piece in pieces
    ]
    for semitones in transpositions:
        if semitones == 0:
            continue
        for piece in pieces:
            notes = [
                SungNote(n.syllable, n.pitch + semitones, n.onset, n.duration, n.slur, n.phonemes)
                for n in piece.notes
            ]
            out.append(replace(piece, notes=notes, transpose=int(semitones)))
    return out


def shift_voice(
    wav: np.ndarray, sample_rate: int, formant_ratio: float = 1.0, semitones: int = 0
) -> np.ndarray:
    """The recording with its formants moved by `formant_ratio` (> 1: a shorter vocal tract) and its pitch
    moved by `semitones`, length kept: Praat's "Change gender" (resample, then PSOLA onto the wanted pitch
    and the original length). The identity when both are neutral."""
    if abs(formant_ratio - 1.0) < 1e-6 and semitones == 0:
        return wav
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(np.asarray(wav, dtype=np.float64), sample_rate)
    median = 0.0  # 0: keep the pitch
    if semitones:
        pitch = call(sound, "To Pitch", 0.0, PITCH_FLOOR_HZ, PITCH_CEILING_HZ)
        median = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz") * 2.0 ** (semitones / 12)
        if not np.isfinite(median):  # no voiced frame: nothing to move
            median = 0.0
    shifted = call(
        sound, "Change gender", PITCH_FLOOR_HZ, PITCH_CEILING_HZ, float(formant_ratio), median, 1, 1
    )
    out = np.asarray(shifted.values[0], dtype=np.float32)[: len(wav)]
    if len(out) < len(wav):
        out = np.concatenate([out, np.zeros(len(wav) - len(out), np.float32)])
    return out


def split_song(
    item: SingingItem, language: str, phonemes: list[tuple[str, ...]], max_seconds: float
) -> list[SongPiece]:
    """The item as pieces of at most `max_seconds` (plus its last note's tail), cut in the middle of rests
    (or between notes when a stretch has no rest); one piece when it is short enough. A slurred note
    stays with its syllable."""
    notes = item.notes
    durations = item.phoneme_durations
    end_of = [n.onset + n.duration for n in notes]
    if end_of[-1] <= max_seconds:
        return [
            SongPiece(item.audio_path, item.singer, language, 0.0, None, list(notes), phonemes, durations)
        ]
    pieces, first, start = [], 0, 0.0
    for k in range(1, len(notes) + 1):
        last_piece = k == len(notes)
        if not last_piece and (notes[k].slur or notes[k].onset + notes[k].duration - start <= max_seconds):
            continue
        cut = end_of[-1] + 0.2 if last_piece else (end_of[k - 1] + notes[k].onset) / 2
        chosen = list(range(first, k))
        if chosen:
            shifted = [
                SungNote(n.syllable, n.pitch, n.onset - start, n.duration, n.slur, n.phonemes)
                for n in (notes[i] for i in chosen)
            ]
            pieces.append(
                SongPiece(
                    item.audio_path,
                    item.singer,
                    language,
                    start,
                    None if last_piece else cut,
                    shifted,
                    [phonemes[i] for i in chosen],
                    [durations[i] for i in chosen] if durations is not None else None,
                )
            )
        first, start = k, cut
    return pieces


# ---------------------------------------------------------------------------------------------- features


FEATURE_VERSION = 2
DVECTOR_SECONDS = 3.0
"""Seconds of a recording its d-vector is computed from."""


@dataclass
class SungFeatures:
    """One piece's features, per mel frame (T frames)."""

    mel: np.ndarray
    """(T, n_mels) log-mel."""
    f0: np.ndarray
    """(T,) F0 in MIDI semitones, unvoiced frames interpolated (60 everywhere if none is voiced)."""
    voiced: np.ndarray
    """(T,) bool."""
    dvector: np.ndarray
    """(256,) GE2E d-vector of the whole recording (zeros without a speaker encoder)."""


class SungFeatureCache:
    """Features of song pieces in the content-addressed cache (`cinematic.data.preprocessing`), keyed by the
    audio's sha1, the piece's span and the mel settings; `cache_dir=None` keeps them in memory. Unlike
    speech clips, recordings are not trimmed: note onsets count from the file's first sample."""

    def __init__(self, cache_dir: Path | None, mel_cfg: Any, speaker_encoder: Any | None):
        from cinematic.data.preprocessing import FeatureCache as Store

        self.store = Store(cache_dir / "features") if cache_dir is not None else None
        self.memory: dict[tuple[Path, float, float | None, tuple[float, int]], SungFeatures] = {}
        self.dvectors: dict[tuple[Path, tuple[float, int]], np.ndarray] = {}
        self._shifted: tuple[tuple[Path, tuple[float, int]], np.ndarray] | None = None
        self.mel_cfg = mel_cfg
        self.encoder = speaker_encoder

    def get(self, piece: SongPiece) -> SungFeatures:
        """`UnreadableFile` when the audio cannot be decoded or holds no sound."""
        from cinematic.data.preprocessing import feature_key
        from cinematic.utils import file_sha1

        span = (piece.audio_path, piece.start, piece.end, piece.shift)
        if span in self.memory:
            return self.memory[span]
        key = None
        if self.store is not None:
            extra = {
                "singing": FEATURE_VERSION,
                "start": piece.start,
                "end": piece.end,
                "dvectors": self.encoder is not None,
            }
            if piece.shift != (1.0, 0):  # (absent for the recordings themselves: their keys stay)
                extra["shift"] = list(piece.shift)
            key = feature_key(file_sha1(piece.audio_path), "singing_xiaoicesing", self.mel_cfg, extra)
            cached = self.store.load(key)
            if cached is not None and set(SungFeatures.__dataclass_fields__) <= set(cached):
                features = SungFeatures(**{k: cached[k] for k in SungFeatures.__dataclass_fields__})
                self.memory[span] = features
                return features
        features = self._extract(piece)
        if self.store is not None and key is not None:
            self.store.store(key, {k: getattr(features, k) for k in SungFeatures.__dataclass_fields__})
        self.memory[span] = features
        return features

    def _extract(self, piece: SongPiece) -> SungFeatures:
        from cinematic.data.skips import UnreadableFile
        from cinematic.data.voice import clip_problem, extract_features

        wav, sr = self._recording(piece)
        a = int(round(piece.start * sr))
        b = len(wav) if piece.end is None else int(round(piece.end * sr))
        problem = clip_problem(wav[a:b], sr)
        if problem is not None:
            raise UnreadableFile(piece.audio_path, problem)
        f = extract_features(wav[a:b], self.mel_cfg, None)
        if f.voiced.any():
            f0 = hz_to_midi(np.exp(f.log_f0)).astype(np.float32)
        else:
            f0 = np.full(len(f.log_f0), 60.0, dtype=np.float32)
        dvector = self._dvector((piece.audio_path, piece.shift), wav, sr)
        return SungFeatures(f.mel, f0, f.voiced, dvector)

    def _recording(self, piece: SongPiece) -> tuple[np.ndarray, int]:
        """The piece's whole recording at the mel rate, shifted (`shift_voice`) for an augmented piece (the
        last shifted recording is kept: a recording's pieces come one after another)."""
        from cinematic.data.audio import load_audio

        wav, sr = load_audio(piece.audio_path, sample_rate=self.mel_cfg.sample_rate)
        if piece.shift == (1.0, 0):
            return wav, sr
        key = (piece.audio_path, piece.shift)
        if self._shifted is None or self._shifted[0] != key:
            self._shifted = (key, shift_voice(wav, sr, *piece.shift))
        return self._shifted[1], sr

    def _dvector(self, key: tuple[Path, tuple[float, int]], wav: np.ndarray, sr: int) -> np.ndarray:
        """The recording's d-vector (of its shifted version for an augmented piece), shared by its
        pieces: from DVECTOR_SECONDS of it, starting at its first sound (the voice is the same throughout;
        the speaker encoder's cost grows with the length)."""
        from cinematic.data.skips import UnreadableFile

        if self.encoder is None:
            return np.zeros(256, np.float32)
        path = key[0]
        if key not in self.dvectors:
            loud = np.flatnonzero(np.abs(wav) > 0.05 * max(float(np.abs(wav).max()), 1e-9))
            start = int(loud[0]) if len(loud) else 0
            try:
                vector = self.encoder.embed(wav[start : start + int(DVECTOR_SECONDS * sr)], sr)
            except UserError as err:  # too little sound for a d-vector
                raise UnreadableFile(path, str(err)) from None
            self.dvectors[key] = np.asarray(vector, dtype=np.float32)
        return self.dvectors[key]


# ---------------------------------------------------------------------------------------------- batches


LOG_MEL_SILENCE = float(np.log(1e-5))
"""The log-mel of silence (the front end's floor): what padding frames hold."""


def encode_symbols(table: Any, symbols: Sequence[str], context: str = "") -> list[int]:
    """Ids of `symbols` in a `SymbolTable`, one per symbol: unknown ones become <unk> (named in a warning),
    so the per-token note lists stay aligned."""
    missing = table.unknown(symbols)
    if missing:
        log.warning(
            "%sphonemes the singing model was not trained on are sung as <unk>: %s",
            f"{context}: " if context else "",
            " ".join(repr(s) for s in missing),
        )
    unk = table.index["<unk>"]
    return [table.index.get(s, unk) for s in symbols]


def heuristic_spans(symbols: Sequence[str], frames: int) -> list[int]:
    """Frames of each phoneme of a note before anything is learned: vowels weigh 4, consonants 1."""
    return fit_durations([4.0 if is_vowel(s) or s == REST else 1.0 for s in symbols], frames)


def alignment_prior(track: PhonemeTrack) -> np.ndarray:
    """(T_mel, T_text) log prior of the aligner: each phoneme may only take frames of its own note (−1e4
    elsewhere), and inside the note it is pulled towards the span `heuristic_spans` gives it."""
    total, n = track.total_frames, len(track.symbols)
    prior = np.full((total, n), -1e4, dtype=np.float32)
    start = 0
    t = np.arange(total)
    token = 0
    for g, frames in enumerate(track.group_frames):
        members = [i for i in range(token, n) if track.group[i] == g]
        spans = heuristic_spans([track.symbols[i] for i in members], frames)
        inside = (t >= start) & (t < start + frames)
        a = start
        for i, span in zip(members, spans, strict=True):
            b = a + span
            distance = np.maximum(np.maximum(a - t, t - (b - 1)), 0).astype(np.float32)
            width = max(2.0, 0.5 * span)
            prior[inside, i] = -((distance[inside] / width) ** 2)
            a = b
        start += frames
        token += len(members)
    return prior


class SingingDataset:
    """Song pieces as tensors for `collate`. `singers`: name → table row; `languages`: name → id."""

    def __init__(
        self,
        pieces: list[SongPiece],
        cache: SungFeatureCache,
        table: Any,
        singers: dict[str, int],
        languages: dict[str, int],
    ):
        self.pieces, self.cache, self.table = pieces, cache, table
        self.singers, self.languages = singers, languages

    def __len__(self) -> int:
        return len(self.pieces)

    def track(self, piece: SongPiece, frames: int) -> PhonemeTrack:
        fps = self.cache.mel_cfg.sample_rate / self.cache.mel_cfg.hop_length
        return phoneme_track(
            piece.notes, piece.phonemes, fps, frames, piece.phoneme_durations, str(piece.audio_path)
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        piece = self.pieces[index]
        feats = self.cache.get(piece)
        track = self.track(piece, len(feats.mel))
        total = track.total_frames
        mel, f0, voiced = feats.mel[:total], feats.f0[:total], feats.voiced[:total]
        if len(mel) < total:  # notes run past the end of the recording: silence after it
            extra = total - len(mel)
            mel = np.concatenate([mel, np.full((extra, mel.shape[1]), LOG_MEL_SILENCE, np.float32)])
            f0 = np.concatenate([f0, np.full(extra, f0[-1] if len(f0) else 60.0, np.float32)])
            voiced = np.concatenate([voiced, np.zeros(extra, bool)])
        return {
            "tokens": torch.tensor(encode_symbols(self.table, track.symbols, str(piece.audio_path))),
            "note_pitch": torch.tensor(track.pitch),
            "note_frames": torch.tensor(track.token_group_frames()),
            "slur": torch.tensor(track.slur),
            "groups": torch.tensor(track.group),
            "group_frames": torch.tensor(track.group_frames),
            "durations": torch.tensor(track.durations) if track.durations is not None else None,
            "align_prior": torch.from_numpy(alignment_prior(track)),
            "mel": torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)),
            "f0": torch.from_numpy(np.ascontiguousarray(f0, dtype=np.float32)),
            "voiced": torch.from_numpy(np.ascontiguousarray(voiced, dtype=bool)),
            "speaker": self.singers.get(piece.singer, 0),
            "language": self.languages[piece.language],
            "dvector": torch.from_numpy(np.asarray(feats.dvector, dtype=np.float32)),
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad to the longest phoneme track, mel and group list of the batch."""
    import torch

    b = len(items)
    n_text = max(len(i["tokens"]) for i in items)
    n_mel = max(len(i["mel"]) for i in items)
    n_groups = max(len(i["group_frames"]) for i in items)
    n_mels = items[0]["mel"].shape[1]

    def pad(key: str, length: int, dtype: Any, value: float = 0) -> Any:
        out = torch.full((b, length), value, dtype=dtype)
        for row, item in enumerate(items):
            out[row, : len(item[key])] = item[key]
        return out

    mels = torch.full((b, n_mel, n_mels), LOG_MEL_SILENCE)
    prior = torch.full((b, n_mel, n_text), -1e4)
    for row, item in enumerate(items):
        mels[row, : len(item["mel"])] = item["mel"]
        prior[row, : item["align_prior"].shape[0], : item["align_prior"].shape[1]] = item["align_prior"]
    batch = {
        "tokens": pad("tokens", n_text, torch.long),
        "text_lengths": torch.tensor([len(i["tokens"]) for i in items]),
        "note_pitch": pad("note_pitch", n_text, torch.long),
        "note_frames": pad("note_frames", n_text, torch.long),
        "slur": pad("slur", n_text, torch.long),
        "groups": pad("groups", n_text, torch.long),
        "group_frames": pad("group_frames", n_groups, torch.long),
        "align_prior": prior,
        "mels": mels,
        "mel_lengths": torch.tensor([len(i["mel"]) for i in items]),
        "f0": pad("f0", n_mel, torch.float32, 60.0),
        "voiced": pad("voiced", n_mel, torch.bool, False),
        "speakers": torch.tensor([i["speaker"] for i in items]),
        "languages": torch.tensor([i["language"] for i in items]),
        "dvectors": torch.stack([i["dvector"] for i in items]),
    }
    if all(i["durations"] is not None for i in items):
        batch["durations"] = pad("durations", n_text, torch.long)
    return batch
