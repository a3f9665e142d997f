"""`cinematic export`: one file per model that generates anywhere (issue 22).

One module fixture trains every built-in family a few steps the way its recipe does (the voice model with
its speech vocoder, the music audio route with its music vocoder, each recorded in the run's
checkpoints), in two work folders. The tests export each run through the CLI, copy the exported file
alone into an empty folder and generate from it; move a work folder and generate without --vocoder; and
feed broken files in."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cinematic
from cinematic.checkpoint_io import EXPORT_FORMAT, read_checkpoint, read_export
from cinematic.cli import main
from cinematic.errors import UserError
from cinematic.utils import file_sha1, torch_threads

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Good morning to you."
RUNS = {  # family → (work folder, run folder)
    "music": ("work", "music"),
    "lyrics": ("work", "lyrics"),
    "voice": ("work", "voice"),
    "vocoder": ("work", "vocoder"),
    "music_audio": ("awork", "music"),
    "vocoder_music": ("awork", "vocoder_music"),
}
COMPANION = {"voice": "vocoder", "music_audio": "vocoder_music"}


def _cfg(work: Path, *overrides: str):
    from cinematic import registry

    cfg = registry.load_config(
        "tiny",
        ["training.max_steps=3", "training.validate_every_steps=100", "training.checkpoint_every_steps=100",
         "data.max_val_items=2", "vocoder.segment_size=2048", *overrides],
    )  # fmt: skip
    cfg.training.work_dir = str(work)
    return cfg


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory) -> Path:
    """<root>/work: music (MIDI), lyrics, voice + its vocoder (the voice recipe); <root>/awork: the music
    audio route + its music vocoder (its recipe). Three steps each."""
    from cinematic import registry
    from cinematic.training.trainer import run_training

    root = tmp_path_factory.mktemp("export_runs")
    audio = root / "audio_data" / "music"
    audio.mkdir(parents=True)
    for wav in sorted((demo_data / "music").glob("*.wav"))[:6]:
        shutil.copy(wav, audio / wav.name)
        shutil.copy(wav.with_suffix(".json"), audio / wav.with_suffix(".json").name)
    with torch_threads(1):  # module fixtures start before the one_thread fixture
        for family, data in (("lyrics", "lyrics"), ("music", "music")):
            cfg = _cfg(root / "work", "music_model.representation=midi")
            run_training(registry.get(family).task_instance(), cfg, demo_data / data)
        registry.get("voice").recipe(
            _cfg(root / "work"), demo_data / "voice", None, argparse.Namespace(stage="all")
        )
        cfg = _cfg(root / "awork", "training.batch_size=2", "music_model.max_seq_len=48",
                   "music_model.rvq_codebook_size=16")  # fmt: skip
        cfg.music_model.audio = cfg.music_model.audio.model_copy(update={"hop_length": 1024, "n_mels": 48})
        family = registry.routed(registry.get("music"), cfg, audio, None)
        assert family.name == "music_audio"
        family.recipe(cfg, audio, None, argparse.Namespace(vocoder=None))
    return root


def checkpoint(root: Path, family: str) -> Path:
    work, run = RUNS[family]
    return root / work / run / "checkpoints" / "best.pth"


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, Path]:
    """Each family's best checkpoint exported by `cinematic export`, then copied alone into its own
    empty folder (nothing of the run beside it)."""
    out = tmp_path_factory.mktemp("exports")
    alone = {}
    for family in RUNS:
        path = out / f"{family}.cinematic"
        assert main(["export", "--checkpoint", str(checkpoint(runs, family)), "--out", str(path)]) == 0
        folder = tmp_path_factory.mktemp(f"alone_{family}")
        alone[family] = Path(shutil.copy(path, folder / "model.cinematic"))
        assert sorted(p.name for p in folder.iterdir()) == ["model.cinematic"]
    return alone


def _mel(vocoder) -> np.ndarray:
    return np.random.default_rng(0).normal(-5.0, 1.5, (vocoder.n_mels, 12)).astype(np.float32)


# ------------------------------------------------------------------------------------ the same output


@pytest.mark.parametrize(
    "family,args,suffix",
    [
        ("music", ["generate", "music", "--length", "48", "--emotion", "sad", "--seed", "5"], ".mid"),
        (
            "lyrics",
            [
                "generate",
                "lyrics",
                "--language",
                "es",
                "--emotion",
                "sad",
                "--structure",
                "verse,chorus",
                "--max_new_tokens",
                "30",
                "--seed",
                "7",
            ],
            ".txt",
        ),  # fmt: skip
    ],
)
def test_exported_model_alone_writes_the_same_file_as_the_checkpoint(
    runs, exported, tmp_path, family, args, suffix
):
    for name, source in (("checkpoint", checkpoint(runs, family)), ("export", exported[family])):
        assert main([*args, "--checkpoint", str(source), "--out", str(tmp_path / f"{name}{suffix}")]) == 0
    assert (tmp_path / f"checkpoint{suffix}").read_bytes() == (tmp_path / f"export{suffix}").read_bytes()


def test_exported_music_audio_model_alone_generates_the_same_audio(runs, exported):
    trained = cinematic.load(checkpoint(runs, "music_audio"))  # finds its recorded vocoder
    alone = cinematic.load(exported["music_audio"])
    a = trained.generate(emotion="sad", duration=0.4, seed=3)
    b = alone.generate(emotion="sad", duration=0.4, seed=3)
    assert a.shape == b.shape and len(a) > 0 and np.abs(a - b).max() <= 1e-6


def test_exported_voice_alone_speaks_the_same_audio(runs, exported):
    trained = cinematic.load(checkpoint(runs, "voice"))
    alone = cinematic.load(exported["voice"])
    speaker = trained.speakers[0]
    a = trained.synthesize(TEXT, language="en", speaker=speaker)
    b = alone.synthesize(TEXT, language="en", speaker=speaker)
    assert a.shape == b.shape and len(a) > 0 and np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize("family", ["vocoder", "vocoder_music"])
def test_exported_vocoder_alone_vocodes_the_same_audio(runs, exported, family, tmp_path):
    trained = cinematic.load(checkpoint(runs, family))
    alone = cinematic.load(exported[family])
    mel = _mel(trained)
    assert np.abs(trained.vocode(mel) - alone.vocode(mel)).max() <= 1e-6
    np.save(tmp_path / "mel.npy", mel)  # and through `cinematic vocode`
    assert main(["vocode", "--checkpoint", str(exported[family]), "--mel", str(tmp_path / "mel.npy"),
                 "--out", str(tmp_path / "out.wav")]) == 0  # fmt: skip


# ------------------------------------------------------------------------------------ what is in it


def test_export_holds_what_generation_needs_and_is_much_smaller(runs, exported, capsys):
    from safetensors import safe_open

    sizes = {}
    for family, path in exported.items():
        with safe_open(str(path), framework="pt") as handle:  # plain safetensors + JSON metadata
            metadata = handle.metadata()
        assert metadata["format"] == EXPORT_FORMAT and metadata["format_version"] == "1"
        model = read_export(path)
        assert set(model) == {"format_version", "task", "config", "model", "ema", "task_state", "step",
                              "epoch", "export"}  # fmt: skip  # no optimizer, scheduler, RNG, data_dir
        assert model["ema"] == {} and model["export"]["family"] == family
        source = checkpoint(runs, family)
        assert model["export"]["source_sha1"] == file_sha1(source)
        original = torch.load(source, map_location="cpu", weights_only=True)
        assert set(model["config"]) <= set(original["config"]) and len(model["config"]) == 1
        total = source.stat().st_size
        if family in COMPANION:  # the vocoder inside, GAN discriminators left out
            vocoder = model["task_state"]["vocoder" if family == "music_audio" else "vocoder_checkpoint"]
            assert vocoder["task"] == COMPANION[family] and set(vocoder["model"]) == {"generator"}
            total += checkpoint(runs, COMPANION[family]).stat().st_size
        if family.startswith("vocoder"):
            assert set(model["model"]) == {"generator"}
        for name, weights in model["model"].items():
            expected = original["model"][name]
            assert weights.keys() == expected.keys()
            assert all(torch.equal(weights[k], expected[k]) for k in weights)
        sizes[family] = (path.stat().st_size, total)
        assert path.stat().st_size < 0.5 * total, (family, sizes[family])
    with capsys.disabled():
        print("\nexport sizes (exported / training checkpoint incl. its vocoder's):")
        for family, (size, total) in sizes.items():
            print(f"  {family:14s} {size / 1e6:6.2f} MB / {total / 1e6:6.2f} MB")


def test_reading_an_export_is_the_checkpoint_dict_the_loaders_take(runs, exported):
    for family, path in exported.items():
        assert read_checkpoint(path)["task"] == read_checkpoint(checkpoint(runs, family))["task"]
    with pytest.raises(UserError, match="a vocoder_music model, which generates without a vocoder"):
        from cinematic.export import export_model

        export_model(checkpoint(runs, "vocoder_music"), runs / "x.cinematic", vocoder="anything")


def test_an_export_of_an_export_is_the_same_model(exported, tmp_path):
    again = tmp_path / "again.cinematic"
    assert main(["export", "--checkpoint", str(exported["voice"]), "--out", str(again)]) == 0
    a, b = read_export(exported["voice"]), read_export(again)
    vocoder_a, vocoder_b = a["task_state"]["vocoder_checkpoint"], b["task_state"]["vocoder_checkpoint"]
    for x, y in ((a["model"], b["model"]), (vocoder_a["model"], vocoder_b["model"])):
        assert all(torch.equal(x[m][k], y[m][k]) for m in x for k in x[m])


def test_quickstart_step_exports_every_run_of_a_work_folder(runs, tmp_path):
    from cinematic.export import export_runs

    written = export_runs(runs / "awork", tmp_path)
    assert sorted(p.name for p in written) == ["music.cinematic", "vocoder_music.cinematic"]
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in written)  # as a plain open() makes
    assert cinematic.load(tmp_path / "music.cinematic").vocoder.n_mels == 48  # the vocoder inside


# ------------------------------------------------------------------------- a run folder that moved


def test_a_moved_work_folder_generates_without_vocoder(runs, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "deeper"
    for work in ("work", "awork"):
        shutil.copytree(runs / work, moved / work, ignore=shutil.ignore_patterns("cache", "logs"))
    music = moved / "awork" / "music" / "checkpoints" / "best.pth"
    voice = moved / "work" / "voice" / "checkpoints" / "best.pth"
    state = read_checkpoint(music)["task_state"]["vocoder"]
    assert str(runs) not in json.dumps(state)  # no absolute path: a hash and a relative path
    out = tmp_path / "moved.wav"
    assert main(["generate", "music", "--checkpoint", str(music), "--duration", "0.3", "--emotion", "sad",
                 "--seed", "3", "--out", str(out)]) == 0  # fmt: skip
    assert main(["synthesize", "--checkpoint", str(voice), "--text", TEXT, "--speaker",
                 cinematic.load(voice).speakers[0], "--out", str(tmp_path / "voice.wav")]) == 0  # fmt: skip
    # the moved copy is what it used: the same audio as the original run
    original = cinematic.load(checkpoint(runs, "music_audio")).generate(emotion="sad", duration=0.3, seed=3)
    assert (
        np.abs(cinematic.load(music).generate(emotion="sad", duration=0.3, seed=3) - original).max() <= 1e-6
    )

    # the vocoder renamed: found by content among the work folder's checkpoints
    vocoders = moved / "awork" / "vocoder_music" / "checkpoints"
    (vocoders / "best.pth").rename(vocoders / "kept.pth")
    (vocoders / "last.pth").unlink(missing_ok=True)
    assert cinematic.load(music).vocoder.n_mels == 48
    # gone: exit 2, naming the file it needs by name and hash
    (vocoders / "kept.pth").unlink()
    capsys.readouterr()
    assert main(["generate", "music", "--checkpoint", str(music), "--duration", "0.3",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert state["sha1"] in err and "best.pth" in err and "--vocoder" in err


def test_old_checkpoints_with_an_absolute_vocoder_path_still_find_it(runs, tmp_path):
    """Checkpoints written before references record the vocoder's absolute path."""
    moved = tmp_path / "moved"
    shutil.copytree(runs / "awork", moved, ignore=shutil.ignore_patterns("cache", "logs"))
    music = moved / "music" / "checkpoints" / "best.pth"
    old = torch.load(music, map_location="cpu", weights_only=True)
    old["task_state"]["vocoder"] = str(runs / "awork" / "vocoder_music" / "checkpoints" / "best.pth")
    torch.save(old, music)
    assert cinematic.load(music).vocoder.n_mels == 48  # the path itself
    old["task_state"]["vocoder"] = "/gone/work/vocoder_music/checkpoints/best.pth"
    torch.save(old, music)
    assert cinematic.load(music).vocoder.n_mels == 48  # the same run in the moved work folder
    out = tmp_path / "old.cinematic"
    assert main(["export", "--checkpoint", str(music), "--out", str(out)]) == 0
    assert read_export(out)["task_state"]["vocoder"]["task"] == "vocoder_music"


# ------------------------------------------------------------------------------------------ bad input


def _generate(path: Path, out: Path) -> list[str]:
    return ["generate", "music", "--checkpoint", str(path), "--length", "8", "--out", str(out)]


@pytest.mark.parametrize("keep", [20, 0.5])
def test_a_truncated_export_exits_2_naming_the_file(exported, tmp_path, capsys, keep):
    data = exported["music"].read_bytes()
    broken = tmp_path / "broken.cinematic"
    broken.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    assert main(_generate(broken, tmp_path / "x.mid")) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and "truncated" in err


def test_resuming_from_an_export_exits_2_saying_why(exported, demo_data, tmp_path, capsys):
    assert main(["train", "lyrics", "--config", "tiny", "--data_dir", str(demo_data / "lyrics"),
                 "--work_dir", str(tmp_path), "--resume", str(exported["lyrics"])]) == 2  # fmt: skip
    assert "is an exported model" in capsys.readouterr().err


def test_an_export_of_an_unknown_format_version_exits_2_naming_the_file(exported, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(exported["music"]), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    newer = tmp_path / "newer.cinematic"
    save_file(tensors, str(newer), metadata={**metadata, "format_version": "2"})
    assert main(_generate(newer, tmp_path / "x.mid")) == 2
    err = capsys.readouterr().err
    assert str(newer) in err and "format version '2'" in err and "upgrade cinematic" in err

    plain = tmp_path / "weights.safetensors"  # weights without cinematic's metadata
    save_file(tensors, str(plain))
    assert main(_generate(plain, tmp_path / "x.mid")) == 2
    assert str(plain) in capsys.readouterr().err


def test_a_vocoder_at_other_mel_settings_is_refused_and_nothing_is_written(runs, tmp_path, capsys):
    wrong = checkpoint(runs, "vocoder_music")  # 44.1 kHz, 48 mels: not the voice model's front end
    out = tmp_path / "voice.cinematic"
    assert main(["export", "--checkpoint", str(checkpoint(runs, "voice")), "--vocoder", str(wrong),
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(wrong) in err and "n_mels" in err and "sample_rate" in err
    assert not out.exists() and not list(tmp_path.iterdir())
    # the same mismatch given at generation time names the file too
    assert main(["generate", "music", "--checkpoint", str(checkpoint(runs, "music_audio")), "--vocoder",
                 str(checkpoint(runs, "vocoder")), "--duration", "0.2", "--out", str(tmp_path / "x.wav")]) == 2  # fmt: skip
    assert str(checkpoint(runs, "vocoder")) in capsys.readouterr().err


# ------------------------------------------------------------------------------ pre-redesign checkpoints

V1 = REPO_ROOT / "tests" / "fixtures" / "v1"


@pytest.mark.parametrize("run,vocoder", [("music", None), ("lyrics", None), ("vocoder", None),
                                         ("voice", "vocoder"), ("music_audio", "vocoder_music")])  # fmt: skip
def test_pre_redesign_checkpoints_export_with_their_vocoder(run, vocoder, tmp_path):
    """Their recorded vocoder paths point into the machine that made them: --vocoder names it."""
    paths = [V1 / name / "checkpoints" / "best.pth" for name in (run, vocoder) if name]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"tests/fixtures/v1 has no {run} (and {vocoder}) checkpoint")
    out = tmp_path / f"{run}.cinematic"
    extra = ["--vocoder", str(paths[1])] if vocoder else []
    assert main(["export", "--checkpoint", str(paths[0]), *extra, "--out", str(out)]) == 0
    assert out.stat().st_size < paths[0].stat().st_size
    assert type(cinematic.load(out)) is type(
        cinematic.load(paths[0], **({"vocoder": paths[1]} if vocoder else {}))
    )


# ------------------------------------------------------------------------------------ the file format


def test_the_file_gives_back_the_dict_it_was_written_from(tmp_path):
    from cinematic.checkpoint_io import inference_checkpoint, write_export

    weight = torch.arange(12, dtype=torch.float32).view(3, 4)
    checkpoint = {
        "format_version": 1,
        "task": "toy",
        "config": {"toy_model": {"width": 3}, "training": {"lr": 1e-3}},
        "data_dir": "/somewhere/private",
        "model": {"net": {"w": weight, "b": torch.ones(3)}, "critic": {"w": torch.zeros(2)}},
        "ema": {"net": {"w": weight * 2, "b": torch.zeros(3)}},
        "optimizers": {"main": {"state": {0: {"exp_avg": torch.ones(3)}}}},
        "task_state": {
            "shape": torch.Size([2, 3]),
            "pair": (1, "a", None),
            "by_id": {3: "three", "__x": 1.5},
            "blob": b"\x00\xff",
            "dtype": torch.bfloat16,
            "nan": float("nan"),
            "table": weight.t(),  # not contiguous
            "same": [weight, weight],  # one storage: stored once
            "ints": torch.tensor([1, 2], dtype=torch.int16),
        },
        "step": 7,
        "epoch": 1,
    }
    model = inference_checkpoint(checkpoint, ["net"], ["toy_model"])
    assert set(model["model"]) == {"net"} and torch.equal(model["model"]["net"]["w"], weight * 2)  # EMA
    assert model["config"] == {"toy_model": {"width": 3}} and "optimizers" not in model
    path = write_export(model, tmp_path / "toy.cinematic", {"note": "test"})
    back = read_export(path)
    state = back["task_state"]
    assert back["export"]["note"] == "test" and back["step"] == 7 and back["ema"] == {}
    assert state["shape"] == torch.Size([2, 3]) and isinstance(state["shape"], torch.Size)
    assert state["pair"] == (1, "a", None) and state["by_id"] == {3: "three", "__x": 1.5}
    assert state["blob"] == b"\x00\xff" and state["dtype"] is torch.bfloat16 and np.isnan(state["nan"])
    assert torch.equal(state["table"], weight.t()) and state["ints"].dtype == torch.int16
    assert state["same"][0] is state["same"][1] and torch.equal(state["same"][0], weight)
    assert list(state) == list(model["task_state"])  # order kept (label vocabularies rely on it)

    with pytest.raises(UserError, match="task_state.bad: a set value"):
        write_export({**model, "task_state": {"bad": {1, 2}}}, tmp_path / "bad.cinematic")
