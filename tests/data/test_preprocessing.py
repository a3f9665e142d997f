"""`cinematic data preprocess FAMILY DIR` fills the cache a training run reads: after it, the same
build finds every feature cached and computes nothing again."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from cinematic import registry
from cinematic.cli import main
from cinematic.data.preprocessing import FeatureCache, feature_key
from cinematic.training.task import BuildContext


def test_feature_cache_round_trips_and_keys_follow_content_and_settings(tmp_path):
    from cinematic.configs.model_config import MelConfig

    store = FeatureCache(tmp_path)
    key = feature_key("abc", "voice", MelConfig())
    assert store.load(key) is None
    store.store(key, {"mel": np.arange(6, dtype=np.float32).reshape(2, 3)})
    assert np.array_equal(store.load(key)["mel"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert feature_key("abd", "voice", MelConfig()) != key  # other content
    assert feature_key("abc", "voice", MelConfig(n_mels=40)) != key  # other settings
    store.path_for(key).write_bytes(b"damaged")
    assert store.load(key) is None  # a damaged entry is recomputed, not a crash


def _voice_data(demo_data, tmp_path):
    data = tmp_path / "voice"
    for speaker in sorted(p for p in (demo_data / "voice").iterdir() if p.is_dir())[:2]:
        shutil.copytree(speaker, data / speaker.name)
    return data


def test_preprocess_voice_fills_the_cache_training_reads(demo_data, tmp_path, monkeypatch, capsys):
    import cinematic.data.voice as voice_data

    data = _voice_data(demo_data, tmp_path)
    work = tmp_path / "work"
    sets = ["--config", "tiny", "--set", "voice_model.speaker_encoder=false"]
    assert main(["data", "preprocess", "voice", str(data), "--work_dir", str(work), *sets]) == 0
    assert re.search(r"voice: \d+ training and \d+ validation items", capsys.readouterr().out)
    assert any((work / "cache").rglob("*.npz"))

    def no_extraction(*args, **kwargs):
        raise AssertionError("a feature was computed again instead of read from the cache")

    monkeypatch.setattr(voice_data, "extract_features", no_extraction)
    cfg = registry.load_config("tiny", ["voice_model.speaker_encoder=false", f"training.work_dir={work}"])
    ctx = BuildContext(run_dir=work / "voice", cache_dir=work / "cache", device=torch.device("cpu"))
    built = registry.get("voice").task_instance().build(cfg, data, ctx)
    assert len(built.train_set) > 0


def test_preprocess_music_caches_the_tokens_of_every_midi_file(demo_data, tmp_path):
    data = tmp_path / "music"
    data.mkdir()
    for midi in sorted((demo_data / "music").glob("*.mid"))[:4]:
        shutil.copy(midi, data / midi.name)
    work = tmp_path / "work"
    assert main(["data", "preprocess", "music", str(data), "--work_dir", str(work), "--config", "tiny"]) == 0
    assert len(list((work / "cache" / "music_tokens").glob("*.npy"))) == 4


def test_preprocess_of_a_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "preprocess", "lyrics", str(tmp_path / "nope")]) == 2
    assert "data folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["voice", "music", "lyrics"])
def test_preprocess_lists_the_registered_families(family):
    from cinematic.cli import build_parser

    args = build_parser().parse_args(["data", "preprocess", family, "x"])
    assert args.kind == family and args.handler == "cinematic.launch:preprocess_command"
