"""The `cinematic` command tree and the seed scripts: entry points, defaults, and clean user errors."""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cinematic import registry
from cinematic.cli import build_parser, main
from cinematic.launch import resolve_run_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, handler) for every leaf of the command tree."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
    if parser.get_default("handler"):
        yield prefix, parser.get_default("handler")


def test_python_dash_m_cinematic_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "cinematic", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for command in (
        "train",
        "generate",
        "synthesize",
        "vocode",
        "clone",
        "evaluate",
        "config",
        "data",
        "quickstart",
    ):
        assert command in result.stdout


def test_every_command_of_the_design_has_an_importable_handler():
    commands = dict(_commands(build_parser()))
    expected = {
        ("train",), ("generate", "music"), ("generate", "lyrics"), ("synthesize",), ("vocode",), ("clone",),
        ("evaluate", "voice"), ("config", "show"), ("data", "demo"), ("data", "preprocess"), ("data", "tokenize"),
        ("data", "clean"), ("data", "report"), ("data", "augment"), ("quickstart",),
    }  # fmt: skip
    assert expected <= set(commands)
    for words, handler in commands.items():
        module, _, function = handler.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), " ".join(words)


def test_unknown_task_exits_2_with_a_usage_message(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "poetry", "--data_dir", "x"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'poetry'" in err and "Traceback" not in err


def test_missing_data_dir_exits_2_with_a_message_and_no_traceback(tmp_path, capsys):
    code = main(["train", "music", "--config", "tiny", "--data_dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2
    assert "data folder not found" in err and "nowhere" in err and "cinematic data demo" in err
    assert "Traceback" not in err


def test_missing_config_file_exits_2(tmp_path, capsys):
    assert (
        main(["train", "lyrics", "--config", str(tmp_path / "nope.yaml"), "--data_dir", str(tmp_path)]) == 2
    )
    assert "config file not found" in capsys.readouterr().err


def test_config_and_data_dir_default_to_the_seeds_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("training:\n  epochs: 3\n", encoding="utf-8")
    (tmp_path / "data" / "voice").mkdir(parents=True)
    args = build_parser().parse_args(["train", "voice"])
    cfg, data_dir, checkpoint = resolve_run_config(args, registry.get("voice"))
    assert checkpoint is None
    assert cfg.training.epochs == 3  # ./config.yaml was read
    assert data_dir == Path("data/voice")


@pytest.mark.parametrize("flag", [["--local-rank=0"], ["--local_rank", "0"], ["--local-rank", "3"]])
def test_train_parser_accepts_the_launchers_local_rank(flag):
    args = build_parser().parse_args(["train", "music", *flag])
    assert args.local_rank in (0, 3)


@pytest.mark.parametrize("script", ["train_music.py", "train_voice.py", "train_lyrics.py"])
def test_seed_scripts_accept_local_rank_and_fail_cleanly(script, tmp_path, monkeypatch, capsys):
    """What `python -m torch.distributed.launch ... train_X.py` runs: the flag is accepted, and a missing
    data folder is a message and exit status 2."""
    argv = [script, "--local-rank=0", "--config", "tiny", "--data_dir", str(tmp_path / "missing")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "data folder not found" in err and "unrecognized arguments" not in err


def test_seed_script_runs_as_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "train_music.py", "--local_rank=0", "--config", "tiny", "--data_dir", str(tmp_path / "x")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "data folder not found" in result.stderr and "Traceback" not in result.stderr


def test_seed_script_trains_under_the_deprecated_distributed_launcher(tmp_path, demo_data):
    """The seed README's `python -m torch.distributed.launch --nproc_per_node=N train_*.py`: the old
    launcher passes --local-rank to each process; both join one gloo group and train together."""
    with socket.socket() as probe:  # a free port, so parallel test runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    work = tmp_path / "wd"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", "train_lyrics.py", "--config", "tiny", "--data_dir", str(demo_data / "lyrics"),
         "--work_dir", str(work), "--set", "training.max_steps=4", "--set", "logging.logger=none"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stderr
    checkpoint = torch.load(work / "lyrics" / "checkpoints" / "last.pth", weights_only=True)
    assert checkpoint["step"] == 4 and checkpoint["task"] == "lyrics"


def test_data_demo_refuses_a_folder_with_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["data", "demo", str(tmp_path)]) == 2
    assert "not made by `cinematic data demo`" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["music", "voice", "vocoder", "lyrics"])
def test_empty_data_dir_exits_2_with_a_message(task, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", task, "--config", "tiny", "--data_dir", str(empty), "--work_dir", str(tmp_path / "wd")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(empty) in err and "Traceback" not in err
