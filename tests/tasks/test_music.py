"""Music task (symbolic route): data, training through the trainer, checkpoint-only generation, the CLI,
label following with classifier-free guidance, and the representation dispatch to the audio route."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cinematic.data.tokenizers.midi import PerformanceTokenizer
from cinematic.errors import UserError
from cinematic.generation.music import MusicGenerator
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
from cinematic.tasks.music import (
    IGNORE_INDEX,
    MidiCropDataset,
    MidiSegmentDataset,
    MusicTask,
    choose_route,
    collate_tokens,
    resolve_representation,
)
from cinematic.training.task import BuildContext
from cinematic.utils import torch_threads

TOK = PerformanceTokenizer()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def music_dir(tmp_path_factory) -> Path:
    """The demo's 12 MIDI pieces with their JSON labels (no audio: rendering is not needed here)."""
    from cinematic.data.demo import music_pieces

    folder = tmp_path_factory.mktemp("music") / "music"
    folder.mkdir()
    for piece in music_pieces(0):
        piece.score.dump_midi(str(folder / f"{piece.stem}.mid"))
        (folder / f"{piece.stem}.json").write_text(json.dumps(piece.labels))
    return folder


def _tiny_cfg(work_dir: Path, steps: int = 6):
    from cinematic.configs import load_config

    cfg = load_config("tiny")
    cfg.training.work_dir = str(work_dir)
    cfg.training.max_steps = steps
    cfg.training.validate_every_steps = steps
    cfg.training.checkpoint_every_steps = steps
    cfg.training.validate_at_start = True
    cfg.music_model.max_seq_len = 64
    cfg.music_model.max_relative_position = 64
    cfg.music_model.num_layers = 1
    return cfg


@pytest.fixture(scope="session")
def trained(music_dir, tmp_path_factory):
    """One short trainer run on the demo MIDI files as `train_music.py` runs it (the route chosen from
    the folder → the MIDI family's one trainer run); session scope: the tests below share it."""
    from cinematic import registry
    from cinematic.training.trainer import run_training

    cfg = _tiny_cfg(tmp_path_factory.mktemp("work"))
    family = registry.routed(registry.get("music"), cfg, music_dir, None)
    assert family.name == "music" and family.recipe is None
    with torch_threads(1):  # session fixtures start before the module's one_thread fixture
        return run_training(family.task_instance(), cfg, music_dir)


# ------------------------------------------------------------------------------------------- data


def _section(**overrides):
    from cinematic.configs.model_config import MusicModelConfig

    return MusicModelConfig(**{"max_seq_len": 32, **overrides})


def test_training_crops_are_deterministic_per_epoch_and_index():
    pieces = [TOK.encode_notes(np.array([[i * 0.1, i * 0.1 + 0.3, 50 + i % 20, 80] for i in range(60)]))]
    data = MidiCropDataset(pieces, [np.array([1, 0, 2])], TOK, _section(), seed=7)
    assert len(data) == int(np.ceil((len(pieces[0]) + 1) / 32))
    first = data[0]["tokens"]
    assert len(first) == 33 and torch.equal(data[0]["tokens"], first)
    draws = set()
    for epoch in range(6):
        data.set_epoch(epoch)
        draws.add(tuple(data[0]["tokens"].tolist()))
    assert len(draws) > 1  # crops and augmentation change with the epoch
    data.set_epoch(0)
    assert torch.equal(data[0]["tokens"], first)  # ... and come back exactly (exact resume)
    assert data[0]["conditions"].tolist() == [1, 0, 2]


def test_augmentation_transposes_within_three_semitones_and_keeps_the_piano_range():
    notes = np.array([[i * 0.05, i * 0.05 + 0.1, 60 + i % 5, 80] for i in range(40)])
    data = MidiCropDataset(
        [TOK.encode_notes(notes)], [np.zeros(0, dtype=np.int64)], TOK, _section(max_seq_len=512), seed=0
    )
    shifts = set()
    for epoch in range(30):
        data.set_epoch(epoch)
        pitches = TOK.decode_notes(data[0]["tokens"].numpy())[:, 2]
        shifts.add(int(pitches.min()) - 60)
    assert shifts <= set(range(-3, 4)) and len(shifts) >= 4
    high = np.array([[0.0, 0.5, 107, 80]])  # a B7: only downward transpositions stay on the piano
    data = MidiCropDataset([TOK.encode_notes(high)], [np.zeros(0, dtype=np.int64)], TOK, _section(), seed=0)
    for epoch in range(20):
        data.set_epoch(epoch)
        assert TOK.decode_notes(data[0]["tokens"].numpy())[:, 2].max() <= 108


def test_validation_segments_count_every_token_once():
    piece = np.arange(3, 3 + 70)
    data = MidiSegmentDataset([piece], [np.zeros(0, dtype=np.int64)], TOK, seq_len=32)
    batch = collate_tokens([data[i] for i in range(len(data))])
    targets = batch["targets"][batch["targets"] != IGNORE_INDEX]
    assert targets.tolist() == [*piece.tolist(), TOK.eos_id]  # BOS is never a target, EOS is
    assert batch["inputs"].min() >= 0


def test_resume_reuses_the_checkpoint_label_vocabularies(music_dir, tiny_config, tmp_path):
    restored = {"labels": {"emotion": ["<none>", "calm", "epic"]}, "tokenizer": {"kind": "performance"}}
    ctx = BuildContext(
        run_dir=tmp_path, cache_dir=tmp_path / "cache", device=torch.device("cpu"), restored_state=restored
    )
    task = MusicTask()
    built = task.build(tiny_config, music_dir, ctx)
    assert task.labels == restored["labels"]
    assert built.models["music"].cfg.condition_sizes == (3,)
    assert any((tmp_path / "cache" / "music_tokens").glob("*.npy"))  # token cache written


def test_a_folder_without_midi_is_a_user_error(tmp_path, tiny_config):
    (tmp_path / "a.wav").write_bytes(b"")
    tiny_config.music_model.representation = "midi"
    ctx = BuildContext(run_dir=tmp_path, cache_dir=tmp_path / "cache", device=torch.device("cpu"))
    with pytest.raises(UserError, match="no MIDI files"):
        MusicTask().build(tiny_config, tmp_path, ctx)


def test_audio_folders_and_audio_checkpoints_route_to_the_audio_family(tmp_path, tiny_config):
    from cinematic import registry

    (tmp_path / "a.wav").write_bytes(b"")
    assert choose_route(tiny_config, tmp_path) == "music_audio"  # auto + audio only → the audio route
    assert tiny_config.music_model.representation == "audio"  # recorded for the checkpoint
    family = registry.routed(registry.get("music"), tiny_config, tmp_path, None)
    assert family.name == "music_audio" and family.recipe is not None
    (tmp_path / "b.mid").write_bytes(b"")
    tiny_config.music_model.representation = "auto"
    assert choose_route(tiny_config, tmp_path) == "music"  # MIDI wins in a mixed folder
    audio_checkpoint = {"task": "music", "task_state": {"representation": "audio"}}
    assert choose_route(tiny_config, tmp_path, audio_checkpoint) == "music_audio"  # a resume keeps its route
    assert registry.family_of_checkpoint(audio_checkpoint).name == "music_audio"
    assert registry.family_of_checkpoint({"task": "music", "task_state": {}}).name == "music"


# --------------------------------------------------------------------------- trainer end to end


def test_training_lowers_nll_and_stores_what_generation_needs(trained):
    assert trained.metrics_after["val/loss"] < trained.metrics_before["val/loss"]
    assert trained.metrics_after["val/nll_per_second"] > 0
    checkpoint = torch.load(trained.last_checkpoint, weights_only=True)
    state = checkpoint["task_state"]
    assert state["representation"] == "midi" and state["tokenizer"]["kind"] == "performance"
    assert checkpoint["config"]["music_model"]["representation"] == "midi"  # the route taken by "auto"
    assert state["labels"]["emotion"][0] == "<none>" and "epic" in state["labels"]["emotion"]
    assert any(name.endswith("relative_embeddings") for name in checkpoint["model"]["music"])
    assert list(trained.run_dir.glob("samples/**/*.mid"))  # the validation sample's MIDI file


def test_checkpoint_alone_generates_and_the_seed_fixes_the_output(trained):
    from cinematic import load

    music = load(trained.last_checkpoint)
    a = music.generate_tokens(emotion="epic", length=40, seed=3)
    b = music.generate_tokens(emotion="epic", length=40, seed=3)
    c = music.generate_tokens(emotion="epic", length=40, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    score = music.generate(emotion="sad", length=40, seed=0)
    assert type(score).__name__.startswith("Score")


def test_unknown_label_is_an_error_listing_the_known_ones(trained):
    from cinematic import load

    music = load(trained.last_checkpoint)
    with pytest.raises(UserError, match="unknown emotion 'joyful'.*epic.*sad"):
        music.generate(emotion="joyful", length=4)


def test_generate_command_writes_midi_and_wav_and_continues_a_primer(trained, tmp_path):
    import soundfile as sf

    from cinematic.cli import main

    primer = tmp_path / "primer.mid"
    TOK.decode(TOK.encode_notes(np.array([[0.0, 0.5, 60, 80], [0.5, 1.0, 64, 80]]))).dump_midi(str(primer))
    mid, wav = tmp_path / "out.mid", tmp_path / "out.wav"
    common = [
        "--checkpoint",
        str(trained.last_checkpoint),
        "--emotion",
        "epic",
        "--seed",
        "1",
        "--guidance",
        "2",
    ]
    assert (
        main(["generate", "music", *common, "--length", "60", "--primer", str(primer), "--out", str(mid)])
        == 0
    )
    notes = TOK.normalize(__import__("symusic").Score(str(mid)))
    assert notes[:2, 2].tolist() == [60, 64]  # the primer is kept at the start
    assert (
        main(["generate", "music", *common, "--length", "60", "--primer", str(primer), "--out", str(wav)])
        == 0
    )
    audio, rate = sf.read(str(wav))
    assert rate == 44100 and audio.ndim == 2 and np.abs(audio).max() > 0.01
    assert main(["generate", "music", *common, "--emotion", "joyful", "--out", str(mid)]) == 2


# ---------------------------------------------------------------- label following with guidance

PITCH_SETS = {1: (60, 64, 67), 2: (61, 65, 68), 3: (62, 66, 69)}


def _synthetic_sequence(rng: np.random.Generator, label: int, notes: int = 8) -> list[int]:
    out = [TOK.bos_id]
    for _ in range(notes):
        pitch = int(rng.choice(PITCH_SETS[label]))
        out += [TOK.note_on_offset + pitch, TOK.shift_offset + 9, TOK.note_off_offset + pitch]
    return out


def test_samples_follow_the_requested_emotion_with_guidance():
    """The emotion decides the pitch set; trained with condition dropout, sampled with guidance 2 and
    nucleus p = 0.9, a draw follows the label when every note is in that label's set."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = MusicTransformerConfig(
        vocab_size=TOK.vocab_size,
        num_layers=2,
        num_heads=2,
        embed_dim=32,
        ff_dim=64,
        dropout=0.0,
        max_relative_position=64,
        condition_sizes=(4,),
        condition_dropout=0.3,
    )
    model = MusicTransformer(cfg)
    steps = 300
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1, (s + 1) / 20) * max(0.05, 1 - s / steps)
    )
    for _ in range(steps):
        labels = rng.integers(1, 4, size=16)
        batch = torch.tensor([_synthetic_sequence(rng, int(label)) for label in labels])
        logits = model(batch[:, :-1], torch.from_numpy(labels).view(-1, 1))[:, 0]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    music = MusicGenerator(model, TOK, {"emotion": ["<none>", "a", "b", "c"]})
    followed = total = 0
    for label, name in ((1, "a"), (2, "b"), (3, "c")):
        for seed in range(12):
            score = music.generate(emotion=name, length=24, seed=seed, guidance=2.0, top_p=0.9)
            pitches = {note.pitch for note in score.tracks[0].notes}
            followed += bool(pitches) and pitches <= set(PITCH_SETS[label])
            total += 1
    assert followed / total >= 0.9
    first = music.generate_tokens(emotion="a", length=24, seed=0, guidance=2.0, top_p=0.9)
    other = music.generate_tokens(emotion="b", length=24, seed=0, guidance=2.0, top_p=0.9)
    assert not np.array_equal(first, other)


# --------------------------------------------------------------------- representation dispatch


def test_auto_representation_prefers_midi_and_says_how_to_choose_audio(tmp_path, tiny_config, caplog):
    (tmp_path / "a.mid").write_bytes(b"")
    (tmp_path / "a.wav").write_bytes(b"")
    with caplog.at_level("INFO"):
        assert resolve_representation(tiny_config, tmp_path) == "midi"
    assert "representation=audio" in caplog.text
    (tmp_path / "a.mid").unlink()
    assert resolve_representation(tiny_config, tmp_path) == "audio"
    tiny_config.music_model.representation = "midi"
    with pytest.raises(UserError, match="no \\*.mid"):
        resolve_representation(tiny_config, tmp_path)


def test_audio_checkpoints_are_delegated_by_generate_music(tmp_path, monkeypatch):
    import argparse

    import cinematic.generation.music_audio as music_audio
    from cinematic.generation.music import generate_command

    path = tmp_path / "audio.pth"
    torch.save({"task": "music", "task_state": {"representation": "audio"}}, path)
    calls = []
    monkeypatch.setattr(music_audio, "generate_command", lambda *a, **k: calls.append(a) or 0)
    assert generate_command(argparse.Namespace(checkpoint=str(path), out="x.wav")) == 0
    assert len(calls) == 1 and calls[0][1]["task_state"]["representation"] == "audio"


def test_resume_mid_run_is_bitwise_exact(music_dir, tmp_path):
    """6 steps straight == 3 steps + resume + 3 steps, with dropout and condition dropout on: crops and
    augmentation come from item_rng(seed, epoch, index), the rest from the restored RNG states."""
    from cinematic.training.trainer import run_training

    def cfg(work: str, steps: int):
        c = _tiny_cfg(tmp_path / work, 6)
        c.training.validate_at_start = False
        c.training.max_steps = steps  # stopping at 3 is still inside the 5-step warmup: same LRs
        c.training.checkpoint_every_steps = 3
        c.music_model.dropout = 0.1
        c.music_model.condition_dropout = 0.5
        return c

    straight = run_training(MusicTask(), cfg("a", 6), music_dir)
    run_training(MusicTask(), cfg("b", 3), music_dir)
    resumed = run_training(
        MusicTask(), cfg("b", 6), music_dir, resume=str(tmp_path / "b" / "music" / "checkpoints" / "last.pth")
    )
    assert resumed.step == straight.step == 6
    a = torch.load(straight.last_checkpoint, weights_only=True)["model"]["music"]
    b = torch.load(resumed.last_checkpoint, weights_only=True)["model"]["music"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    # ... and the resumed run really started from the checkpoint: a nudged copy ends elsewhere
    checkpoint = torch.load(tmp_path / "b" / "music" / "checkpoints" / "step_3.pth", weights_only=True)
    checkpoint["model"]["music"]["norm.bias"] += 0.01
    torch.save(checkpoint, tmp_path / "nudged.pth")
    nudged = run_training(MusicTask(), cfg("c", 6), music_dir, resume=str(tmp_path / "nudged.pth"))
    c = torch.load(nudged.last_checkpoint, weights_only=True)["model"]["music"]
    assert not torch.equal(a["norm.bias"], c["norm.bias"])


def test_an_unreadable_midi_is_skipped_and_reported_or_refused_with_strict(music_dir, tmp_path, capsys):
    import json

    from cinematic.cli import main

    data = tmp_path / "music"
    shutil.copytree(music_dir, data)
    (data / "broken.mid").write_bytes(b"MThd garbage, not a MIDI file")
    common = ["train", "music", "--config", "tiny", "--data_dir", str(data), "--set", "training.max_steps=2",
              "--set", "music_model.max_seq_len=32", "--set", "music_model.num_layers=1",
              "--set", "data.num_workers=0"]  # fmt: skip
    assert main([*common, "--work_dir", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "broken.mid" in err and "not a readable MIDI file" in err and "Traceback" not in err
    assert not (tmp_path / "strict" / "music" / "checkpoints").exists()

    assert main([*common, "--work_dir", str(tmp_path / "skip")]) == 0
    report = json.loads((tmp_path / "skip" / "music" / "skipped_files.json").read_text())
    assert report["count"] == 1 and report["files"][0]["path"].endswith("broken.mid")
    assert "not a readable MIDI file" in report["files"][0]["reason"]
    assert (
        torch.load(tmp_path / "skip" / "music" / "checkpoints" / "last.pth", weights_only=True)["step"] == 2
    )


# ------------------------------------------------------------- attributes measured from the music


def _scale_piece(tonic: int = 60, repeats: int = 6) -> np.ndarray:
    """Tokens of a major scale with its tonic chord, repeated: a piece in the key of `tonic` major."""
    rows, t = [], 0.0
    for _ in range(repeats):
        for step in (0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0):
            rows.append([t, t + 0.2, tonic + step, 80])
            t += 0.25
    return TOK.encode_notes(np.array(rows))


def test_crops_carry_the_key_of_their_transposition():
    from cinematic.data.attributes import KEYS, measure_notes_raw
    from cinematic.tasks.music import attribute_vocabularies

    piece = _scale_piece()
    raw = measure_notes_raw(TOK.decode_notes(piece))
    assert raw["tonic"] == 0 and raw["mode"] == "major"
    vocab = {"emotion": ["<none>", "happy"], **attribute_vocabularies(["key", "mode", "tempo"], "midi")}
    section = _section(max_seq_len=48, opening_crop_prob=1.0)  # every crop starts at the opening
    data = MidiCropDataset([piece], [np.array([1, 0, 0, 0])], TOK, section, 3, [(raw, {})], vocab)
    seen = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        item = data[0]
        tokens = item["tokens"].numpy()
        ons = tokens[(tokens >= TOK.note_on_offset) & (tokens < TOK.note_on_offset + 128)]
        semitones = int(ons[0]) - TOK.note_on_offset - 60  # the first note-on (the piece opens on C4)
        conditions = item["conditions"].tolist()
        assert conditions[0] == 1  # the label is kept
        assert vocab["key"][conditions[1]] == KEYS[semitones % 12]  # C major moved with the crop
        assert vocab["mode"][conditions[2]] == "major"
        seen.add(semitones)
    assert len(seen) > 2


def test_a_crop_is_labelled_with_the_key_of_its_own_window_unless_the_json_gave_one():
    from cinematic.data.attributes import measure_notes_raw
    from cinematic.tasks.music import attribute_vocabularies
    from cinematic.utils import item_rng

    first, second = _scale_piece(60), _scale_piece(66)  # C major scales, then F# major ones
    piece, change = np.concatenate([first, second]), 1 + len(first)  # (+1: the dataset's BOS)
    raw = measure_notes_raw(TOK.decode_notes(piece))
    vocab = {"emotion": ["<none>", "happy"], **attribute_vocabularies(["key", "mode"], "midi")}

    def crop_keys(window: int, raw: dict) -> dict[str, set[str]]:
        """Keys of the crops wholly before / well after the change (no transposition, no openings)."""
        section = _section(max_seq_len=48, attribute_window=window, transpose_range=0, opening_crop_prob=0)
        data = MidiCropDataset([piece], [np.array([1, 0, 0])], TOK, section, 3, [(raw, {})], vocab)
        keys: dict[str, set[str]] = {"before": set(), "after": set()}
        for epoch in range(10):
            data.set_epoch(epoch)
            for index in range(len(data)):
                start = int(item_rng(3, epoch, index).integers(0, len(data.pieces[0]) - 48))  # as drawn
                key = vocab["key"][int(data[index]["conditions"][1])]
                if start + 49 <= change:
                    keys["before"].add(key)
                elif start >= change + 16:  # its 16-token window grid starts after the change too
                    keys["after"].add(key)
        return keys

    windowed = crop_keys(48, raw)
    assert windowed == {"before": {"c major"}, "after": {"f# major"}}
    whole = crop_keys(0, raw)
    assert len(whole["before"] | whole["after"]) == 1  # one key for the whole piece
    given = {**raw, "tonic": 2, "mode": "minor", "given": ["mode", "tonic"]}  # the .json said D minor
    assert crop_keys(48, given) == {"before": {"d minor"}, "after": {"d minor"}}


def test_a_folder_without_labels_trains_on_measured_attributes(music_dir, tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for midi in sorted(music_dir.glob("*.mid"))[:4]:
        shutil.copy(midi, folder / midi.name)
    task = MusicTask()
    ctx = BuildContext(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", device=torch.device("cpu"))
    built = task.build(_tiny_cfg(tmp_path), folder, ctx)
    assert task.labels["emotion"] == ["<none>"] and "d minor" in task.labels["key"]
    names = list(task.labels)
    items = [built.train_set[i]["conditions"] for i in range(len(built.train_set))]
    assert all(int(c[names.index("key")]) > 0 and int(c[names.index("tempo")]) > 0 for c in items)
    assert len(list((tmp_path / "cache" / "music_attributes").glob("*.json"))) == 4  # measured once, cached


def test_labels_in_the_json_win_over_measured_attributes(tmp_path, music_dir):
    from cinematic.data.attributes import piece_attributes
    from cinematic.data.dataset import MusicItem
    from cinematic.tasks.music import measured_pieces

    midi = sorted(music_dir.glob("*.mid"))[0]
    labels = {"key": "F# minor", "tempo": 200, "density": "low", "instruments": ["violin", "cello"]}
    [(raw, fixed)] = measured_pieces(
        [MusicItem(midi, "midi", labels)], ["key", "tempo", "density"], None, "symbolic"
    )
    values = piece_attributes(raw, fixed)
    assert (values["key"], values["tempo"], values["density"]) == ("f# minor", "very_fast", "low")
    assert piece_attributes(raw, fixed, semitones=1)["key"] == "g minor"  # a sidecar key transposes too


def test_generation_takes_attribute_conditions_and_refuses_unknown_values(trained, tmp_path):
    from cinematic import load
    from cinematic.cli import main

    music = load(trained.last_checkpoint)
    assert "key" in music.labels and "tempo" in music.labels
    ids = music.condition_ids(emotion="sad", key="D minor", tempo=90, density="High")
    names = list(music.labels)
    assert music.labels["key"][ids[names.index("key")]] == "d minor"
    assert music.labels["tempo"][ids[names.index("tempo")]] == "moderate"
    a = music.generate_tokens(key="dm", tempo=90, length=24, seed=1, guidance=2.0)
    b = music.generate_tokens(key="a major", tempo=150, length=24, seed=1, guidance=2.0)
    assert not np.array_equal(a, b)
    with pytest.raises(UserError, match="unknown key 'h minor'; accepted values: c major"):
        music.generate(key="h minor", length=4)
    with pytest.raises(UserError, match="unknown density 'huge'.*low, medium, high"):
        music.generate(density="huge", length=4)
    out = tmp_path / "attr.mid"
    args = [
        "generate",
        "music",
        "--checkpoint",
        str(trained.last_checkpoint),
        "--key",
        "Bb",
        "--tempo",
        "120",
    ]
    assert main([*args, "--mode", "major", "--length", "16", "--out", str(out)]) == 0 and out.is_file()
    assert main([*args, "--mode", "lydian", "--length", "16", "--out", str(out)]) == 2


def test_old_checkpoints_have_no_attributes_and_say_so():
    from cinematic import load

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "v1" / "music" / "checkpoints" / "best.pth"
    music = load(fixture)
    assert set(music.labels) == {"emotion", "genre", "scene"}
    assert len(music.generate_tokens(length=8, seed=0)) <= 8
    with pytest.raises(UserError, match="not conditioned on key .*emotion, genre, scene"):
        music.generate(key="d minor", length=4)


def test_only_rank_zero_computes_the_eval_figures_except_under_fsdp(tmp_path):
    """The trainer broadcasts rank 0's validation metrics, so the other ranks' generation for
    `eval_samples` would be thrown away; under FSDP every rank must run the forward."""
    from cinematic.configs import load_config
    from cinematic.tasks.music import evaluates_here

    cfg = load_config("tiny")
    ranks = [
        BuildContext(run_dir=tmp_path, cache_dir=tmp_path, device=torch.device("cpu"), rank=r) for r in (0, 1)
    ]
    assert [evaluates_here(cfg, ctx) for ctx in ranks] == [True, False]
    cfg.training.strategy = "fsdp"
    assert [evaluates_here(cfg, ctx) for ctx in ranks] == [True, True]
