"""The song pipeline: melody under lyric constraints, accompaniment, mix, and the files of a song."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cinematic.data.singing import SungNote
from cinematic.data.syllables import parse_lyrics
from cinematic.errors import UserError
from cinematic.generation.melody import (
    Key,
    arrange_accompaniment,
    compose_melody,
    default_key,
    fit_melody,
    generate_material,
)
from cinematic.generation.mix import limiter_gain, loudness, mix_song

REPO_ROOT = Path(__file__).resolve().parents[2]
MUSIC = REPO_ROOT / "tests" / "fixtures" / "v1" / "music" / "checkpoints" / "best.pth"
LYRICS = REPO_ROOT / "tests" / "fixtures" / "v1" / "lyrics" / "checkpoints" / "best.pth"
TEXT = """[verse]
Under the water the lanterns glow
Nobody listens, the rivers flow
[chorus]
Hold on, hold on to the light
Sing me home tonight
[chorus]
Hold on, hold on to the light
Sing me home tonight
"""


@pytest.fixture(scope="module")
def music():
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.generation.music import MusicGenerator

    return MusicGenerator.from_checkpoint(read_checkpoint(MUSIC))


# --------------------------------------------------------------------------------------------- melody


def test_keys_parse_and_default_by_emotion():
    assert Key.parse("d minor") == Key(2, "minor") == Key.parse("Dm")
    assert Key.parse("Bb") == Key(10, "major")
    assert Key.parse("F# major").pitch_classes == frozenset({6, 8, 10, 11, 1, 3, 5})
    assert default_key("sad", 0).mode == "minor" and default_key("triumphant", 0).mode == "major"
    with pytest.raises(UserError, match="H major"):
        Key.parse("H major")


def test_decoding_constraint_keeps_every_note_in_key_and_range(music):
    key = Key.parse("e minor")
    notes = generate_material(music, {"emotion": "sad"}, key, (57, 72), length=200, seed=3)
    assert len(notes) > 5
    assert set(notes[:, 2].astype(int) % 12) <= key.pitch_classes
    assert notes[:, 2].min() >= 57 and notes[:, 2].max() <= 72


def test_melody_follows_the_lyric_constraints(music):
    key, tempo, low, high = Key.parse("g major"), 100.0, 55, 74
    lines = parse_lyrics(TEXT, "en")
    material = generate_material(music, {"emotion": "peaceful"}, key, (low, high), length=300, seed=0)
    sung = compose_melody(lines, material, key, tempo, (low, high), start_bar=1)
    eighth, bar = 30.0 / tempo, 8 * 30.0 / tempo
    assert [s.line for s in sung] == lines
    for index, s in enumerate(sung):
        syllable_notes = [n for n in s.notes if not n.slur]
        assert [n.syllable for n in syllable_notes] == list(s.line.syllables)  # one note (or more) each
        assert s.notes[0].onset == pytest.approx(s.start_bar * bar)  # lines start on a bar line
        for n in s.notes:
            assert low <= n.pitch <= high and n.pitch % 12 in key.pitch_classes
            assert (n.onset / eighth) == pytest.approx(round(n.onset / eighth))  # on the eighth grid
        last = s.notes[-1]
        assert last.duration >= 4 * eighth - 1e-9  # the phrase ends on a long note ...
        assert last.pitch % 12 in key.triad  # ... of the tonic triad
        following = sung[index + 1].notes[0].onset if index + 1 < len(sung) else float("inf")
        assert following - (last.onset + last.duration) >= eighth - 1e-9  # ... and a rest
        # notes of one line never overlap
        ends = [n.onset + n.duration for n in s.notes]
        assert all(e <= nxt.onset + 1e-9 for e, nxt in zip(ends, s.notes[1:], strict=False))
    # the second chorus sings the first chorus's melody
    first, second = sung[2:4], sung[4:6]
    for a, b in zip(first, second, strict=True):
        assert b.reused_from == sung.index(a)
        shift = b.notes[0].onset - a.notes[0].onset
        assert [(n.pitch, n.duration, n.slur) for n in a.notes] == [
            (n.pitch, n.duration, n.slur) for n in b.notes
        ]
        assert [n.onset + shift for n in a.notes] == pytest.approx([n.onset for n in b.notes])


def test_melismas_are_slurred_notes_of_one_syllable(music):
    key = Key.parse("c major")
    lines = parse_lyrics(
        "".join(f"la la la la la la la la la la la la la la la {i}\n" for i in range(3)), "en"
    )
    # material with fast ornaments: pairs of onsets 0.05 s apart
    rows = []
    for i in range(60):
        t = i * 0.6
        rows += [(t, t + 0.05, 60 + (i % 5), 80), (t + 0.05, t + 0.5, 64, 80)]
    sung = compose_melody(lines, np.array(rows, dtype=float), key, 120.0)
    slurs = [n for s in sung for n in s.notes if n.slur]
    assert slurs and all(n.syllable == "" for n in slurs)
    assert len(slurs) <= 0.2 * sum(len(line.syllables) for line in lines) + 1


def test_user_melody_with_too_few_notes_names_the_file():
    lines = parse_lyrics("one two three four", "en")
    melody = [SungNote("", 60 + i, i * 0.5, 0.5) for i in range(3)]
    with pytest.raises(UserError, match=r"my\.mid.*3 notes for 4 syllables"):
        fit_melody(lines, melody, "my.mid")


def test_user_melody_keeps_rhythm_and_intervals_and_slurs_continue_syllables():
    lines = parse_lyrics("one two\nthree", "en")
    melody = [
        SungNote("", 40, 0.0, 0.5),
        SungNote("", 42, 0.5, 0.5),
        SungNote("", 44, 1.0, 0.5, slur=True),
        SungNote("", 45, 2.0, 1.0),
        SungNote("", 47, 3.0, 1.0),  # after the last syllable: left out
    ]
    sung = fit_melody(lines, melody, "tune.mid", (55, 74), tempo=120)
    notes = [n for s in sung for n in s.notes]
    assert [(n.syllable, n.slur) for n in notes] == [
        ("one", False),
        ("two", False),
        ("", True),
        ("three", False),
    ]
    assert [n.pitch - notes[0].pitch for n in notes] == [0, 2, 4, 5]  # moved by octaves only
    assert (notes[0].pitch - 40) % 12 == 0 and 55 <= np.median([n.pitch for n in notes]) <= 74
    assert [n.onset for n in notes] == [0.0, 0.5, 1.0, 2.0]


def test_accompaniment_sits_on_the_sixteenth_grid_and_covers_the_song():
    tempo, bars = 90.0, 6
    sixteenth = 15.0 / tempo
    rng = np.random.default_rng(0)
    onsets = np.sort(rng.uniform(0, 5.0, 40))
    material = np.stack(
        [onsets, onsets + rng.uniform(0.05, 0.8, 40), rng.integers(40, 60, 40), np.full(40, 70)], 1
    )
    notes = arrange_accompaniment(material, tempo, bars)
    end = bars * 16 * sixteenth
    assert np.allclose(notes[:, 0] / sixteenth, np.round(notes[:, 0] / sixteenth))
    assert (
        notes[:, 1].max() <= end + 1e-9 and notes[:, 0].max() >= end - 16 * sixteenth
    )  # reaches the last bar
    assert np.all(notes[:, 1] > notes[:, 0])


# ------------------------------------------------------------------------------------------------ mix


def test_limiter_gain_never_lets_a_sample_over_the_ceiling():
    rng = np.random.default_rng(1)
    audio = np.clip(rng.normal(0, 0.08, (2, 44100)), -0.45, 0.45)
    audio[:, 20000:20010] = 3.0
    gain = limiter_gain(audio, 44100, 0.5)
    assert np.abs(audio * gain).max() <= 0.5 + 1e-12
    assert gain.max() <= 1.0 and gain[:1000].min() == 1.0  # untouched far from the peak
    assert np.abs(np.diff(gain)).max() < 0.05  # no steps


def test_mix_is_at_minus_14_lufs_never_clips_and_the_stems_sum_to_it():
    sr = 44100
    t = np.arange(4 * sr) / sr
    vocals = 0.05 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    accompaniment = np.stack([0.8 * np.sin(2 * np.pi * 110 * t), 0.7 * np.sin(2 * np.pi * 165 * t)])
    accompaniment[:, sr : sr + 50] = 1.0  # a transient the limiter has to catch
    result = mix_song(vocals, accompaniment, sr)
    assert result.loudness == pytest.approx(-14.0, abs=0.3)
    assert result.peak_db <= -1.0 + 1e-6
    rebuilt = (
        result.gains["vocals"] * result.vocals[None, :] + result.gains["accompaniment"] * result.accompaniment
    )
    assert np.abs(rebuilt - result.song).max() < 1e-5
    # the vocal sits 2 dB above the accompaniment, whatever level it came in at
    v = loudness(result.gains["vocals"] * np.stack([result.vocals, result.vocals]), sr)  # in both channels
    a = loudness(result.gains["accompaniment"] * result.accompaniment, sr)
    assert v - a == pytest.approx(2.0, abs=0.3)


# ------------------------------------------------------------------------------ the whole song (real models)

SONG_TEXT = """[verse]
Under the water the lanterns glow
[chorus]
Sing me home tonight
[chorus]
Sing me home tonight
"""


@pytest.fixture(scope="module")
def singing_checkpoint(tmp_path_factory):
    """An untrained tiny singing checkpoint, as the trainer writes one (weights and task state): trained
    singing is tested in tests/tasks/test_singing.py; here the pipeline around the singer is, and F0 as a
    residual over the note pitch sings the melody from the start."""
    from dataclasses import asdict

    import torch

    from cinematic.configs.model_config import MelConfig
    from cinematic.data.singing import REST, phonemize_notes
    from cinematic.data.tokenizers.phonemes import SPECIAL, TextFrontEnd
    from cinematic.models.singing import XiaoiceSing, XiaoiceSingConfig

    front = TextFrontEnd("phonemes")
    notes = [
        SungNote(s, 60, i, 1) for line in parse_lyrics(SONG_TEXT, "en") for i, s in enumerate(line.syllables)
    ]
    symbols = [*SPECIAL, *sorted({REST} | {p for ph in phonemize_notes(notes, "en", front) for p in ph})]
    torch.manual_seed(0)
    cfg = XiaoiceSingConfig(
        n_symbols=len(symbols), n_languages=2, embed_dim=32, num_heads=2, encoder_num_layers=1,
        decoder_num_layers=1, conv_filter_size=64, variance_filter_size=32, num_speakers=2,
    )  # fmt: skip
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
    path = tmp_path_factory.mktemp("singer") / "best.pth"
    model = {"singer": XiaoiceSing(cfg).state_dict()}
    torch.save({"task": "singing", "model": model, "ema": {}, "task_state": state}, path)
    return path


def _generate(args: list[str]) -> int:
    from cinematic.cli import main

    return main(["generate", "song", *args])


@pytest.fixture(scope="module")
def song_dir(singing_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("song")
    lyrics = root / "lyrics.txt"
    lyrics.write_text(SONG_TEXT, encoding="utf-8")
    common = ["--music", str(MUSIC), "--singer", str(singing_checkpoint), "--vocoder", "harmonic"]
    common += [
        "--language",
        "en",
        "--emotion",
        "sad",
        "--lyrics_file",
        str(lyrics),
        "--seed",
        "3",
        "--tempo",
        "120",
    ]
    assert _generate([*common, "--out", str(root / "a")]) == 0
    # the same song from Python
    from cinematic.api import generate_song

    song = generate_song(
        str(MUSIC), str(singing_checkpoint), language="en", emotion="sad", vocoder="harmonic",
        lyrics_file=str(lyrics), seed=3, tempo=120.0, out=root / "b", progress=False,
    )  # fmt: skip
    assert len(song.lines) == 3 and set(song.timings) == {
        "lyrics",
        "melody",
        "vocals",
        "accompaniment",
        "mix",
    }
    return root


def _song_json(folder: Path) -> dict:
    import json

    return json.loads((folder / "song.json").read_text(encoding="utf-8"))


def test_same_seed_gives_byte_identical_song_files_from_the_command_and_from_python(song_dir):
    names = ["song.wav", "vocals.wav", "accompaniment.wav", "song.mid", "lyrics.lrc", "song.json"]
    for name in names:
        assert (song_dir / "a" / name).read_bytes() == (song_dir / "b" / name).read_bytes(), name


def test_lrc_lines_are_the_lyric_lines_at_their_first_syllable(song_dir):
    record = _song_json(song_dir / "a")
    sung = [line for section in record["sections"] for line in section["lines"]]
    expected = [line for line in SONG_TEXT.splitlines() if line and not line.startswith("[")]
    rows = (song_dir / "a" / "lyrics.lrc").read_text(encoding="utf-8").splitlines()
    assert [row[10:] for row in rows] == expected == [line["text"] for line in sung]
    for row, line in zip(rows, sung, strict=True):
        minutes, seconds = int(row[1:3]), float(row[4:9])
        assert 60 * minutes + seconds == pytest.approx(line["notes"][0]["onset"], abs=0.006)
        assert line["sung_syllable_onsets"][0] == pytest.approx(60 * minutes + seconds, abs=0.03)
    assert [s["name"] for s in record["sections"]] == ["verse", "chorus", "chorus"]
    assert sung[2]["reuses_melody_of_line"] == 1


def test_each_syllable_starts_within_30_ms_of_its_note(song_dir):
    record = _song_json(song_dir / "a")
    for section in record["sections"]:
        for line in section["lines"]:
            onsets = [n["onset"] for n in line["notes"] if not n["slur"]]
            assert len(line["sung_syllable_onsets"]) == len(onsets) == len(line["syllables"])
            assert np.abs(np.array(line["sung_syllable_onsets"]) - onsets).max() <= 0.030


def test_the_sung_vocal_follows_the_melody(song_dir):
    import parselmouth
    import soundfile as sf

    wav, sr = sf.read(song_dir / "a" / "vocals.wav")
    pitch = parselmouth.Sound(wav, sr).to_pitch_ac(time_step=0.01, pitch_floor=75.0, pitch_ceiling=800.0)
    f0 = pitch.selected_array["frequency"]
    times = np.asarray(pitch.xs())
    notes = [n for s in _song_json(song_dir / "a")["sections"] for line in s["lines"] for n in line["notes"]]
    cents, voiced, total = [], 0, 0
    for n in notes:
        inside = (times >= n["onset"]) & (times < n["onset"] + n["duration"])
        total += int(inside.sum())
        hz = f0[inside & (f0 > 0)]
        voiced += len(hz)
        cents.extend(np.abs(1200 * np.log2(hz / (440 * 2 ** ((n["pitch"] - 69) / 12)))))
    assert voiced >= 0.7 * total
    assert np.median(cents) <= 50


def test_mix_is_minus_14_lufs_without_clipping_and_stems_at_gains_give_the_song(song_dir):
    import soundfile as sf

    song, sr = sf.read(song_dir / "a" / "song.wav", dtype="float32")
    vocals, _ = sf.read(song_dir / "a" / "vocals.wav", dtype="float32")
    accompaniment, _ = sf.read(song_dir / "a" / "accompaniment.wav", dtype="float32")
    assert sr == 44100 and song.ndim == 2 and song.shape[1] == 2
    assert loudness(song.T, sr) == pytest.approx(-14.0, abs=1.0)
    assert np.abs(song).max() <= 10 ** (-1 / 20) + 1e-4
    gains = _song_json(song_dir / "a")["mix"]["gains"]
    rebuilt = gains["vocals"] * vocals[:, None] + gains["accompaniment"] * accompaniment
    assert np.abs(rebuilt - song).max() <= 2 / 32768


def test_song_midi_has_the_melody_first_then_the_accompaniment(song_dir):
    from symusic import Score

    score = Score(str(song_dir / "a" / "song.mid"))
    record = _song_json(song_dir / "a")
    melody = [n["pitch"] for s in record["sections"] for line in s["lines"] for n in line["notes"]]
    assert [n.pitch for n in score.tracks[0].notes] == melody
    assert [t.name for t in score.tracks if len(t.notes)] == ["melody", "accompaniment"]
    syllables = [s for section in record["sections"] for line in section["lines"] for s in line["syllables"]]
    assert [text.text for t in score.tracks for text in t.lyrics] == syllables
    assert score.tempos[0].qpm == pytest.approx(record["tempo"])


def test_song_midi_read_back_as_a_melody_gives_the_same_notes_key_and_tempo(song_dir):
    from cinematic.generation.song import _file_key, _file_tempo, read_melody_notes

    record = _song_json(song_dir / "a")
    midi = song_dir / "a" / "song.mid"
    sung = fit_melody(
        parse_lyrics(SONG_TEXT, "en"), read_melody_notes(midi), str(midi), tempo=record["tempo"]
    )
    notes = [
        (n["syllable"], n["pitch"], n["onset"], n["slur"])
        for s in record["sections"]
        for line in s["lines"]
        for n in line["notes"]
    ]
    again = [(n.syllable, n.pitch, round(n.onset, 4), n.slur) for line in sung for n in line.notes]
    assert again == notes
    assert _file_key(midi).name == record["key"] and _file_tempo(midi) == record["tempo"]


@pytest.mark.parametrize("problem", ["empty_lyrics", "language", "short_melody"])
def test_bad_song_inputs_exit_2_naming_the_file(problem, singing_checkpoint, tmp_path, capsys):
    from symusic import Note, Score, Track

    lyrics = tmp_path / "words.txt"
    lyrics.write_text("" if problem == "empty_lyrics" else SONG_TEXT, encoding="utf-8")
    args = ["--music", str(MUSIC), "--singer", str(singing_checkpoint), "--vocoder", "harmonic"]
    args += ["--emotion", "sad", "--lyrics_file", str(lyrics), "--out", str(tmp_path / "out")]
    args += ["--language", "de" if problem == "language" else "en"]
    if problem == "short_melody":
        score = Score(480)
        track = Track(name="tune")
        track.notes.extend([Note(i * 480, 480, 60 + i, 80) for i in range(3)])
        score.tracks.append(track)
        score.dump_midi(str(tmp_path / "tune.mid"))
        args += ["--melody", str(tmp_path / "tune.mid")]
    assert _generate(args) == 2
    message = capsys.readouterr().err
    named = {"empty_lyrics": "words.txt", "language": str(singing_checkpoint), "short_melody": "tune.mid"}
    assert named[problem] in message
    assert not (tmp_path / "out" / "song.wav").exists()


def test_key_and_tempo_become_music_conditions_when_the_checkpoint_knows_them():
    from types import SimpleNamespace

    from cinematic.generation.song import SongGenerator

    vocab = {
        "emotion": ["<none>", "sad"],
        "key": ["<none>", "eb minor", "c major"],
        "tempo": ["<none>", "moderate"],
    }
    songs = SongGenerator(SimpleNamespace(labels=vocab), None, None)
    conditions = songs.music_conditions({"emotion": "sad"}, Key.parse("Eb minor"), 84)
    assert conditions == {"emotion": "sad", "key": "eb minor", "tempo": "moderate"}
    # a value the checkpoint never saw is left out (its vocabulary would refuse it)
    assert songs.music_conditions({}, Key.parse("D major"), 200) == {}
    labels_only = SongGenerator(SimpleNamespace(labels={"emotion": ["<none>", "sad"]}), None, None)
    assert labels_only.music_conditions({"emotion": "sad"}, Key.parse("Eb minor"), 84) == {"emotion": "sad"}


def test_reference_clip_and_its_timbre_strength_reach_the_vocals(song_dir, singing_checkpoint, tmp_path):
    """`generate song --reference CLIP --timbre_strength S` sings zero-shot like the clip; S = 0 is the
    singing model's own zero-shot voice, and song.json records both."""
    lyrics = song_dir / "lyrics.txt"
    reference = song_dir / "a" / "vocals.wav"  # any voice clip will do
    common = ["--music", str(MUSIC), "--singer", str(singing_checkpoint), "--vocoder", "harmonic"]
    common += ["--language", "en", "--emotion", "sad", "--lyrics_file", str(lyrics), "--seed", "3"]
    common += ["--tempo", "120", "--reference", str(reference)]
    assert _generate([*common, "--out", str(tmp_path / "model"), "--timbre_strength", "0"]) == 0
    assert _generate([*common, "--out", str(tmp_path / "timbre")]) == 0
    model, timbre = _song_json(tmp_path / "model"), _song_json(tmp_path / "timbre")
    assert (model["reference"], model["timbre_strength"], model["singer"]) == (str(reference), 0.0, None)
    assert timbre["timbre_strength"] == 1.0
    assert (tmp_path / "model" / "vocals.wav").read_bytes() != (
        tmp_path / "timbre" / "vocals.wav"
    ).read_bytes()
    assert (tmp_path / "model" / "song.mid").read_bytes() == (tmp_path / "timbre" / "song.mid").read_bytes()
