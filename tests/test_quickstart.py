"""`cinematic quickstart` orchestration: demo data, then the registered families' stages in order.

The model stages themselves are tested by their tasks; here they are replaced by a fake stage so this
stays fast, and the demo data is copied from the session's `demo_data`."""

from __future__ import annotations

import argparse
import shutil

import pytest

from cinematic import quickstart as qs_module
from cinematic.errors import UserError


def _fake_stage(qs: qs_module.Quickstart):
    assert (qs.data_root / "music").is_dir() and (qs.data_root / "voice").is_dir()
    assert qs.config.training.work_dir == str(qs.root / "runs")
    cfg = qs.fresh_config()
    cfg.training.epochs = 99
    assert qs.config.training.epochs != 99  # a stage's copy is private
    qs.report("fake", "val/loss", 2.5, 1.25)
    sample = qs.samples_dir / "fake.txt"
    sample.write_text("sample", encoding="utf-8")
    return [sample]


@pytest.fixture
def patched(monkeypatch, demo_data):
    import cinematic.data.demo as demo
    from cinematic.training.family import ModelFamily

    calls = []

    def copy_demo(out_dir, seed=0, progress=None):
        calls.append(seed)
        shutil.copytree(demo_data, out_dir)
        return {}

    order: list[str] = []

    def stage(name: str):
        def run(qs):
            order.append(name)
            return _fake_stage(qs) if name == "fake" else []

        return run

    families = [  # registered out of order: the stages run by quickstart_order
        ModelFamily(
            name="fake",
            task=object,
            quickstart=stage("fake"),
            quickstart_title="fake model",
            quickstart_order=2,
        ),
        ModelFamily(name="first", task=object, quickstart=stage("first"), quickstart_order=1),
        ModelFamily(name="silent", task=object),  # no stage
    ]
    monkeypatch.setattr(demo, "write_demo_data", copy_demo)
    monkeypatch.setattr(qs_module.registry, "families", lambda: {f.name: f for f in families})
    calls.append(order)
    return calls


def test_quickstart_makes_data_and_runs_the_registered_stages_in_order(patched, tmp_path, capsys):
    args = argparse.Namespace(work_dir=str(tmp_path / "wd"))
    assert qs_module.quickstart_command(args) == 0
    out = capsys.readouterr().out
    root = tmp_path / "wd" / "quickstart"
    order = patched.pop(0)
    assert patched == [0]  # demo data made once, with seed 0
    assert order == ["first", "fake"]
    assert "== fake model" in out
    assert (root / "data" / "lyrics").is_dir()
    assert "[fake] val/loss: 2.5000 → 1.2500 (↓)" in out
    assert str(root / "samples" / "fake.txt") in out
    assert "tensorboard --logdir" in out

    assert qs_module.quickstart_command(args) == 0  # a second run replaces the first
    assert patched == [0, 0]


def test_quickstart_never_deletes_a_folder_it_did_not_make(tmp_path):
    root = tmp_path / "quickstart"
    root.mkdir()
    (root / "precious.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(UserError, match="not made by the quickstart"):
        qs_module.quickstart_command(argparse.Namespace(work_dir=str(tmp_path)))
    assert (root / "precious.txt").read_text(encoding="utf-8") == "keep"
