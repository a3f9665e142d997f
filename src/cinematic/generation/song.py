"""A song from three checkpoints: `cinematic generate song` and `cinematic.api.generate_song`.

    songs = SongGenerator.from_checkpoints(music="music.pth", lyrics="lyrics.pth", singer="singing.pth")
    song = songs.generate(language="en", emotion="sad", seed=0)
    song.save("out/")     # song.wav vocals.wav accompaniment.wav song.mid lyrics.lrc song.json

Stages (each prints a progress line; `song.timings` keeps their seconds):
1. lyrics — the lyrics GPT with language/emotion/genre/scene (a chorus that comes back is the first chorus
   again, word for word), or a user's text (`lyrics_file`); then sections, lines and syllables
   (`cinematic.data.syllables`);
2. melody — the music model decoded in key and in the singer's range, notes picked per syllable under the
   line constraints (`cinematic.generation.melody`), or a user's melody (`melody`: MIDI or MusicXML, read
   by `cinematic.data.singing.read_melody` when it carries lyrics, which mark melismas, else its top voice);
3. vocals — the singing model sings the notes (a training singer, or zero-shot like a `reference` clip);
4. accompaniment — more material from the music model, in key, below the voice, on the sixteenth grid of the
   song tempo, repeated in whole bars over the song's length; rendered by the project's synthesizer;
5. mix — vocal level relative to the accompaniment, −14 LUFS integrated, a limiter (`generation.mix`).

Key and tempo: `key`/`tempo` when given, else from the emotion (minor for dark emotions, a tonic drawn by
the seed; tempo by emotion), or for a user's melody its own tempo and key signature (MIDI) or measured key. A music
checkpoint trained with measured attributes (`cinematic.data.attributes`) is conditioned on key, mode and
tempo as well; in every case the key is imposed by the decoding constraint and the tempo by the beat grid
the material is placed on, so older checkpoints (emotion/genre/scene only) keep both too.

Everything depends only on the inputs and the seed: the same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinematic.checkpoint_io import read_checkpoint
from cinematic.data.syllables import LyricLine, parse_lyrics, read_lyrics
from cinematic.errors import UserError
from cinematic.generation.melody import (
    BEATS_PER_BAR,
    SINGER_RANGE,
    Key,
    SungLine,
    arrange_accompaniment,
    compose_melody,
    default_key,
    default_tempo,
    estimate_key,
    fit_melody,
    generate_material,
    melody_notes,
)
from cinematic.generation.mix import MixResult, mix_song
from cinematic.generation.singing import TIMBRE_STRENGTH

SAMPLE_RATE = 44100
STAGES = ("lyrics", "melody", "vocals", "accompaniment", "mix")
DEFAULT_STRUCTURE = "verse,chorus,chorus"
STRONG_EMOTIONS = frozenset({"epic", "triumphant", "tense"})
"""Emotions whose accompaniment is played by strings (GM 48); the others by a piano (GM 0)."""


@dataclass
class Song:
    """Everything a generated song is made of; `save` writes its files."""

    lines: list[SungLine]
    key: Key
    tempo: float
    accompaniment_notes: np.ndarray
    """(onset_s, offset_s, pitch, velocity) rows."""
    accompaniment_program: int
    total_bars: int
    mix: MixResult
    settings: dict[str, Any]
    """Checkpoints, labels, seed and sources: what song.json records besides the plan."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.mix.song.shape[1] / SAMPLE_RATE

    def record(self) -> dict[str, Any]:
        """The content of song.json: every choice that made the song."""
        sections: list[dict[str, Any]] = []
        for index, sung in enumerate(self.lines):
            if index == 0 or sung.line.part != self.lines[index - 1].line.part:
                sections.append({"name": sung.line.section, "lines": []})
            sections[-1]["lines"].append(
                {
                    "text": sung.line.text,
                    "syllables": list(sung.line.syllables),
                    "start_bar": sung.start_bar,
                    "bars": sung.bars,
                    "reuses_melody_of_line": sung.reused_from,
                    "notes": [
                        {
                            "syllable": n.syllable,
                            "pitch": n.pitch,
                            "onset": round(n.onset, 4),
                            "duration": round(n.duration, 4),
                            "slur": n.slur,
                        }
                        for n in sung.notes
                    ],
                    "sung_syllable_onsets": [round(t, 4) for t in sung.syllable_onsets],
                }
            )
        return {
            **self.settings,
            "key": self.key.name,
            "tempo": self.tempo,
            "time_signature": f"{BEATS_PER_BAR}/4",
            "bars": self.total_bars,
            "duration_seconds": round(self.duration, 3),
            "sample_rate": SAMPLE_RATE,
            "sections": sections,
            "accompaniment": {
                "program": self.accompaniment_program,
                "notes": len(self.accompaniment_notes),
            },
            "mix": {
                "gains": {name: round(value, 8) for name, value in self.mix.gains.items()},
                "gains_note": "song.wav = gains.vocals * vocals.wav (mono, both channels) + "
                "gains.accompaniment * accompaniment.wav",
                "loudness_lufs": round(self.mix.loudness, 3),
                "peak_dbfs": round(self.mix.peak_db, 3),
                "limiter_reduction_db": round(self.mix.limiter_reduction_db, 3),
            },
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write song.wav (44.1 kHz stereo, 16-bit), vocals.wav, accompaniment.wav, song.mid, lyrics.lrc and
        song.json into `out_dir` (created); returns the paths."""
        import soundfile as sf

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("song.wav", "vocals.wav", "accompaniment.wav")}
        sf.write(str(paths["song.wav"]), self.mix.song.T, SAMPLE_RATE, subtype="PCM_16")
        sf.write(str(paths["vocals.wav"]), self.mix.vocals, SAMPLE_RATE, subtype="PCM_16")
        sf.write(str(paths["accompaniment.wav"]), self.mix.accompaniment.T, SAMPLE_RATE, subtype="PCM_16")
        midi = out / "song.mid"
        self.score().dump_midi(str(midi))
        lrc = out / "lyrics.lrc"
        lrc.write_text(self.lrc(), encoding="utf-8")
        record = out / "song.json"
        record.write_text(json.dumps(self.record(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return [*paths.values(), midi, lrc, record]

    def lrc(self) -> str:
        """One `[mm:ss.xx]text` line per sung line, at the onset of its first syllable's note."""
        rows = []
        for sung in self.lines:
            minutes, seconds = divmod(sung.onset, 60.0)
            centis = int(round(seconds * 100))
            if centis >= 6000:  # 59.996 s rounds up into the next minute
                minutes, centis = minutes + 1, centis - 6000
            rows.append(f"[{int(minutes):02d}:{centis // 100:02d}.{centis % 100:02d}]{sung.line.text}")
        return "\n".join(rows) + "\n"

    def score(self) -> Any:
        """The song as MIDI: track 0 the sung melody (with its syllables as lyric events), track 1 the
        accompaniment; tempo, 4/4 and the key signature in the header."""
        from symusic import KeySignature, Note, Score, Tempo, TextMeta, TimeSignature, Track

        tpq = 480
        ticks_per_second = tpq * self.tempo / 60.0

        def tick(seconds: float) -> int:
            return int(round(seconds * ticks_per_second))

        score = Score(tpq)
        score.tempos.append(Tempo(0, float(self.tempo)))
        score.time_signatures.append(TimeSignature(0, BEATS_PER_BAR, 4))
        sharps = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 5: -1, 10: -2, 3: -3, 8: -4, 1: -5}
        relative_major = (self.key.tonic + (3 if self.key.mode == "minor" else 0)) % 12
        score.key_signatures.append(KeySignature(0, sharps[relative_major], int(self.key.mode == "minor")))
        melody = Track(name="melody", program=52, is_drum=False)
        for note in melody_notes(self.lines):
            start = tick(note.onset)
            melody.notes.append(Note(start, max(tick(note.onset + note.duration) - start, 1), note.pitch, 90))
            if note.syllable:
                melody.lyrics.append(TextMeta(start, note.syllable))
        accompaniment = Track(name="accompaniment", program=self.accompaniment_program, is_drum=False)
        for onset, offset, pitch, velocity in self.accompaniment_notes:
            start = tick(onset)
            accompaniment.notes.append(Note(start, max(tick(offset) - start, 1), int(pitch), int(velocity)))
        score.tracks.append(melody)
        score.tracks.append(accompaniment)
        return score


class _Progress:
    """One line per stage (`song [2/5] melody ...`) and the seconds each took."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        if self.show:
            print(
                f"song [{STAGES.index(name) + 1}/{len(STAGES)}] {name}{' ' + detail if detail else ''}",
                flush=True,
            )
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start


def _load(checkpoint: str | Path | dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    if checkpoint is None:
        return None, None
    if isinstance(checkpoint, dict):
        return checkpoint, "<in memory>"
    return read_checkpoint(checkpoint), str(checkpoint)


class SongGenerator:
    """The three models of a song: music (melody and accompaniment), lyrics (optional when lyrics are
    given), and a singing model with its vocoder."""

    def __init__(
        self, music: Any, lyrics: Any, singer: Any, sources: dict[str, str | None] | None = None
    ) -> None:
        self.music = music
        self.lyrics = lyrics
        self.singer = singer
        self.sources = dict(sources or {})

    @classmethod
    def from_checkpoints(
        cls,
        music: str | Path | dict[str, Any],
        singer: str | Path | dict[str, Any],
        lyrics: str | Path | dict[str, Any] | None = None,
        vocoder: str | Path | dict[str, Any] | None = None,
        device: str = "cpu",
    ) -> SongGenerator:
        """Load the models from their checkpoints (paths or dicts); a checkpoint of the wrong kind is a
        `UserError` naming it. `vocoder`: a vocoder checkpoint, or "harmonic" (the singing model's
        source-filter renderer, exactly at the model's F0); default: the one the singing run recorded."""
        from cinematic.generation.music import MusicGenerator, is_audio_checkpoint
        from cinematic.generation.singing import HARMONIC, SingingSynthesizer

        music_ckpt, music_src = _load(music)
        if music_ckpt.get("task") != "music" or is_audio_checkpoint(music_ckpt):
            raise UserError(
                f"--music {music_src}: a symbolic music checkpoint is needed (this one is a "
                f"{music_ckpt.get('task')!r} {'audio-route ' if is_audio_checkpoint(music_ckpt) else ''}checkpoint)"
            )
        lyrics_model, lyrics_src = None, None
        if lyrics is not None:
            from cinematic.generation.lyrics import LyricsGenerator

            lyrics_ckpt, lyrics_src = _load(lyrics)
            if lyrics_ckpt.get("task") != "lyrics":
                raise UserError(
                    f"--lyrics {lyrics_src}: a {lyrics_ckpt.get('task')!r} checkpoint, not a lyrics one"
                )
            lyrics_model = LyricsGenerator.from_checkpoint(lyrics_ckpt, device=device)
        singer_ckpt, singer_src = _load(singer)
        if singer_ckpt.get("task") != "singing":
            raise UserError(
                f"--singer {singer_src}: a {singer_ckpt.get('task')!r} checkpoint, not a singing one"
            )
        vocoder_src = None if vocoder is None or isinstance(vocoder, dict) else str(vocoder)
        if isinstance(vocoder, str | Path) and str(vocoder) != HARMONIC:
            vocoder = read_checkpoint(vocoder)
        sources = {"music": music_src, "lyrics": lyrics_src, "singer": singer_src, "vocoder": vocoder_src}
        synth = SingingSynthesizer.from_checkpoint(
            singer_ckpt,
            device=device,
            vocoder=vocoder,
            checkpoint_path=None if isinstance(singer, dict) else singer,  # finds the recorded vocoder
        )
        return cls(MusicGenerator.from_checkpoint(music_ckpt, device=device), lyrics_model, synth, sources)

    def singer_range(self, singer: str | None) -> tuple[int, int]:
        """The pitch range the melody is written in: the singing model's for this singer when its checkpoint
        records one (`singer_ranges`: {singer: [lowest, highest] MIDI note}), else G3–D5."""
        ranges = getattr(self.singer, "singer_ranges", None)
        if ranges is None:
            ranges = (getattr(self.singer, "state", None) or {}).get("singer_ranges")
        if isinstance(ranges, dict):
            name = singer or (self.singer.singers[0] if self.singer.singers else None)
            if name in ranges:
                low, high = (int(v) for v in ranges[name])
                if high - low >= 11:  # at least an octave, or the melody cannot keep its pitch classes
                    return low, high
        return SINGER_RANGE

    # ----------------------------------------------------------------------------------------- stages

    def write_lyrics(
        self,
        language: str,
        emotion: str | None,
        genre: str | None,
        scene: str | None,
        structure: str,
        max_new_tokens: int,
        seed: int,
    ) -> str:
        """Lyrics from the GPT; a section that comes back (a second chorus) repeats its first text."""
        if self.lyrics is None:
            raise UserError("no lyrics checkpoint: give --lyrics CKPT, or your own text with --lyrics_file")
        sections = [s.strip() for s in structure.split(",") if s.strip()]
        first_seen = [s for i, s in enumerate(sections) if s not in sections[:i]]
        labels = self.lyrics.labels
        if language not in labels.get("language", []):
            raise UserError(
                f"--lyrics {self.sources.get('lyrics')}: the lyrics model has no language {language!r} "
                f"(it knows {', '.join(labels.get('language', []))}); choose one of them or give --lyrics_file"
            )
        emotion = emotion if emotion in labels.get("emotion", []) else None
        genre = genre if genre in labels.get("genre", []) else None
        text = self.lyrics.generate(
            language=language,
            emotion=emotion,
            genre=genre,
            scene=scene,
            structure=",".join(first_seen),
            max_new_tokens=max_new_tokens,
            top_k=40,
            seed=seed,
        )
        blocks: dict[str, list[str]] = {}
        current = None
        for row in text.split("\n"):
            name = row.strip()
            if name.startswith("[") and name.endswith("]") and name[1:-1] in sections:
                current = name[1:-1]
                blocks.setdefault(current, [])
            elif current is not None and row.strip():
                blocks[current].append(row.strip())
        return "\n".join(
            f"[{name}]\n" + "\n".join(blocks.get(name, [])) for name in sections if blocks.get(name)
        )

    def generate(
        self,
        language: str,
        emotion: str | None = None,
        genre: str | None = None,
        scene: str | None = None,
        key: str | None = None,
        tempo: float | None = None,
        lyrics_text: str | None = None,
        lyrics_file: str | Path | None = None,
        melody: str | Path | None = None,
        reference: str | Path | None = None,
        singer: str | None = None,
        timbre_strength: float = TIMBRE_STRENGTH,
        structure: str = DEFAULT_STRUCTURE,
        duration: float | None = None,
        max_new_tokens: int = 160,
        seed: int = 0,
        progress: bool = True,
    ) -> Song:
        """A song; see the module docstring for the stages. `lyrics_text`/`lyrics_file` replace generated
        lyrics, `melody` (a .mid/.midi/.musicxml/.mxl/.xml file) the generated melody; `duration` (seconds)
        keeps the lines that end within it (at least one), and then
        the lyrics GPT writes at most 4 tokens per second of it (`max_new_tokens` otherwise). Bad inputs are `UserError`s naming the file and what to do."""
        steps = _Progress(progress)
        if key is not None:
            try:
                Key.parse(key)
            except UserError as err:
                raise UserError(f"--key: {err}") from None
        if language not in self.singer.languages:
            raise UserError(
                f"--singer {self.sources.get('singer')}: the singing model has no language {language!r} "
                f"(it sings {', '.join(self.singer.languages)}); choose one of those with --language"
            )
        if singer is not None and singer not in self.singer.singers:
            raise UserError(
                f"--singer {self.sources.get('singer')}: no singer {singer!r} (it has "
                f"{', '.join(self.singer.singers)})"
            )
        if tempo is not None and not 30 <= float(tempo) <= 300:
            raise UserError(f"--tempo {tempo}: give beats per minute between 30 and 300")
        if reference is not None and not Path(reference).is_file():
            raise UserError(f"--reference {reference}: no such file")
        labels = {"emotion": emotion, "genre": genre, "scene": scene}
        known = self.music.known_labels
        music_labels = {k: v for k, v in labels.items() if v is not None and v in known.get(k, [])}
        lyric_emotions = self.lyrics.labels.get("emotion", []) if self.lyrics is not None else []
        if emotion is not None and emotion not in known.get("emotion", []) and emotion not in lyric_emotions:
            raise UserError(
                f"--emotion {emotion!r}: neither model knows it (music {self.sources.get('music')}: "
                f"{', '.join(known.get('emotion', [])) or 'none'}; lyrics: {', '.join(lyric_emotions) or 'none'})"
            )

        with steps.stage("lyrics"):
            if lyrics_file is not None:
                lines = read_lyrics(lyrics_file, language)
                lyrics_source = str(lyrics_file)
            elif lyrics_text is not None:
                lines = parse_lyrics(lyrics_text, language, source="the lyrics text")
                lyrics_source = "text"
            else:
                budget = (
                    max_new_tokens if duration is None else min(max_new_tokens, max(48, int(4 * duration)))
                )
                text = self.write_lyrics(language, emotion, genre, scene, structure, budget, seed)
                lines = parse_lyrics(
                    text, language, source=f"the lyrics written by {self.sources.get('lyrics')}"
                )
                lyrics_source = "generated"
            if duration is not None and melody is None:
                lines = _lines_within(lines, duration, tempo or default_tempo(emotion))

        pitch_range = self.singer_range(singer)
        with steps.stage("melody", f"({len(lines)} lines, {sum(len(x.syllables) for x in lines)} syllables)"):
            sung, the_key, the_tempo, start_bar = self._melody(
                lines, melody, key, tempo, emotion, music_labels, pitch_range, seed
            )
        if duration is not None:
            bar = BEATS_PER_BAR * 60.0 / the_tempo
            fits = [s for s in sung if (s.start_bar + s.bars + 1) * bar + 1.0 <= duration]
            sung = sung[: max(1, len(fits))]
        total_bars = sung[-1].start_bar + sung[-1].bars + 1  # one bar of accompaniment after the last line
        bar_seconds = BEATS_PER_BAR * 60.0 / the_tempo

        with steps.stage("vocals"):
            audio = self.singer.sing(
                melody_notes(sung),
                language=language,
                singer=None if reference is not None else singer,
                reference=None if reference is None else Path(reference),
                seed=seed,
                timbre_strength=timbre_strength,
            )
            vocals = np.asarray(audio.wav, dtype=np.float64).reshape(-1)
            if audio.sample_rate != SAMPLE_RATE:
                from cinematic.data.audio import resample

                vocals = np.asarray(
                    resample(vocals.astype(np.float32), audio.sample_rate, SAMPLE_RATE), dtype=np.float64
                )
            onsets = list(audio.syllable_onsets)
            for line in sung:
                count = sum(1 for n in line.notes if not n.slur)
                line.syllable_onsets, onsets = [float(t) for t in onsets[:count]], onsets[count:]

        with steps.stage("accompaniment"):
            low = pitch_range[0]
            acc_range = (max(low - 19, 24), low + 4)
            # about four bars of material, repeated: ~40 tokens per second of music (the performance
            # encoding spends ~4 tokens per note), at least 256 so short songs still get a phrase
            material_seconds = min(total_bars, 4) * bar_seconds
            tokens = int(min(1024, max(256, 40 * material_seconds)))
            conditions = self.music_conditions(music_labels, the_key, the_tempo)
            material = generate_material(self.music, conditions, the_key, acc_range, tokens, seed + 1)
            acc_notes = arrange_accompaniment(material, the_tempo, total_bars)
            program = 48 if (emotion or "").lower() in STRONG_EMOTIONS else 0
            accompaniment = self._render(acc_notes, program, the_tempo)
            length = int(math.ceil(total_bars * bar_seconds * SAMPLE_RATE)) + SAMPLE_RATE
            length = max(length, len(vocals))
            accompaniment = np.pad(accompaniment, ((0, 0), (0, max(0, length - accompaniment.shape[1]))))[
                :, :length
            ]
            vocals = np.pad(vocals, (0, max(0, length - len(vocals))))[:length]

        with steps.stage("mix"):
            mixed = mix_song(vocals, accompaniment, SAMPLE_RATE)

        settings = {
            "checkpoints": dict(self.sources),
            "language": language,
            "labels": labels,
            "music_conditions": self.music_conditions(music_labels, the_key, the_tempo),
            "singer": None if reference is not None else (singer or (self.singer.singers or [None])[0]),
            "reference": None if reference is None else str(reference),
            "timbre_strength": None if reference is None else timbre_strength,
            "seed": seed,
            "lyrics_source": lyrics_source,
            "melody_source": str(melody) if melody is not None else "generated",
            "structure": structure if lyrics_source == "generated" else None,
            "singer_range": list(pitch_range),
            "melody_start_bar": start_bar,
        }
        song = Song(sung, the_key, float(the_tempo), acc_notes, program, total_bars, mixed, settings)
        song.timings = dict(steps.timings)
        return song

    def _melody(
        self,
        lines: list[LyricLine],
        melody: str | Path | None,
        key: str | None,
        tempo: float | None,
        emotion: str | None,
        music_labels: dict[str, str],
        pitch_range: tuple[int, int],
        seed: int,
    ) -> tuple[list[SungLine], Key, float, int]:
        if melody is not None:
            path = Path(melody)
            if not path.is_file():
                raise UserError(f"--melody {path}: no such file")
            notes = read_melody_notes(path)
            the_tempo = float(tempo) if tempo is not None else _file_tempo(path)
            sung = fit_melody(lines, notes, str(path), pitch_range, the_tempo)
            the_key = Key.parse(key) if key else _file_key(path)
            if the_key is None:
                the_key = estimate_key([n.pitch for n in notes], [n.duration * the_tempo / 60 for n in notes])
            return sung, the_key, the_tempo, 0
        the_key = Key.parse(key) if key else default_key(emotion, seed)
        the_tempo = float(tempo) if tempo is not None else float(default_tempo(emotion))
        syllables = sum(len(line.syllables) for line in lines)
        tokens = int(min(4096, max(256, 10 * syllables)))
        conditions = self.music_conditions(music_labels, the_key, the_tempo)
        material = generate_material(self.music, conditions, the_key, pitch_range, tokens, seed)
        return (
            compose_melody(lines, material, the_key, the_tempo, pitch_range, start_bar=1),
            the_key,
            the_tempo,
            1,
        )

    def music_conditions(self, labels: dict[str, str], key: Key, tempo: float) -> dict[str, Any]:
        """The music model's conditions: its known labels, plus key, mode and tempo (as their attribute
        values: "eb minor", the tempo's bucket) when the checkpoint was trained with those measured
        attributes (`cinematic.data.attributes`) and knows the value. Older checkpoints have none; in
        every case the key is imposed by the decoding constraint and the tempo by the beat grid."""
        from cinematic.data.attributes import resolve_labels

        conditions: dict[str, Any] = dict(labels)
        vocab = self.music.labels
        wanted = {"key": key.name.lower(), "mode": key.mode, "tempo": float(tempo)}
        resolved = resolve_labels(vocab, {name: value for name, value in wanted.items() if name in vocab})
        for name, value in resolved.items():
            if value in vocab[name][1:]:  # [0] is the null label
                conditions[name] = value
        return conditions

    def _render(self, notes: np.ndarray, program: int, tempo: float) -> np.ndarray:
        from cinematic.data.synth import render_audio
        from cinematic.data.tokenizers.midi import notes_to_score

        score = notes_to_score(notes)
        score.tracks[0].program = program
        audio = render_audio(score, SAMPLE_RATE)
        return np.zeros((2, SAMPLE_RATE)) if audio is None else np.asarray(audio, dtype=np.float64)


def _lines_within(lines: list[LyricLine], duration: float, tempo: float) -> list[LyricLine]:
    """The first lines that can fit in `duration` seconds (a lower bound on each line's bars: an eighth
    per syllable, a half note at the end and an eighth of rest); the melody trims exactly later."""
    bar = BEATS_PER_BAR * 60.0 / tempo
    bars = 2  # the intro bar and the closing bar
    kept = []
    for line in lines:
        bars += math.ceil((len(line.syllables) + 4) / (2 * BEATS_PER_BAR))
        if kept and bars * bar + 1.0 > duration:
            break
        kept.append(line)
    return kept


def read_melody_notes(path: Path) -> list[Any]:
    """The notes of a user's melody: `read_melody` (MIDI lyric events or MusicXML lyrics give the slurs of
    melismas), or for a file without lyrics its top voice, one note per onset (every note then takes a
    syllable). A file neither reader can read is a `UserError` naming it."""
    from cinematic.data.singing import SungNote, read_melody

    try:
        return read_melody(path)
    except UserError as lyric_error:
        suffix = path.suffix.lower()
        if suffix in (".mid", ".midi"):
            from cinematic.data.tokenizers.midi import PerformanceTokenizer, load_score

            rows = PerformanceTokenizer().normalize(load_score(path))
        elif suffix in (".musicxml", ".xml", ".mxl"):
            import music21

            try:
                flat = music21.converter.parse(str(path)).stripTies().flatten()
            except Exception:
                raise lyric_error from None
            tempo = 60.0 / 120.0  # seconds per quarter; the tempo is applied later from --tempo or 120
            rows = np.array(
                [
                    (
                        float(n.offset) * tempo,
                        float(n.offset + n.quarterLength) * tempo,
                        max(p.midi for p in n.pitches),
                        80,
                    )
                    for n in flat.notes
                ],
                dtype=np.float64,
            ).reshape(-1, 4)
        else:
            raise
        if len(rows) == 0:
            raise UserError(f"--melody {path}: it has no notes") from None
        top = []
        for onset in np.unique(rows[:, 0]):
            at = rows[rows[:, 0] == onset]
            best = at[np.argmax(at[:, 2])]
            top.append(SungNote("", int(best[2]), float(best[0]), float(best[1] - best[0])))
        for i in range(len(top) - 1):  # one voice: a note ends where the next begins
            if top[i].onset + top[i].duration > top[i + 1].onset:
                top[i] = SungNote("", top[i].pitch, top[i].onset, top[i + 1].onset - top[i].onset)
        return top


def _file_key(path: Path) -> Key | None:
    """The first key signature of a MIDI file (None for other files or a MIDI file without one)."""
    if path.suffix.lower() not in (".mid", ".midi"):
        return None
    from cinematic.data.tokenizers.midi import load_score

    signatures = load_score(path).key_signatures
    if not len(signatures):
        return None
    major = (7 * int(signatures[0].key)) % 12  # sharps (negative: flats) -> the major tonic
    minor = bool(signatures[0].tonality)
    return Key((major - 3) % 12 if minor else major, "minor" if minor else "major")


def _file_tempo(path: Path) -> float:
    """The first tempo of a MIDI file (120 for other files or a MIDI file without one)."""
    if path.suffix.lower() in (".mid", ".midi"):
        from cinematic.data.tokenizers.midi import load_score

        tempos = load_score(path).tempos
        if len(tempos):
            return float(tempos[0].qpm)
    return 120.0


# ------------------------------------------------------------------------------------------------ command


def song_command(args: argparse.Namespace) -> int:
    """`cinematic generate song` (its flags are defined in `cinematic.cli`)."""
    if args.lyrics is None and args.lyrics_file is None:
        raise UserError("give --lyrics CKPT (a lyrics model) or --lyrics_file F (your own lyrics)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file; give a folder for the song's files")
    generator = SongGenerator.from_checkpoints(
        music=args.music,
        singer=args.singer,
        lyrics=args.lyrics if args.lyrics_file is None else None,
        vocoder=args.vocoder,
        device=args.device,
    )
    song = generator.generate(
        language=args.language,
        emotion=args.emotion,
        genre=args.genre,
        scene=args.scene,
        key=args.key,
        tempo=args.tempo,
        lyrics_file=args.lyrics_file,
        melody=args.melody,
        reference=args.reference,
        timbre_strength=args.timbre_strength,
        singer=args.singer_name,
        structure=args.structure,
        duration=args.duration,
        seed=args.seed,
    )
    paths = song.save(out)
    print(
        f"wrote {out}/ ({song.duration:.1f} s, {song.key.name}, {song.tempo:g} bpm, "
        f"{len(song.lines)} lines): " + ", ".join(p.name for p in paths)
    )
    return 0
