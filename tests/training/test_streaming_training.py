"""Training from streaming shards (docs/streaming.md): shards written from the demo data give the same
items as the data folder (bitwise, per epoch), train every family through the CLI, resume exactly,
and a bad shard is an error naming it or, with --skip_bad_shards, a skip listed in the run's report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cinematic import registry
from cinematic.cli import main

FAST = [
    "--config",
    "tiny",
    "--set",
    "logging.logger=none",
    "--set",
    "training.validate_every_steps=1000",
    "--set",
    "data.max_val_items=2",
    "--set",
    "voice_model.speaker_encoder=false",
    "--set",
    "music_model.max_seq_len=64",
    "--set",
    "data.segment_duration=0.5",
    "--set",  # the music audio route: a small tokenizer on a coarse mel front end (as tests/tasks does)
    "music_model.rvq_codebook_size=16",
    "--set",
    "music_model.audio.hop_length=1024",
    "--set",
    "music_model.audio.n_mels=48",
]
if "singing" in registry.families():
    FAST += ["--set", "singing_model.speaker_encoder=false"]
NO_VALIDATION = {family: ["--set", "data.val_fraction=0"] for family in ("music", "lyrics", "singing")}
"""Families sharded without validation items: their runs skip validation and sampling (seconds each);
the vocoder's and voice's runs validate from shards."""
_KIND = {"music_audio": "music"}
"""The CLI's family for a test's key: the music audio route is `music` on a folder of audio files."""


def _subset(demo: Path, root: Path) -> dict[str, Path]:
    """Small copies of the demo data: 4 MIDI pieces, 2 songs per language, 2 speakers × 3 clips."""
    music = root / "music"
    music.mkdir(parents=True)
    for mid in sorted((demo / "music").glob("*.mid"))[:4]:
        for path in (mid, mid.with_suffix(".json")):
            if path.is_file():
                shutil.copy(path, music / path.name)
    lyrics = root / "lyrics"
    for folder in sorted(p for p in (demo / "lyrics").iterdir() if p.is_dir()):
        (lyrics / folder.name).mkdir(parents=True)
        for txt in sorted(folder.glob("*.txt"))[:3]:
            for path in (txt, txt.with_suffix(".json")):
                if path.is_file():
                    shutil.copy(path, lyrics / folder.name / path.name)
    voice = root / "voice"
    for speaker in sorted(p for p in (demo / "voice").iterdir() if p.is_dir())[:2]:
        (voice / speaker.name).mkdir(parents=True)
        shutil.copy(speaker / "speaker.json", voice / speaker.name / "speaker.json")
        for wav in sorted(speaker.glob("*.wav"))[:3]:
            shutil.copy(wav, voice / speaker.name / wav.name)
            shutil.copy(wav.with_suffix(".txt"), voice / speaker.name / (wav.stem + ".txt"))
    music_audio = root / "music_audio"  # audio and no MIDI: `data shard music` picks the audio route
    music_audio.mkdir(parents=True)
    for wav in sorted((demo / "music").glob("*.wav"))[:4]:
        for path in (wav, wav.with_suffix(".json")):
            if path.is_file():
                shutil.copy(path, music_audio / path.name)
    found = {"music": music, "lyrics": lyrics, "voice": voice, "vocoder": voice, "music_audio": music_audio}
    if (demo / "singing").is_dir() and "singing" in registry.families():
        singing = root / "singing"
        for singer in sorted(p for p in (demo / "singing").iterdir() if p.is_dir())[:2]:
            (singing / singer.name).mkdir(parents=True)
            for wav in sorted(singer.glob("*.wav"))[:2]:
                for path in (wav, wav.with_suffix(".json")):
                    shutil.copy(path, singing / singer.name / path.name)
            for extra in singer.glob("singer.json"):
                shutil.copy(extra, singing / singer.name / extra.name)
        found["singing"] = singing
    return found


@pytest.fixture(scope="module")
def sharded(demo_data, tmp_path_factory):
    """{family: (data folder, shard folder, work dir)} with shards written by `cinematic data shard`."""
    from cinematic.utils import torch_threads

    root = tmp_path_factory.mktemp("streaming")
    data = _subset(demo_data, root / "data")
    out = {}
    with torch_threads(1):
        for family in data:
            shards, work = (
                root / "shards" / family,
                root / ("work_audio" if family == "music_audio" else "work"),
            )
            kind = _KIND.get(family, family)
            args = ["data", "shard", kind, str(data[family]), "--out", str(shards), "--work_dir", str(work)]
            if family == "vocoder":  # clips of ~60 kB in chunks of 150 kB: one can go bad, others stay
                args += ["--chunk_bytes", str(150_000)]
            assert main([*args, *FAST, *NO_VALIDATION.get(family, [])]) == 0
            out[family] = (data[family], shards, work)
    return out


def _config(work: Path, family: str):
    from cinematic.registry import load_config

    options = [*FAST, *NO_VALIDATION.get(family, [])]
    cfg = load_config("tiny", [options[i + 1] for i in range(2, len(options), 2)])
    cfg.training.work_dir = str(work)
    return cfg


def _items(dataset, epoch: int) -> list:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("family", ["music", "music_audio", "lyrics", "vocoder"])
def test_shard_items_equal_the_data_folders_in_every_epoch(sharded, family, tmp_path):
    """Per-epoch randomness stays at load time: item i of epoch e is bitwise the same from shards."""
    from cinematic import registry
    from cinematic.tasks.sharded import ShardedTask
    from cinematic.training.task import BuildContext

    data, shards, work = sharded[family]
    cfg = _config(work, family)
    ctx = BuildContext(run_dir=tmp_path, cache_dir=work / "cache", device=torch.device("cpu"))
    raw = registry.get(family).task_instance().build(cfg, data, ctx)
    streamed = ShardedTask(registry.get(family).task_instance(), str(shards)).build(cfg, shards, ctx)
    assert len(streamed.train_set) == len(raw.train_set) > 0
    assert streamed.sample_weights == raw.sample_weights
    for epoch in (0, 3):
        assert all(map(_equal, _items(raw.train_set, epoch), _items(streamed.train_set, epoch)))
    if family in NO_VALIDATION:
        assert raw.val_set is None and streamed.val_set is None
    else:
        assert len(streamed.val_set) == len(raw.val_set) > 0
        assert all(map(_equal, _items(raw.val_set, 0), _items(streamed.val_set, 0)))


@pytest.mark.parametrize("family", ["music", "music_audio", "voice", "singing"])
def test_every_family_trains_from_shards(sharded, family):
    """(Lyrics trains in the resume test, the vocoder in the bad-shard test.)"""
    if family not in sharded:
        pytest.skip("no singing family or no singing demo data in this version")
    _, shards, work = sharded[family]
    kind = _KIND.get(family, family)
    args = ["train", kind, "--data_dir", str(shards), "--work_dir", str(work / "runs"), *FAST]
    assert main([*args, "--set", "training.max_steps=2", "--set", "training.batch_size=2"]) == 0
    name = kind
    checkpoint = torch.load(work / "runs" / name / "checkpoints" / "last.pth", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["data_dir"] == str(shards)
    if family == "music_audio":  # the transformer on the shards' RVQ codes, with their tokenizer
        state = checkpoint["task_state"]
        assert state["representation"] == "audio" and state["model_config"]["num_streams"] > 1


def test_audio_route_shards_with_another_mel_front_end_are_refused(sharded, tmp_path):
    from cinematic.errors import UserError
    from cinematic.tasks.music_audio import AudioMusicTask
    from cinematic.tasks.sharded import ShardedTask
    from cinematic.training.task import BuildContext

    _, shards, work = sharded["music_audio"]
    cfg = _config(work, "music_audio")
    cfg.music_model.audio = cfg.music_model.audio.model_copy(update={"n_mels": 40})
    ctx = BuildContext(run_dir=tmp_path, cache_dir=work / "cache", device=torch.device("cpu"))
    with pytest.raises(UserError, match="another mel front end.*n_mels"):
        ShardedTask(AudioMusicTask(), str(shards)).build(cfg, shards, ctx)


def test_a_run_from_shards_stopped_by_sigterm_inside_an_epoch_resumes_bitwise(sharded, tmp_path):
    """5 steps straight == SIGTERM during step 3 (checkpoint, exit 75) + `--resume auto` to step 5
    (lyrics with condition dropout, drawn per epoch and item; the epoch has ~30 steps)."""
    import os
    import signal

    from cinematic.registry import load_config
    from cinematic.tasks.lyrics import LyricsTask
    from cinematic.tasks.sharded import ShardedTask
    from cinematic.training.preemption import Preempted
    from cinematic.training.trainer import run_training

    _, shards, _ = sharded["lyrics"]
    sets = [*FAST[2:], "--set", "training.batch_size=2", "--set", "lyrics_model.condition_dropout=0.5"]

    def train(work: Path, *extra: str) -> dict:
        args = ["train", "lyrics", "--data_dir", str(shards), "--work_dir", str(work), "--config", "tiny"]
        assert main([*args, *sets, "--set", "training.max_steps=5", *extra]) == 0
        return torch.load(work / "lyrics" / "checkpoints" / "last.pth", weights_only=True)

    class SigtermAtStep3(ShardedTask):
        calls = 0

        def training_step(self, *args):
            self.calls += 1
            if self.calls == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.task.training_step(*args)

    straight = train(tmp_path / "a")
    cfg = load_config("tiny", [*(sets[i + 1] for i in range(0, len(sets), 2)), "training.max_steps=5"])
    cfg.training.work_dir = str(tmp_path / "b")
    with pytest.raises(Preempted) as stopped:
        run_training(SigtermAtStep3(LyricsTask(), str(shards)), cfg, shards)
    assert stopped.value.code == 75 and stopped.value.step == 3
    resumed = train(tmp_path / "b", "--resume", "auto")
    assert straight["epoch"] == resumed["epoch"] == 0 and resumed["batch_in_epoch"] == 5
    for name, tensor in straight["model"]["lyrics"].items():
        assert torch.equal(tensor, resumed["model"]["lyrics"][name]), name


def test_bad_shard_is_an_error_naming_it_or_a_listed_skip(sharded, tmp_path, capsys):
    """(Truncated chunks: tests/data/test_shards.py.)"""
    _, shards, _ = sharded["vocoder"]
    broken = tmp_path / "shards"
    shutil.copytree(shards, broken)
    chunk = json.loads((broken / "index.json").read_text())["chunks"][0]["filename"]
    (broken / chunk).unlink()
    args = ["train", "vocoder", "--data_dir", str(broken), "--work_dir", str(tmp_path / "w"), *FAST]
    args += ["--set", "training.max_steps=1", "--set", "training.batch_size=2"]
    assert main(args) == 2
    assert f"bad shard {broken / chunk}: missing" in capsys.readouterr().err
    assert main([*args, "--skip_bad_shards"]) == 0
    report = json.loads((tmp_path / "w" / "vocoder" / "skipped_files.json").read_text())
    assert report["files"][0]["path"] == str(broken / chunk) and "left out" in report["files"][0]["reason"]


def test_shards_of_another_family_are_refused(sharded, capsys):
    _, shards, work = sharded["lyrics"]
    assert main(["train", "music", "--data_dir", str(shards), "--work_dir", str(work / "x"), *FAST]) == 2
    assert "holds lyrics shards; train them with `cinematic train lyrics`" in capsys.readouterr().err


def test_rank_views_share_out_each_kind_of_file_and_keep_every_sidecar(demo_data, tmp_path):
    """`data shard` / `data preprocess` under torchrun: rank r builds the features of its slice."""
    from cinematic.launch import _rank_view

    music = demo_data / "music"
    views = [tmp_path / f"rank{r}" for r in range(2)]
    counts = [_rank_view(music, view, r, 2, (".mid", ".wav")) for r, view in enumerate(views)]
    names = [{p.name for p in view.iterdir()} for view in views]
    for suffix in (".mid", ".wav"):
        slices = [{n for n in found if n.endswith(suffix)} for found in names]
        assert not slices[0] & slices[1]
        assert slices[0] | slices[1] == {p.name for p in music.glob(f"*{suffix}")}
        assert abs(len(slices[0]) - len(slices[1])) <= 1
    sidecars = {p.name for p in music.glob("*.json")}
    assert sidecars <= names[0] and sidecars <= names[1] and sum(counts) == len(list(music.glob("*.mid"))) * 2
    assert all(p.is_symlink() for p in views[0].iterdir())
