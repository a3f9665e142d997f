"""Music audio route: delay-pattern causality, cached sampling, overfitting, and the demo-data run
(tokenizer → transformer → music vocoder → `cinematic generate music` WAV)."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from cinematic.data.tokenizers.delay import StreamVocab, deinterleave, delayed_sequence
from cinematic.errors import UserError
from cinematic.generation.music_audio import AudioMusicGenerator, generate_codes
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
from cinematic.tasks.music_audio import AudioMusicTask, make_collate

K, N = 3, 8
VOCAB = StreamVocab(N)


def tiny_model(conditions: tuple[int, ...] = (3,), seed: int = 0) -> MusicTransformer:
    torch.manual_seed(seed)
    cfg = MusicTransformerConfig(
        vocab_size=VOCAB.size,
        num_streams=K,
        num_layers=2,
        num_heads=2,
        embed_dim=32,
        ff_dim=64,
        dropout=0.0,
        max_relative_position=64,
        condition_sizes=conditions,
        condition_dropout=0.0,
    )
    return MusicTransformer(cfg).eval()


def test_delayed_model_never_sees_a_code_generated_at_the_same_or_a_later_step():
    """Perturb each code (stream j, frame f'): a prediction for (stream k, frame f) may change only if
    (j, f') was generated at an earlier step, i.e. f' + j < f + k — never a future frame of any stream."""
    model = tiny_model()
    frames = 5
    codes = torch.randint(0, N, (K, frames), generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([[2]])

    def logits_of(c: torch.Tensor) -> torch.Tensor:
        seq = delayed_sequence(c, VOCAB)  # (K, 1 + steps): BOS column first
        with torch.no_grad():
            return model(seq[None, :, :-1], cond)[0]  # (K, steps, V): position s predicts delayed step s

    base = logits_of(codes)
    for j in range(K):
        for f2 in range(frames):
            changed = codes.clone()
            changed[j, f2] = (changed[j, f2] + 1) % N
            out = logits_of(changed)
            step = f2 + j  # the delayed step that carries code (j, f2)
            assert torch.allclose(out[:, : step + 1], base[:, : step + 1], atol=1e-6), (j, f2)
            if step + 1 < out.shape[1]:
                assert not torch.allclose(out[:, step + 1], base[:, step + 1], atol=1e-6)  # seen next step


def test_cached_step_by_step_logits_equal_the_full_forward():
    model = tiny_model()
    codes = torch.randint(0, N, (K, 12), generator=torch.Generator().manual_seed(2))
    seq = delayed_sequence(codes, VOCAB)[None, :, :-1].expand(2, -1, -1)  # two rows: cond and null
    cond = torch.tensor([[1], [0]])
    with torch.no_grad():
        full = model(seq, cond)
        cache = model.new_cache()
        steps = [model(seq[:, :, :1], cond, cache)]
        steps += [model(seq[:, :, t : t + 1], cond, cache) for t in range(1, seq.shape[-1])]
    assert torch.allclose(torch.cat(steps, dim=2), full, atol=1e-5)


def test_greedy_cached_generation_equals_naive_uncached_decoding():
    model = tiny_model()
    frames = 6
    fast = generate_codes(
        model, [2], frames, empty_id=VOCAB.empty_id, bos_id=VOCAB.bos_id, temperature=0.0, guidance=2.0
    )
    # reference: re-run the whole sequence every step, guidance on the two rows' last logits
    seq = torch.full((2, K, 1), VOCAB.bos_id)
    cond = torch.tensor([[2], [0]])
    for step in range(frames + K - 1):
        with torch.no_grad():
            last = model(seq, cond)[:, :, -1]
        mixed = last[1] + 2.0 * (last[0] - last[1])
        mixed[:, VOCAB.empty_id :] = float("-inf")
        tokens = mixed.argmax(-1)
        frame = step - torch.arange(K)
        tokens = torch.where((frame >= 0) & (frame < frames), tokens, torch.full_like(tokens, VOCAB.empty_id))
        seq = torch.cat([seq, tokens.view(1, K, 1).expand(2, -1, -1)], dim=2)
    assert fast.shape == (K, frames)
    assert torch.equal(fast, deinterleave(seq[0, :, 1:]))
    assert int(fast.max()) < N


def test_tiny_model_overfits_a_batch_of_audio_tokens():
    model = tiny_model(seed=3).train()
    gen = torch.Generator().manual_seed(4)
    items = [
        {
            "tokens": delayed_sequence(torch.randint(0, N, (K, 20), generator=gen), VOCAB),
            "conditions": torch.tensor([c]),
        }
        for c in (1, 2)
    ]
    batch = make_collate(VOCAB)(items)
    assert (batch["targets"] == -100).sum() == 2 * K * (K - 1)  # EMPTY cells are not targets
    task = AudioMusicTask()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        out = task.training_step({"music": model}, batch, "main", {})
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.1
    assert out.num_items == 2 * K * 20


# ----------------------------------------------------------------------------------- demo data run


@pytest.fixture(scope="session")
def audio_run(demo_data, tmp_path_factory):
    """The audio route trained end to end (a few steps each) on the demo WAVs through train_music's
    recipe: representation audio → tokenizer, transformer under music/, vocoder under vocoder_music/."""
    from cinematic import registry
    from cinematic.configs import load_config

    root = tmp_path_factory.mktemp("music_audio")
    data = root / "music"
    data.mkdir()
    for wav in sorted((demo_data / "music").glob("*.wav"))[:6]:  # audio only: auto picks the audio route
        shutil.copy(wav, data / wav.name)
        shutil.copy(wav.with_suffix(".json"), data / wav.with_suffix(".json").name)
    cfg = load_config("tiny")
    cfg.training.work_dir = str(root / "work")
    cfg.training.max_steps = 3
    cfg.training.batch_size = 2
    cfg.training.validate_every_steps = 100
    cfg.training.checkpoint_every_steps = 100
    cfg.music_model.max_seq_len = 48
    cfg.music_model.rvq_codebook_size = 16
    cfg.music_model.audio = cfg.music_model.audio.model_copy(update={"hop_length": 1024, "n_mels": 48})
    family = registry.routed(registry.get("music"), cfg, data, None)  # what `train music` runs
    assert family.name == "music_audio"
    result = family.recipe(cfg, data, None, argparse.Namespace(vocoder=None))
    return {"root": root, "data": data, "result": result, "cfg": cfg}


def test_audio_route_checkpoint_records_tokenizer_and_vocoder(audio_run):
    from cinematic.checkpoint_io import read_checkpoint

    result = audio_run["result"]
    assert result["music"].run_dir.name == "music"
    assert result["vocoder_path"].parent.parent.name == "vocoder_music"
    checkpoint = read_checkpoint(result["music"].last_checkpoint)
    state = checkpoint["task_state"]
    assert state["representation"] == "audio"
    # the vocoder by content and by place relative to the run folder, so the work folder can move
    from cinematic.utils import file_sha1

    assert state["vocoder"]["sha1"] == file_sha1(result["vocoder_path"])
    assert state["vocoder"]["relative_path"] == "../vocoder_music/checkpoints/" + result["vocoder_path"].name
    assert state["tokenizer"]["codebooks"].shape == (2, 16, 48)
    assert checkpoint["config"]["music_model"]["representation"] == "audio"


def test_generate_music_writes_audio_of_the_requested_duration(audio_run, tmp_path):
    from cinematic.cli import main

    ckpt = audio_run["result"]["music"].last_checkpoint
    out = tmp_path / "out.wav"
    # no --vocoder: the checkpoint's recorded one is used
    assert main(["generate", "music", "--checkpoint", str(ckpt), "--emotion", "sad", "--duration", "1.5",
                 "--seed", "3", "--out", str(out)]) == 0  # fmt: skip
    wav, sr = sf.read(out)
    hop = audio_run["cfg"].music_model.audio.hop_length
    assert sr == 44100
    assert abs(len(wav) - 1.5 * sr) <= hop  # ±1 frame
    assert np.sqrt(np.mean(wav**2)) > 1e-3  # not silent
    assert np.abs(wav).max() < 0.999  # not clipped


def test_loaded_generator_is_deterministic_and_rejects_unknown_labels(audio_run):
    import cinematic

    music = cinematic.load(audio_run["result"]["music"].last_checkpoint)
    assert isinstance(music, AudioMusicGenerator)
    a = music.generate_codes(emotion="sad", duration=0.5, seed=7)
    b = music.generate_codes(emotion="sad", duration=0.5, seed=7)
    assert torch.equal(a, b) and a.shape == (2, round(0.5 * 44100 / 1024))
    with pytest.raises(UserError, match="knows: .*sad"):
        music.generate_codes(emotion="no-such-mood", duration=0.5)


def test_missing_vocoder_is_a_user_error_naming_the_flag(audio_run, tmp_path):
    from cinematic.checkpoint_io import read_checkpoint

    checkpoint = read_checkpoint(audio_run["result"]["music"].last_checkpoint)
    checkpoint["task_state"]["vocoder"] = str(tmp_path / "gone.pth")
    music = AudioMusicGenerator.from_checkpoint(
        checkpoint, checkpoint_path=tmp_path / "x" / "checkpoints" / "last.pth"
    )
    with pytest.raises(UserError, match="--vocoder"):
        music.generate(duration=0.5)


def test_a_given_vocoder_with_another_mel_front_end_is_refused_before_training(audio_run):
    from cinematic.tasks.music_audio import train_audio_recipe

    cfg = audio_run["cfg"].model_copy(deep=True)
    cfg.music_model.audio = cfg.music_model.audio.model_copy(update={"n_mels": 40})
    cfg.training.work_dir = str(audio_run["root"] / "never_written")
    vocoder = argparse.Namespace(vocoder=str(audio_run["result"]["vocoder_path"]))
    with pytest.raises(UserError, match="n_mels"):
        train_audio_recipe(cfg, audio_run["data"], args=vocoder)
    assert not (audio_run["root"] / "never_written" / "music").exists()


def test_audio_route_completes_a_request_from_a_matching_training_clip(audio_run, monkeypatch):
    """The checkpoint records the training clips' condition combinations; `emotion=sad` is completed
    with the tempo/loudness/brightness of a sad clip (unless `fill_attributes=False`), as on the
    symbolic route."""
    import cinematic
    from cinematic.generation import music_audio

    music = cinematic.load(audio_run["result"]["music"].last_checkpoint)
    sets = music.attribute_sets
    assert sets["rows"] and set(sets["values"]) <= {"tempo", "loudness", "brightness"}
    names = list(music.labels)
    slots = [c for c, name in enumerate(names) if name in ("tempo", "loudness", "brightness")]
    sad = music.labels["emotion"].index("sad")
    allowed = {tuple(row[c] for c in slots) for row in sets["rows"] if row[names.index("emotion")] == sad}
    seen = []
    monkeypatch.setattr(
        music_audio, "generate_codes", lambda model, conditions, *a, **k: seen.append(conditions)
    )
    music.generate_codes(emotion="sad", duration=0.5, seed=1)
    music.generate_codes(emotion="sad", duration=0.5, seed=1, fill_attributes=False)
    assert tuple(seen[0][c] for c in slots) in allowed  # the attributes of a sad training clip
    assert [seen[1][c] for c in slots] == [0] * len(slots)  # nothing filled: emotion alone
    assert seen[0][names.index("emotion")] == seen[1][names.index("emotion")] == sad
