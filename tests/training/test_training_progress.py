"""Progress a user can see (issue 21): the live bar on a terminal, heartbeat lines in a log file, the
messages before the first step and during a long validation, and the pieces behind them."""

from __future__ import annotations

import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import HERE, toy_overrides
from toy_tasks import make_task

from cinematic.training.logging import Heartbeat
from cinematic.training.metrics import LiveLoss
from cinematic.training.trainer import run_training

HEARTBEAT_THREAD = "cinematic-heartbeat"


def _toy_command(tmp_path: Path, *sets: str) -> list[str]:
    from cinematic.registry import load_config

    cfg = load_config(None, [*toy_overrides(tmp_path / "work"), *sets])
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(cfg.to_yaml())
    (tmp_path / "data").mkdir(exist_ok=True)
    script = str(HERE / "toy_tasks.py")
    return [sys.executable, script, "run", "--config", str(cfg_path), "--data-dir", str(tmp_path / "data")]


def _toy_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(HERE), **extra}


def _run_under_a_terminal(cmd: list[str], env: dict[str, str], deadline: float = 60.0) -> str:
    """Run `cmd` with a pseudo-terminal as stdin/stdout/stderr and return everything it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        try:
            os.execve(cmd[0], cmd, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
        finished, status = os.waitpid(pid, os.WNOHANG)
        while not finished and time.monotonic() < end:  # the terminal closes just before the exit
            time.sleep(0.05)
            finished, status = os.waitpid(pid, os.WNOHANG)
        if not finished:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the run did not finish in time:\n" + b"".join(chunks).decode(errors="replace"))
    assert os.waitstatus_to_exitcode(status) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_terminal_shows_a_live_bar_with_step_total_and_eta(tmp_path):
    # log_every_steps is never reached before the end: all the user sees while it trains is the bar.
    cmd = _toy_command(
        tmp_path,
        "training.max_steps=3",
        "training.validate_every_steps=100",
        "logging.log_every_steps=1000",
        "logging.progress_bar=null",  # terminal detection
        "logging.logger=none",
    )
    out = _run_under_a_terminal(cmd, _toy_env(TOY_SLEEP="0.4"))
    frames = re.split(r"[\r\n]+", out)
    first = next((i for i, f in enumerate(frames) if re.search(r"\b1/3 \|.*ETA \d\d:\d\d", f)), None)
    assert first is not None, out
    assert "loss" in frames[first] and "samples/s" in frames[first] and "epoch 0" in frames[first]
    later = [f for f in frames[first:] if re.search(r"\b3/3 \|.*ETA", f)]
    assert later and "val/loss" in later[-1]  # the last validation metric joins the bar
    # Log lines printed while the bar is up stand on their own line (tqdm.write), never inside a frame.
    warmup = [f for f in frames if "first step (warm-up)" in f]
    assert warmup and all("|" not in f and f.rstrip().endswith("first step (warm-up)…") for f in warmup)
    assert any("building the toy run" in f for f in frames[:first])
    assert "step 3/3  loss" not in out  # the plain lines are for logs without a terminal


def test_log_file_gets_heartbeats_during_slow_steps(tmp_path):
    cmd = _toy_command(
        tmp_path,
        "training.max_steps=2",
        "training.validate_every_steps=100",
        "logging.log_every_steps=1000",
        "logging.heartbeat_seconds=0.5",
        "logging.logger=none",
    )
    done = subprocess.run(
        cmd, env=_toy_env(TOY_SLEEP="1.5"), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()

    def index(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no line matches {pattern!r} in:\n{done.stderr}"
        return found[0]

    warmup = index(r"INFO cinematic\.training: first step \(warm-up\)…$")
    beat1 = index(r"still working: step 1/2, first step \(warm-up\) for \d+\.\d s$")
    first_done = index(r"first step done in \d+\.\d s")
    beat2 = index(r"still working: step 2/2, training for \d+\.\d s$")
    final = index(r"step 2/2  loss .* ETA ")
    assert index("building the toy run") < warmup < beat1 < first_done < beat2 < final
    beats = [line for line in lines if "still working" in line and "step 2/2" in line]
    assert len(beats) >= 2  # at least every 0.5 s during a 1.5 s step, not just once
    assert "\r" not in done.stderr  # no bar in a log file


# ------------------------------------------------------------------------------------- in process


def _heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == HEARTBEAT_THREAD]


def test_heartbeat_covers_a_slow_validation_and_stops_with_the_run(toy_cfg, data_dir, caplog, monkeypatch):
    from toy_tasks import ToyRegression

    real_validate = ToyRegression.validate

    def slow_validate(self, models, loader):
        batches = list(loader)  # goes through the trainer's progress wrapper
        time.sleep(0.6)
        return real_validate(self, models, batches)

    monkeypatch.setattr(ToyRegression, "validate", slow_validate)
    cfg = toy_cfg(max_steps=2, validate_every_steps=100)
    cfg.logging.heartbeat_seconds = 0.2
    with caplog.at_level(logging.INFO, logger="cinematic.training"):
        run_training(make_task("toy"), cfg, data_dir)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        re.fullmatch(r"still working: step 2/2, validating \(batch 2/2\) for \d\.\d s", m) for m in messages
    )
    assert not _heartbeat_threads()


def test_fast_steps_print_no_heartbeat_and_null_turns_it_off(toy_cfg, data_dir, caplog):
    cfg = toy_cfg(max_steps=4)
    assert cfg.logging.heartbeat_seconds == 30
    with caplog.at_level(logging.INFO, logger="cinematic.training"):
        run_training(make_task("toy"), cfg, data_dir)
    assert not [r for r in caplog.records if "still working" in r.getMessage()]
    off = Heartbeat(None)
    off.start()
    assert off._thread is None and not _heartbeat_threads()


def test_heartbeat_never_runs_on_other_ranks():
    beat = Heartbeat(0.1, enabled=False)
    with beat.running():
        beat.doing("validating")
        assert not _heartbeat_threads()


def test_heartbeat_line_and_clean_stop(caplog):
    beat = Heartbeat(0.1)
    beat.total = 10
    with caplog.at_level(logging.INFO, logger="cinematic.training"), beat.running():
        beat.begin_step(3)
        time.sleep(0.35)
        assert len(_heartbeat_threads()) == 1
    assert not _heartbeat_threads()
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all(re.fullmatch(r"still working: step 3/10, training for 0\.\d s", x) for x in lines)


def test_live_loss_smooths_on_the_device_and_skips_non_finite_steps():
    live = LiveLoss(torch.device("cpu"), ["disc", "gen"], decay=0.5, every=0.0)
    live.add("disc", torch.tensor(100.0), 4, skipped=False)  # not the bar's phase: only its items count
    live.add("gen", torch.tensor(2.0), 4, skipped=False)
    live.add("disc", torch.tensor(1.0), 4, skipped=False)
    live.add("gen", torch.tensor(float("nan")), 4, skipped=True)
    live.add("disc", torch.tensor(1.0), 4, skipped=False)
    live.add("gen", torch.tensor(4.0), 4, skipped=False)
    loss, rate = live.read(world_size=2)
    assert loss == pytest.approx((0.5 * 0.5 * 2.0 + 0.5 * 4.0) / (1 - 0.5**2))
    assert rate > 0
    assert live.items == 0
