"""Music corpus layouts (`cinematic.data.corpora`) on small fakes of EMOPIA, MAESTRO v3 and Lakh MIDI that
the tests write: detection, labels, splits, and the bad inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cinematic.data.corpora import EMOPIA_EMOTIONS, discover_music_corpus, split_positions
from cinematic.data.tokenizers.midi import notes_to_score
from cinematic.errors import UserError


def _midi(path: Path, pitch: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notes_to_score(np.array([[0.0, 0.4, pitch, 80], [0.5, 0.9, pitch + 4, 80]])).dump_midi(str(path))
    return path


def test_emopia_labels_from_label_csv_and_file_names_with_its_split_files(tmp_path):
    root = tmp_path / "EMOPIA_1.0"
    clips = ["Q1__8v0MFBZoco_0", "Q2_abc_1", "Q3_def_0", "Q4_ghi_2"]
    for i, clip in enumerate(clips):
        _midi(root / "midis" / f"{clip}.mid", 60 + i)
    # label.csv says Q3 for the clip whose name says Q4: the CSV (the annotation) wins
    (root / "label.csv").write_text(
        "ID,4Q,annotator\nQ1__8v0MFBZoco_0,1,a\nQ2_abc_1,2,b\nQ3_def_0,3,c\nQ4_ghi_2,3,d\n"
    )
    (root / "split").mkdir()
    (root / "split" / "train_clip.csv").write_text(",clip_name\n0,Q1__8v0MFBZoco_0.mid\n1,Q2_abc_1.mid\n")
    (root / "split" / "val_clip.csv").write_text(",clip_name\n0,Q3_def_0.mid\n")
    (root / "split" / "test_clip.csv").write_text(",clip_name\n0,Q4_ghi_2.mid\n")

    corpus = discover_music_corpus(root)
    assert corpus.layout == "emopia" and len(corpus.items) == 4
    by_stem = {item.path.stem: item for item in corpus.items}
    assert by_stem["Q1__8v0MFBZoco_0"].labels == {"emotion": "triumphant", "quadrant": "Q1"}
    assert by_stem["Q2_abc_1"].labels["emotion"] == "tense"
    assert by_stem["Q4_ghi_2"].labels == {"emotion": "sad", "quadrant": "Q3"}
    assert [by_stem[c].split for c in clips] == ["train", "train", "validation", "test"]
    train, val = split_positions(corpus.items, [0] * 4, 0.5, seed=0)
    assert [corpus.items[i].path.stem for i in train] == clips[:2]
    assert [corpus.items[i].path.stem for i in val] == clips[2:3]  # test is never trained on

    # the midis/ folder alone (no label.csv beside it) also reads as EMOPIA, labels from the names
    bare = tmp_path / "bare"
    _midi(bare / "Q4_xyz_0.mid")
    _midi(bare / "Q2_xyz_1.mid")
    (bare / "Q2_xyz_1.json").write_text(json.dumps({"genre": "pop", "emotion": "epic"}))  # sidecar wins
    corpus = discover_music_corpus(bare)
    assert corpus.layout == "emopia" and not corpus.has_split
    assert [i.labels for i in corpus.items] == [
        {"emotion": "epic", "quadrant": "Q2", "genre": "pop"},
        {"emotion": EMOPIA_EMOTIONS["Q4"], "quadrant": "Q4"},
    ]


def test_maestro_csv_and_json_give_the_official_split_and_the_composer(tmp_path, caplog):
    root = tmp_path / "maestro-v3.0.0"
    rows = [
        ("Frédéric Chopin", "Ballade", "train", "2018/a.midi"),
        ("Johann Sebastian Bach", "Prelude, BWV 846", "validation", "2018/b.midi"),
        ("Franz Schubert", "Sonata", "test", "2017/c.midi"),
        ("Claude Debussy", "Clair", "train", "2017/missing.midi"),
    ]
    for _, _, _, name in rows[:3]:
        _midi(root / name)
    (root / "2018" / "a.wav").write_bytes(b"")  # the audio route reads audio_filename
    lines = ["canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration"]
    lines += [f'{c},"{t}",{s},{f[:4]},{f},{f.replace(".midi", ".wav")},1.0' for c, t, s, f in rows]
    (root / "maestro-v3.0.0.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        corpus = discover_music_corpus(root)
    assert "1 MIDI file(s) it lists are not in" in caplog.text
    assert corpus.layout == "maestro"
    midis = corpus.of_kind("midi")
    assert [(i.path.name, i.split, i.labels["composer"]) for i in midis] == [
        ("c.midi", "test", "Franz Schubert"),
        ("a.midi", "train", "Frédéric Chopin"),
        ("b.midi", "validation", "Johann Sebastian Bach"),
    ]
    assert midis[2].labels["title"] == "Prelude, BWV 846" and midis[1].labels["year"] == "2018"
    assert [(i.path.name, i.split) for i in corpus.of_kind("audio")] == [("a.wav", "train")]

    # the JSON form of v3 (columns of {row index: value}) reads the same
    (root / "maestro-v3.0.0.csv").unlink()
    columns = ("canonical_composer", "canonical_title", "split", "midi_filename")
    table = {c: {str(i): row[k] for i, row in enumerate(rows)} for k, c in enumerate(columns)}
    (root / "maestro-v3.0.0.json").write_text(json.dumps(table))
    again = discover_music_corpus(root)
    assert [(i.path.name, i.split, i.labels["composer"]) for i in again.items] == [
        (i.path.name, i.split, i.labels["composer"]) for i in midis
    ]


def test_split_positions_caps_the_official_validation_and_falls_back_without_one(tmp_path):
    from cinematic.data.corpora import CorpusItem

    items = [
        CorpusItem(tmp_path / f"{i}.mid", "midi", {}, "validation" if i % 2 else "train") for i in range(10)
    ]
    train, val = split_positions(items, [0] * 10, 0.1, seed=3, max_val=2)
    assert train == [0, 2, 4, 6, 8] and len(val) == 2 and all(i % 2 for i in val)
    assert split_positions(items, [0] * 10, 0.1, seed=3, max_val=2) == (train, val)  # seeded
    only_train = [CorpusItem(tmp_path / f"{i}.mid", "midi", {}, "train") for i in range(10)]
    train, val = split_positions(only_train, [0] * 10, 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    unsplit = [CorpusItem(tmp_path / f"{i}.mid", "midi", {}) for i in range(10)]
    assert len(split_positions(unsplit, [0] * 10, 0.3, seed=0)[1]) == 3


def test_lakh_full_and_matched_layouts_read_each_file_once_without_labels(tmp_path):
    md5 = ["0a" + "1" * 30, "f3" + "2" * 30]
    full = tmp_path / "lmd_full"
    _midi(full / "0" / f"{md5[0]}.mid")
    _midi(full / "f" / f"{md5[1]}.mid")
    corpus = discover_music_corpus(full)
    assert corpus.layout == "lakh" and [i.path.stem for i in corpus.items] == md5
    assert all(i.labels == {} and i.split is None for i in corpus.items)
    assert discover_music_corpus(tmp_path).layout == "lakh"  # the folder that holds lmd_full

    # lmd_matched: A/B/C/<track>/<md5>.mid, one file listed under every track it matches
    matched = tmp_path / "other" / "lmd_matched"
    _midi(matched / "A" / "B" / "C" / "TRABCAA128F42359B5" / f"{md5[0]}.mid")
    _midi(matched / "A" / "B" / "D" / "TRABDAA128F42359B6" / f"{md5[0]}.mid")
    _midi(matched / "Z" / "Z" / "Z" / "TRZZZAA128F42359B7" / f"{md5[1]}.mid")
    corpus = discover_music_corpus(matched)
    assert corpus.layout == "lakh" and sorted(i.path.stem for i in corpus.items) == md5

    # a renamed lmd_full copy: hex-digit folders of <md5>.mid files
    renamed = tmp_path / "my_lakh"
    _midi(renamed / "0" / f"{md5[0]}.mid")
    assert discover_music_corpus(renamed).layout == "lakh"


def test_the_seed_layout_stays_the_default(tmp_path):
    _midi(tmp_path / "01_sad_piano.mid")
    (tmp_path / "01_sad_piano.json").write_text(json.dumps({"emotion": "sad"}))
    _midi(tmp_path / "sub" / "02.mid")
    corpus = discover_music_corpus(tmp_path)
    assert corpus.layout == "seed" and not corpus.has_split
    assert [(i.path.name, i.labels) for i in corpus.items] == [
        ("01_sad_piano.mid", {"emotion": "sad"}),
        ("02.mid", {}),
    ]


def test_bad_corpus_input_is_a_user_error_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="music folder not found"):
        discover_music_corpus(tmp_path / "nowhere")
    maestro = tmp_path / "maestro"
    maestro.mkdir()
    (maestro / "maestro-v3.0.0.csv").write_text("canonical_composer,midi_filename\nBach,a.midi\n")
    with pytest.raises(UserError, match=r"maestro-v3.0.0.csv: missing column\(s\) split"):
        discover_music_corpus(maestro)
    (maestro / "maestro-v3.0.0.csv").write_text("canonical_composer,split,midi_filename\nBach,train,a.midi\n")
    with pytest.raises(UserError, match="none of the files it lists"):
        discover_music_corpus(maestro)
    (maestro / "maestro-v3.0.0.csv").unlink()
    (maestro / "maestro-v3.0.0.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable MAESTRO JSON"):
        discover_music_corpus(maestro)
    emopia = tmp_path / "emopia"
    _midi(emopia / "midis" / "Q1_a_0.mid")
    (emopia / "label.csv").write_text("ID,4Q\nQ1_a_0,1\n")
    (emopia / "split").mkdir()
    (emopia / "split" / "train_clip.csv").write_text("name\nQ1_a_0.mid\n")
    with pytest.raises(UserError, match=r"train_clip.csv: missing column\(s\) clip_name"):
        discover_music_corpus(emopia)


def test_the_data_report_reads_music_in_its_corpus_layout(tmp_path):
    """`cinematic data report` counts EMOPIA's emotions (from the file names) and its split, which the
    seed-layout reader would not see."""
    from cinematic.data.report import collect_records

    root = tmp_path / "data" / "music"
    for clip in ("Q1_a_0", "Q1_b_0", "Q3_c_1"):
        _midi(root / "midis" / f"{clip}.mid")
    (root / "split").mkdir()
    (root / "split" / "train_clip.csv").write_text(",clip_name\n0,Q1_a_0.mid\n1,Q3_c_1.mid\n")
    (root / "split" / "val_clip.csv").write_text(",clip_name\n0,Q1_b_0.mid\n")
    records = collect_records(tmp_path / "data")["music"]
    assert sorted(r["emotion"] for r in records) == sorted(
        [EMOPIA_EMOTIONS["Q1"], EMOPIA_EMOTIONS["Q1"], EMOPIA_EMOTIONS["Q3"]]
    )
    assert sorted(r["split"] for r in records) == ["train", "train", "validation"]
