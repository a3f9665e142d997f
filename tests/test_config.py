"""Typed configuration: the seed's config.yaml, error messages a user can act on, overrides, presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cinematic.cli import main
from cinematic.errors import UserError
from cinematic.registry import config_class, config_from_dict, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path_or_raw, overrides=()) -> str:
    with pytest.raises(UserError) as info:
        if isinstance(path_or_raw, dict):
            config_from_dict(path_or_raw)
        else:
            load_config(path_or_raw, list(overrides))
    return str(info.value)


# ------------------------------------------------------------------------------------------ error messages


def test_unknown_key_names_its_path_and_the_closest_valid_key(tmp_path):
    message = _error(_write(tmp_path, "training:\n  lerning_rate: 1e-4\n"))
    assert "training.lerning_rate: unknown key; did you mean training.learning_rate?" in message
    assert "cfg.yaml" in message  # and the file it came from


def test_unknown_nested_and_top_level_keys_are_named_with_suggestions(tmp_path):
    message = _error(
        _write(tmp_path, "vocoder:\n  training:\n    learnig_rate: 2e-4\ntrainig:\n  epochs: 3\n")
    )
    assert (
        "vocoder.training.learnig_rate: unknown key; did you mean vocoder.training.learning_rate?" in message
    )
    assert "trainig: unknown key; did you mean training?" in message


def test_wrong_type_names_path_expected_type_and_value(tmp_path):
    message = _error(_write(tmp_path, "training:\n  epochs: lots\nmusic_model:\n  dropout: high\n"))
    assert "training.epochs: expected int, got 'lots'" in message
    assert "music_model.dropout: expected float, got 'high'" in message


def test_a_section_that_is_not_a_mapping_is_explained(tmp_path):
    assert "training: expected a mapping, got 5" in _error(_write(tmp_path, "training: 5\n"))


def test_out_of_range_value_names_the_key(tmp_path):
    message = _error(_write(tmp_path, "training:\n  learning_rate: -1\n"))
    assert "training.learning_rate" in message and "-1" in message


def test_bad_yaml_and_missing_file_are_user_errors(tmp_path):
    assert "not valid YAML" in _error(_write(tmp_path, "training: [unclosed\n"))
    assert "config file not found" in _error(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("training:\n  lerning_rate: 1e-4\n", "training.lerning_rate: unknown key; did you mean training.learning_rate?"),
        ("training:\n  epochs: lots\n", "training.epochs: expected int, got 'lots'"),
    ],
)  # fmt: skip
def test_cli_config_show_exits_2_with_the_message_and_no_traceback(tmp_path, capsys, text, expected):
    assert main(["config", "show", "--config", str(_write(tmp_path, text))]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_debug_flag_shows_the_traceback(tmp_path):
    bad = str(_write(tmp_path, "training:\n  epochs: lots\n"))
    for argv in (
        ["--debug", "config", "show", "--config", bad],
        ["config", "show", "--config", bad, "--debug"],
    ):
        with pytest.raises(UserError):
            main(argv)


# ------------------------------------------------------------------------------------------ values, overrides


def test_scientific_notation_is_a_float(tmp_path):
    cfg = load_config(
        _write(tmp_path, "training:\n  learning_rate: 1e-4\nvocoder:\n  training:\n    learning_rate: 3E-4\n")
    )
    assert isinstance(cfg.training.learning_rate, float) and cfg.training.learning_rate == 1e-4
    assert cfg.training_for("vocoder").learning_rate == 3e-4
    assert load_config(None, ["training.learning_rate=5e-5"]).training.learning_rate == 5e-5


def test_set_overrides_reach_the_resolved_config(capsys):
    cfg = load_config(REPO_ROOT / "config.yaml", ["training.epochs=3", "music_model.num_layers=2"])
    assert cfg.training.epochs == 3 and cfg.music_model.num_layers == 2
    assert main(["config", "show", "--config", str(REPO_ROOT / "config.yaml"), "--set", "training.epochs=3",
                 "--set", "music_model.num_layers=2", "--set", "training.amp=false"]) == 0  # fmt: skip
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["epochs"] == 3 and shown["music_model"]["num_layers"] == 2
    assert shown["training"]["amp"] is False
    assert shown["music_model"]["embed_dim"] == 768  # untouched keys keep the file's values


def test_set_overrides_are_validated_like_the_file():
    assert "training.epochs: expected int, got 'abc'" in _error(None, ["training.epochs=abc"])
    assert "did you mean training.epochs?" in _error(None, ["training.epoch=3"])
    assert "expected key.path=value" in _error(None, ["training.epochs"])


def test_config_show_output_loads_back_to_the_same_config(tmp_path, capsys):
    assert main(["config", "show", "--config", "tiny"]) == 0
    shown = _write(tmp_path, capsys.readouterr().out)
    assert load_config(shown) == load_config("tiny")


# ------------------------------------------------------------------------------------------ batch size alias


def test_data_batch_size_is_an_alias_of_training_batch_size():
    assert config_from_dict({"data": {"batch_size": 16}}).training.batch_size == 16
    same = config_from_dict({"data": {"batch_size": 16}, "training": {"batch_size": 16}})
    assert same.training.batch_size == 16


def test_two_different_batch_sizes_are_an_error():
    message = _error({"data": {"batch_size": 8}, "training": {"batch_size": 16}})
    assert "data.batch_size (8) and training.batch_size (16) differ" in message


def test_set_batch_size_replaces_the_files_alias():
    seed = REPO_ROOT / "config.yaml"  # writes data.batch_size: 8
    assert load_config(seed, ["training.batch_size=16"]).training.batch_size == 16
    assert load_config(seed, ["data.batch_size=4"]).training.batch_size == 4
    assert "differ" in _error(seed, ["data.batch_size=4", "training.batch_size=5"])


# ------------------------------------------------------------------------------------------ per-model training


def test_voice_follows_fastspeech2_and_vocoder_follows_hifigan_by_default():
    cfg = config_class()()
    voice, vocoder = cfg.training_for("voice"), cfg.training_for("vocoder")
    assert voice.scheduler == "inverse_sqrt" and voice.optimizer == "adam" and voice.betas == (0.9, 0.98)
    assert vocoder.optimizer == "adamw" and vocoder.betas == (0.8, 0.99) and vocoder.learning_rate == 2e-4
    assert vocoder.scheduler == "exponential" and vocoder.lr_decay == 0.999
    assert cfg.training_for("music") == cfg.training  # no block: the global keys


def test_model_training_block_merges_with_preset_and_global_keys():
    cfg = load_config(None, ["voice_model.training.learning_rate=5e-4", "training.epochs=7"])
    voice = cfg.training_for("voice")
    assert voice.learning_rate == 5e-4  # the user's override
    assert voice.scheduler == "inverse_sqrt" and voice.betas == (0.9, 0.98)  # the preset's other keys
    assert voice.epochs == 7  # global keys the block does not set
    assert cfg.training.learning_rate == 1e-4  # the global block is untouched


def test_tiny_preset_is_small_with_a_short_warmup():
    tiny = load_config("tiny")
    for task in ("music", "voice", "vocoder", "lyrics"):
        assert tiny.training_for(task).warmup_steps <= 50, task
    assert tiny.training.max_steps is not None and tiny.training.max_steps <= 100
    assert tiny.music_model.embed_dim <= 128 and tiny.lyrics_model.num_layers <= 2


# ------------------------------------------------------------------------------------------ the seed's file


def test_root_config_yaml_reproduces_the_seed_example_and_defaults():
    raw = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))
    assert raw == {
        "data": {"batch_size": 8, "sample_rate": 44100, "segment_duration": 10.0},
        "music_model": {"num_layers": 12, "num_heads": 12, "embed_dim": 768},
        "training": {"epochs": 100, "learning_rate": "1e-4", "amp": True},  # YAML 1.1 reads 1e-4 as text
    }
    cfg = load_config(REPO_ROOT / "config.yaml")
    assert (
        cfg.training.batch_size == 8 and cfg.data.sample_rate == 44100 and cfg.data.segment_duration == 10.0
    )
    assert (cfg.music_model.num_layers, cfg.music_model.num_heads, cfg.music_model.embed_dim) == (12, 12, 768)
    assert cfg.music_model.dropout == 0.1 and cfg.music_model.emotion_conditioning is True
    assert (cfg.training.epochs, cfg.training.learning_rate, cfg.training.amp) == (100, 1e-4, True)
    # The seed README's tables of defaults.
    voice = cfg.voice_model
    assert (voice.encoder_num_layers, voice.decoder_num_layers, voice.num_speakers, voice.num_mels) == (
        4,
        4,
        100,
        80,
    )
    lyrics = cfg.lyrics_model
    assert (lyrics.vocab_size, lyrics.num_layers, lyrics.languages) == (50257, 12, ["en", "es", "fr", "de"])
    assert lyrics.emotion_conditioning is True
    training = cfg.training
    assert (training.optimizer, training.scheduler, training.warmup_steps) == (
        "adamw",
        "cosine_warmup",
        10000,
    )
    assert training.gradient_clip_val == 1.0
    assert cfg.logging.wandb.project == "cinematic-music-generation"
