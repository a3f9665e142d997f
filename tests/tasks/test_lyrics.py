"""The lyrics task end to end: packing, condition dropout, balanced sampling, conditioning that works,
training through the trainer on the demo songs, exact resume, and `cinematic generate lyrics`."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from cinematic.cli import main
from cinematic.configs import load_config
from cinematic.models.lyrics_generator import IGNORE_INDEX
from cinematic.tasks.lyrics import LyricsTask
from cinematic.training.task import BuildContext

# A synthetic corpus where every (language, emotion) has its own words: what a sample uses tells
# whether the conditioning worked.
WORDS = {
    ("en", "happy"): "sun bright dance smile golden summer",
    ("en", "sad"): "rain cold alone tears grey winter",
    ("es", "happy"): "sol baila alegre brilla verano fiesta",
    ("es", "sad"): "lluvia triste sola lágrimas gris invierno",
}
LANGUAGE_WORDS = {
    lang: {w for (lg, _), ws in WORDS.items() if lg == lang for w in ws.split()} for lang in ("en", "es")
}


def write_corpus(
    root: Path, songs_per_group: int = 12, extra_en: int = 0, scene_and_genre: bool = True
) -> Path:
    rng = random.Random(0)
    for (language, emotion), words in WORDS.items():
        folder = root / language
        folder.mkdir(parents=True, exist_ok=True)
        count = songs_per_group + (extra_en if language == "en" else 0)
        for i in range(count):
            lines = [" ".join(rng.choice(words.split()) for _ in range(4)) for _ in range(4)]
            (folder / f"{emotion}{i:02d}.txt").write_text("[verse]\n" + "\n".join(lines), encoding="utf-8")
            labels = (
                {"emotion": emotion, "genre": "pop", "scene": f"a {emotion} day"}
                if scene_and_genre
                else {"emotion": emotion}
            )
            (folder / f"{emotion}{i:02d}.json").write_text(json.dumps(labels), encoding="utf-8")
    return root


def small_config(*overrides: str):
    return load_config(
        "tiny",
        [
            "lyrics_model.max_seq_len=64",
            "lyrics_model.vocab_size=400",
            "lyrics_model.dropout=0.0",
            "lyrics_model.num_heads=4",
            *overrides,
        ],
    )


def context(tmp: Path, restored=None) -> BuildContext:
    return BuildContext(
        run_dir=tmp / "run", cache_dir=tmp / "cache", device=torch.device("cpu"), restored_state=restored
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("lyrics_corpus"))


# --------------------------------------------------------------------------------------------- data


def test_blocks_keep_one_language_and_train_only_on_song_text(corpus, tmp_path):
    task = LyricsTask()
    config = small_config("lyrics_model.condition_dropout=0.0", "lyrics_model.unconditional_prob=0.0")
    built = task.build(config, corpus, context(tmp_path))
    tok = task.tokenizer
    language_ids = set(tok.label_ids["language"].values())
    for index in range(len(built.train_set)):
        item = built.train_set[index]
        idx, targets, docs = item["idx"], item["targets"], item["doc_ids"]
        assert len({int(t) for t in idx if int(t) in language_ids}) == 1  # one language per block
        starts = [0] + [t for t in range(1, len(docs)) if docs[t] != docs[t - 1]]
        for start in starts:  # every song opens with its full prefix: <bos> <lang> <emotion> <genre> <scene>
            assert idx[start] == tok.bos_id and int(idx[start + 1]) in language_ids
            assert idx[start + 4] == tok.scene_start_id
            assert (targets[start : start + 4] == IGNORE_INDEX).all()  # conditions are not predicted
        boundaries = [s - 1 for s in starts[1:]]
        assert all(targets[b] == IGNORE_INDEX for b in boundaries)  # no target across songs
        text = targets[targets != IGNORE_INDEX]
        assert not any(int(t) in tok.control_ids for t in text)
    assert tok.eos_id in torch.cat([built.train_set[i]["targets"] for i in range(len(built.train_set))])


def test_condition_dropout_depends_only_on_seed_epoch_and_item(corpus, tmp_path):
    task = LyricsTask()
    built = task.build(small_config("lyrics_model.condition_dropout=0.5"), corpus, context(tmp_path))
    data = built.train_set
    first = [data[i]["idx"] for i in range(len(data))]
    assert all(torch.equal(a, data[i]["idx"]) for i, a in enumerate(first))  # same (epoch, item): same draw
    data.set_epoch(1)
    assert any(not torch.equal(a, data[i]["idx"]) for i, a in enumerate(first))  # next epoch: new draws
    tokens = torch.cat([data[i]["idx"] for i in range(len(data))])
    tok = task.tokenizer
    songs = int((tokens == tok.bos_id).sum())
    kept = int(torch.isin(tokens, torch.tensor(list(tok.label_ids["language"].values()))).sum())
    dropped = int((tokens == tok.no_label_ids["language"]).sum())
    assert 0.2 * songs < kept < 0.8 * songs and kept + dropped == songs  # about half, in the same slot


def test_joint_dropout_leaves_out_all_four_conditions_together(corpus, tmp_path):
    task = LyricsTask()
    config = small_config("lyrics_model.condition_dropout=0.0", "lyrics_model.unconditional_prob=0.5")
    data = task.build(config, corpus, context(tmp_path)).train_set
    tok = task.tokenizer
    nulls = {tok.no_label_ids[name] for name in ("language", "emotion", "genre")}
    songs = all_null = 0
    for epoch in range(3):
        data.set_epoch(epoch)
        for i in range(len(data)):
            idx = data[i]["idx"].tolist()
            for start in (t for t, token in enumerate(idx) if token == tok.bos_id):
                slots = set(idx[start + 1 : start + 4])
                songs += 1
                all_null += slots <= nulls
                assert slots <= nulls or not slots & nulls  # all three dropped together, or none
    assert 0.3 * songs < all_null < 0.7 * songs


def test_language_balanced_weights_bring_the_rare_language_up(tmp_path):
    root = write_corpus(tmp_path / "data", songs_per_group=4, extra_en=20)
    task = LyricsTask()
    built = task.build(small_config("lyrics_model.balance_alpha=0.0"), root, context(tmp_path))
    es = task.tokenizer.label_ids["language"]["es"]
    is_es = torch.tensor([lang == es for lang in built.train_set.languages])
    natural = float(is_es.float().mean())
    weighted = float(torch.tensor(built.sample_weights)[is_es].sum() / sum(built.sample_weights))
    assert natural < 0.3 and weighted == pytest.approx(0.5)  # alpha 0: every language equally often


def test_build_on_resume_reuses_the_checkpoints_vocabulary(corpus, tmp_path, caplog):
    first = LyricsTask()
    first.build(small_config(), corpus, context(tmp_path / "a"))
    state = first.export_state()
    grown = write_corpus(tmp_path / "grown")
    (grown / "it").mkdir()
    (grown / "it" / "nuovo.txt").write_text("[verse]\nsole cuore", encoding="utf-8")
    (grown / "en" / "sad00.json").write_text(json.dumps({"emotion": "furious"}), encoding="utf-8")
    again = LyricsTask()
    built = again.build(small_config(), grown, context(tmp_path / "b", restored=state))
    assert again.tokenizer.state() == first.tokenizer.state()  # same ids, same labels
    assert again.export_state()["model_config"] == state["model_config"]
    assert "language=it" in caplog.text and "emotion=furious" in caplog.text
    assert len(built.train_set) > 0


# ----------------------------------------------------------------------------------- conditioning


def test_samples_use_the_requested_languages_words(tmp_path):
    """A tiny model trained briefly (130 steps) on a corpus where each (language, emotion) has its own
    words writes in the language it is asked for in at least 90 % of draws, mostly in the emotion's words."""
    from cinematic.generation.lyrics import LyricsGenerator

    root = write_corpus(tmp_path / "data", scene_and_genre=False)  # prefix: <bos> <lang> <emotion>
    task = LyricsTask()
    torch.manual_seed(0)
    built = task.build(small_config(), root, context(tmp_path))
    model = built.models["lyrics"]
    sampler = WeightedRandomSampler(built.sample_weights, 8 * 130, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for batch in DataLoader(built.train_set, batch_size=8, sampler=sampler, collate_fn=built.collate_fn):
        loss = task.training_step(built.models, batch, "main", {}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator = LyricsGenerator(model.eval(), task.tokenizer)
    for language, emotion in (("es", "sad"), ("en", "happy")):
        draws = generator.generate(
            language=language, emotion=emotion, num_samples=20, max_new_tokens=20, temperature=0.8, seed=1
        )
        words = [re.findall(r"\w+", draw.replace("[verse]", "")) for draw in draws]
        share = [sum(w in LANGUAGE_WORDS[language] for w in ws) / max(1, len(ws)) for ws in words]
        assert sum(s >= 0.7 for s in share) >= 18, draws
        emotion_words = set(WORDS[(language, emotion)].split())
        assert sum(sum(w in emotion_words for w in ws) / max(1, len(ws)) for ws in words) / len(words) > 0.6


# ------------------------------------------------------------------------- trainer, checkpoint, CLI


@pytest.fixture(scope="module")
def demo_lyrics(tmp_path_factory) -> Path:
    """The lyrics part of `cinematic data demo` (the same songs, without rendering music and speech)."""
    from cinematic.data.demo import lyric_songs

    root = tmp_path_factory.mktemp("demo") / "lyrics"
    for language, stem, text, labels in lyric_songs(seed=0):
        (root / language).mkdir(parents=True, exist_ok=True)
        (root / language / f"{stem}.txt").write_text(text, encoding="utf-8")
        (root / language / f"{stem}.json").write_text(json.dumps(labels), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def trained(demo_lyrics, tmp_path_factory) -> Path:
    """`cinematic train lyrics --config tiny` on the demo songs, a few steps; its last checkpoint."""
    work = tmp_path_factory.mktemp("lyrics_run")
    code = main(
        ["train", "lyrics", "--config", "tiny", "--data_dir", str(demo_lyrics), "--work_dir", str(work),
         "--set", "training.max_steps=6", "--set", "training.validate_every_steps=100"]
    )  # fmt: skip
    assert code == 0
    return work / "lyrics" / "checkpoints" / "last.pth"


def test_checkpoint_alone_generates_and_the_same_seed_repeats(trained, tmp_path, capsys):
    args = ["generate", "lyrics", "--checkpoint", str(trained), "--language", "es", "--emotion", "sad",
            "--genre", "ballad", "--scene", "una tormenta en el puerto", "--structure", "verse,chorus",
            "--max_new_tokens", "40", "--seed", "7"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a.txt")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.txt")]) == 0
    assert main([*args[:-1], "8", "--out", str(tmp_path / "c.txt")]) == 0
    a, b, c = ((tmp_path / f"{n}.txt").read_text(encoding="utf-8") for n in "abc")
    assert a == b and a != c
    assert a.startswith("[verse]\n") and "\n[chorus]\n" in a


def test_python_api_returns_text_or_a_list(trained):
    import cinematic

    lyrics = cinematic.load(trained)
    assert set(lyrics.labels["language"]) == {"en", "es", "fr", "de"}
    one = lyrics.generate(language="fr", max_new_tokens=12, seed=0)
    many = lyrics.generate(language="fr", max_new_tokens=12, seed=0, num_samples=3, guidance=2.0)
    assert isinstance(one, str) and isinstance(many, list) and len(many) == 3


@pytest.mark.parametrize("flag", ["--language", "--emotion", "--genre"])
def test_unknown_label_exits_2_listing_the_checkpoints_values(trained, tmp_path, capsys, flag):
    args = [
        "generate",
        "lyrics",
        "--checkpoint",
        str(trained),
        "--language",
        "es",
        "--out",
        str(tmp_path / "x.txt"),
    ]
    args += [flag, "klingon"]
    assert main(args) == 2
    err = capsys.readouterr().err
    known = {"--language": "de, en, es, fr", "--emotion": "sad", "--genre": "ballad"}[flag]
    assert "klingon" in err and known in err
    assert not (tmp_path / "x.txt").exists()


def test_resume_is_exact_and_keeps_the_checkpoints_vocabulary(corpus, tmp_path):
    """8 steps straight == resume from the step-6 checkpoint (in the second epoch) + 2 steps, with
    condition dropout on: every draw is a function of (seed, epoch, item)."""
    from cinematic.checkpoint_io import read_checkpoint
    from cinematic.training.trainer import run_training

    def config(run_name: str):
        cfg = small_config(
            "training.max_steps=8",
            "training.validate_every_steps=100",
            "training.checkpoint_every_steps=3",
            "training.keep_last_k=3",
            "lyrics_model.condition_dropout=0.5",
        )
        cfg.training.work_dir = str(tmp_path)
        cfg.training.run_name = run_name
        return cfg

    straight = run_training(LyricsTask(), config("straight"), corpus)
    middle = straight.run_dir / "checkpoints" / "step_6.pth"
    resumed = run_training(LyricsTask(), config("resumed"), corpus, resume=str(middle))
    a, b, mid = (
        read_checkpoint(straight.last_checkpoint),
        read_checkpoint(resumed.last_checkpoint),
        read_checkpoint(middle),
    )
    assert mid["epoch"] >= 1 and b["step"] == 8
    assert b["task_state"]["tokenizer"] == mid["task_state"]["tokenizer"]
    for name, tensor in a["model"]["lyrics"].items():
        assert torch.equal(tensor, b["model"]["lyrics"][name]), name


def test_generation_past_the_block_keeps_the_prefix_and_slides_the_text():
    from cinematic.generation.lyrics import _Stream
    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig

    torch.manual_seed(0)
    model = LyricsGPT(
        LyricsGPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    )
    model.eval()
    prefix = torch.tensor([[1, 2, 3]])
    stream = _Stream(model, prefix[0].tolist(), batch=1)
    text = torch.randint(4, 64, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = stream.prefill(text[:, :5])
        for t in range(5, 40):  # 3 + 40 tokens through a 16-position model
            logits = stream.step(text[:, t : t + 1], text[:, : t + 1])
        # a full cache (16) is refilled with the prefix + the last 16 - 3 - 4 = 9 text tokens (12), then
        # grows to 16 again: refills at t = 13, 18, ..., 38; the last holds text[30:39], then t = 39 steps
        expected, _ = model(torch.cat([prefix, text[:, 30:]], dim=1))
    assert stream.cache.length == 13
    torch.testing.assert_close(logits, expected[:, -1], atol=1e-5, rtol=0)


def test_quickstart_stage_reports_perplexity_and_writes_a_song_per_language(
    demo_lyrics, tmp_path, monkeypatch
):
    import cinematic.tasks.lyrics as lyrics_task
    from cinematic.quickstart import Quickstart

    monkeypatch.setattr(lyrics_task, "QUICKSTART_STEPS", 4)  # the wiring, not the 150-step run
    config = load_config("tiny")
    config.training.work_dir = str(tmp_path / "runs")
    qs = Quickstart(
        root=tmp_path, data_root=demo_lyrics.parent, samples_dir=tmp_path / "samples", config=config
    )
    qs.samples_dir.mkdir()
    written = lyrics_task.quickstart(qs)
    assert written == [qs.samples_dir / "lyrics.txt"]
    text = written[0].read_text(encoding="utf-8")
    assert [line.split()[1] for line in text.splitlines() if line.startswith("===")] == [
        "language=de", "language=en", "language=es", "language=fr"
    ]  # fmt: skip
    result = qs.results["lyrics"]
    assert result["metric"] == "val/perplexity" and result["after"] < result["before"]
