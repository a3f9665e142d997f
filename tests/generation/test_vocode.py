"""Vocoder inference loading: the `vocoder` section → `HiFiGANConfig` mapping, the structural checkpoint
check, and checkpoints with and without the stored model config."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from cinematic.configs.model_config import MelConfig, VocoderConfig
from cinematic.errors import UserError
from cinematic.generation.vocode import Vocoder, hifigan_config
from cinematic.models.hifigan import Generator, HiFiGANConfig

MEL = MelConfig()


def test_section_errors_name_the_vocoder_section():
    with pytest.raises(UserError, match=r"vocoder config: upsample_rates \[8, 8, 2\] multiply to 128.*256"):
        hifigan_config(VocoderConfig(upsample_rates=[8, 8, 2], upsample_kernel_sizes=[16, 16, 4]), MEL)
    with pytest.raises(UserError, match="vocoder config: upsample_kernel_sizes: kernel 5 .*even number"):
        hifigan_config(VocoderConfig(upsample_kernel_sizes=[16, 16, 4, 5]), MEL)


def test_section_keys_override_the_preset_and_set_the_discriminators():
    section = VocoderConfig(
        preset="v3", upsample_initial_channel=32, mpd_periods=[2, 3], discriminator_width=0.5
    )
    cfg = hifigan_config(section, MEL)
    assert cfg.upsample_initial_channel == 32 and cfg.resblock == "2"  # the override, the preset's rest
    assert cfg.mpd_periods == (2, 3) and cfg.discriminator_width == 0.5 and cfg.n_mels == MEL.n_mels


def _checkpoint(layout: str) -> tuple[dict, Generator, Generator]:
    """A vocoder checkpoint with its model settings stored the current way ("model_config") or the way
    checkpoints written before it held them ("generator_config": plain lists, no discriminator keys);
    its EMA generator differs from the trained one."""
    cfg = HiFiGANConfig.from_preset("v3", MEL.n_mels, MEL.hop_length, upsample_initial_channel=16)
    torch.manual_seed(0)
    trained, ema = Generator(cfg), Generator(cfg)
    stored = asdict(cfg)
    if layout == "generator_config":
        stored = {k: v for k, v in stored.items() if k not in ("mpd_periods", "discriminator_width")}
        stored = {k: [list(x) for x in v] if k == "resblock_dilation_sizes" else v for k, v in stored.items()}
    checkpoint = {
        "format_version": 1,
        "task": "vocoder",
        "config": {},
        "model": {"generator": trained.state_dict()},
        "ema": {"generator": ema.state_dict()},
        "task_state": {"mel_config": MEL.model_dump(), layout: stored},
    }
    return checkpoint, trained, ema


@pytest.mark.parametrize("layout", ["model_config", "generator_config"])
def test_checkpoints_with_and_without_the_stored_model_config_load_the_ema_generator(layout):
    checkpoint, trained, ema = _checkpoint(layout)
    mel = torch.randn(1, 80, 6) - 4.0
    with torch.inference_mode():
        expected_ema = ema.eval().remove_weight_norm()(mel)[0, 0].numpy()
        expected_trained = trained.eval().remove_weight_norm()(mel)[0, 0].numpy()
    vocoder = Vocoder.from_checkpoint(checkpoint)
    assert vocoder.generator.cfg.upsample_initial_channel == 16
    np.testing.assert_allclose(vocoder.vocode(mel[0]), expected_ema, atol=1e-4)
    plain = Vocoder.from_checkpoint(checkpoint, use_ema=False)
    np.testing.assert_allclose(plain.vocode(mel[0]), expected_trained, atol=1e-4)
    assert np.abs(expected_ema - expected_trained).max() > 1e-3  # the two really differ


def test_a_checkpoint_without_generator_or_mel_config_is_refused():
    checkpoint, _, _ = _checkpoint("model_config")
    voice = {**checkpoint, "task": "voice", "model": {"acoustic": {}}}
    with pytest.raises(UserError, match=r"'voice' checkpoint, not a vocoder's"):
        Vocoder.from_checkpoint(voice)
    no_mel = {**checkpoint, "task_state": {"model_config": checkpoint["task_state"]["model_config"]}}
    with pytest.raises(UserError, match="not a vocoder's"):
        Vocoder.from_checkpoint(no_mel)
    # the task key does not matter: a music-route vocoder (or a renamed task) loads the same way
    assert Vocoder.from_checkpoint({**checkpoint, "task": "vocoder_music"}).n_mels == 80
