"""HiFi-GAN model: shapes per preset, config checks, discriminator outputs, weight-norm removal, losses,
and the fast inference generator's equality to the plain one. (The mapping of the `vocoder` config
section onto `HiFiGANConfig` is tested in tests/generation/test_vocode.py.)"""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from torch import nn

from cinematic.configs.model_config import MelConfig
from cinematic.models.hifigan import (
    Generator,
    HiFiGANConfig,
    InferenceGenerator,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    derive_upsample_rates,
    discriminate,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    parameter_count,
)

MEL = MelConfig()  # 22.05 kHz, hop 256, 80 mels


def preset(name: str, mel: MelConfig = MEL, **overrides) -> HiFiGANConfig:
    return HiFiGANConfig.from_preset(name, mel.n_mels, mel.hop_length, **overrides)


def tiny_generator(**overrides) -> Generator:
    torch.manual_seed(0)
    return Generator(preset("v3", upsample_initial_channel=32, **overrides))


@pytest.mark.parametrize("preset", ["v1", "v2", "v3"])
def test_output_length_is_frames_times_hop_for_every_preset(preset):
    # the preset's rates, kernels and MRF blocks with fewer channels: the length does not depend on width
    generator = Generator(HiFiGANConfig.from_preset(preset, 80, 256, upsample_initial_channel=64)).eval()
    with torch.no_grad():
        for frames in (1, 7):
            wav = generator(torch.randn(2, 80, frames))
            assert wav.shape == (2, 1, frames * 256)
            assert wav.abs().max() <= 1.0  # tanh output


def test_preset_parameter_counts_match_the_paper():
    # Kong et al. 2020, Table 1: V1 13.92M, V2 0.92M, V3 1.46M generator parameters.
    for name, millions in (("v1", 13.92), ("v2", 0.92), ("v3", 1.46)):
        count = parameter_count(Generator(preset(name))) / 1e6
        assert abs(count - millions) / millions < 0.01, (name, count)


def test_upsample_rates_that_do_not_multiply_to_the_hop_are_a_clear_error():
    with pytest.raises(ValueError, match=r"multiply to 128.*hop_length is 256"):
        preset("v1", upsample_rates=[8, 8, 2], upsample_kernel_sizes=[16, 16, 4])


def test_kernel_that_cannot_give_exact_length_is_rejected():
    with pytest.raises(ValueError, match="even number"):
        preset("v1", upsample_kernel_sizes=[16, 16, 4, 5])


def test_config_from_a_checkpoint_dict_equals_the_resolved_one():
    cfg = preset("v3", upsample_initial_channel=32, mpd_periods=[2, 3], discriminator_width=0.5)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}  # plain lists
    assert HiFiGANConfig(**stored) == cfg and cfg.mpd_periods == (2, 3) and cfg.hop_length == 256


def test_preset_adapts_its_rates_to_another_hop():
    music = MelConfig(sample_rate=44100, n_fft=2048, hop_length=512, win_length=2048, n_mels=128, fmax=None)
    cfg = preset("v1", music, upsample_initial_channel=32)
    assert cfg.upsample_rates == (8, 4, 4, 4) and cfg.upsample_kernel_sizes == (16, 8, 8, 8)
    with torch.no_grad():
        assert Generator(cfg)(torch.randn(1, 128, 3)).shape == (1, 1, 3 * 512)
    assert derive_upsample_rates(300, 4) == [5, 5, 4, 3]


def test_discriminators_give_one_output_and_all_feature_maps_per_sub_discriminator():
    real, fake = torch.randn(2, 1, 2048), torch.randn(2, 1, 2048)
    mpd, msd = MultiPeriodDiscriminator(width=1 / 16), MultiScaleDiscriminator(width=1 / 16)
    r, g, fr, fg = discriminate(mpd, real, fake)
    assert len(r) == len(g) == len(fr) == len(fg) == 5  # periods 2, 3, 5, 7, 11
    assert all(len(fm) == 6 for fm in fr + fg)  # 5 convolutions + conv_post
    assert all(x.shape[0] == 2 and x.dim() == 2 for x in r + g)
    for fm, period in zip(fr, (2, 3, 5, 7, 11)):
        assert fm[0].shape[-1] == period  # (B, C, T / p, p) layout
    r, g, fr, fg = discriminate(msd, real, fake)
    assert len(r) == len(g) == len(fr) == 3  # raw, ×2 and ×4 pooled
    assert all(len(fm) == 8 for fm in fr + fg)  # 7 convolutions + conv_post
    assert fr[1][0].shape[-1] < fr[0][0].shape[-1]  # the second scale sees pooled audio
    # stacking real and fake in one pass gives what two separate passes give
    alone, _ = msd.eval()(fake)
    assert torch.allclose(alone[2], g[2], atol=1e-6)


def test_spectral_norm_only_on_the_first_scale():
    msd = MultiScaleDiscriminator(width=1 / 16)
    keys = [k for k in msd.state_dict() if "parametrizations" in k]
    assert any(k.startswith("discriminators.0.") and k.endswith("_u") for k in keys)
    assert not any(
        k.startswith(("discriminators.1.", "discriminators.2.")) and k.endswith("_u") for k in keys
    )


def test_removing_weight_norm_changes_no_output():
    generator = tiny_generator().eval()
    with torch.no_grad():
        generator.conv_pre.parametrizations.weight.original0.mul_(1.7)  # make the norm matter
        mel = torch.randn(2, 80, 12)
        before = generator(mel)
        generator.remove_weight_norm()
        after = generator(mel)
    assert not any("parametrizations" in k for k in generator.state_dict())
    assert torch.allclose(before, after, atol=1e-5)


def test_context_frames_bound_the_receptive_field():
    generator = tiny_generator().eval().remove_weight_norm()
    ctx, hop, t = generator.context_frames(), generator.hop_length, 60
    mel = torch.randn(1, 80, 120)
    changed = mel.clone()
    changed[..., t] += 3.0
    with torch.no_grad():
        diff = (generator(changed) - generator(mel)).abs()[0, 0]
    affected = diff.nonzero().flatten()
    assert affected.numel() > 0
    assert affected.min() >= (t - ctx) * hop and affected.max() < (t + ctx + 1) * hop


def lively_generator(preset: str, channels: int, mel: MelConfig = MEL) -> Generator:
    """The preset's layout at `channels` channels with O(1) activations (the authors' N(0, 0.01) init makes
    outputs ~1e-3, where any error would be tiny too) and outputs mostly off tanh's flat ends."""
    generator = Generator(
        HiFiGANConfig.from_preset(preset, mel.n_mels, mel.hop_length, upsample_initial_channel=channels)
    ).remove_weight_norm()
    with torch.no_grad():
        for conv in generator.modules():
            if isinstance(conv, nn.Conv1d | nn.ConvTranspose1d):
                if isinstance(conv, nn.Conv1d):
                    fan_in = conv.weight[0].numel()
                else:  # each output sample of a transposed convolution sees kernel / stride taps
                    fan_in = conv.weight[:, 0].numel() // conv.stride[0]
                conv.weight.normal_(0.0, 1.0 / math.sqrt(fan_in))
                conv.bias.normal_(0.0, 0.1)
    return generator.eval()


# Max abs difference allowed between the inference generator and the plain one. Measured: ≤ 1e-5 here,
# ≤ 2e-7 for the full-size presets with the authors' init (benchmarks/vocoder.py); only float rounding
# differs (summation order of the channels-last kernels, the MRF's 1/3 folded into the next weights).
INFERENCE_TOLERANCE = 1e-4


@pytest.mark.parametrize(("preset", "channels"), [("v1", 64), ("v2", 16), ("v3", 32)])
def test_inference_generator_equals_the_plain_generator(preset, channels):
    torch.manual_seed(3)
    generator = lively_generator(preset, channels)
    fast = generator.inference()
    assert isinstance(fast, InferenceGenerator) and not list(fast.parameters())  # buffers only: no grads
    with torch.inference_mode():
        for batch, frames in ((1, 1), (3, 13), (2, 38)):  # odd lengths, batch > 1
            mel = torch.randn(batch, 80, frames)
            expected, got = generator(mel), fast(mel)
            assert got.shape == expected.shape == (batch, 1, frames * 256)
            assert got.is_contiguous()
            assert expected.std() > 0.03 and (expected.abs() > 0.99).float().mean() < 0.05  # lively
            assert (got - expected).abs().max() <= INFERENCE_TOLERANCE


def test_inference_generator_equals_the_plain_generator_for_derived_rates():
    # hop 300 (24 kHz speech): derived rates [5, 5, 4, 3], odd strides with kernels 11, 11, 8, 7
    mel_cfg = MelConfig(sample_rate=24000, n_fft=1200, hop_length=300, win_length=1200)
    torch.manual_seed(5)
    generator = lively_generator("v1", 32, mel_cfg)
    assert generator.cfg.upsample_rates == (5, 5, 4, 3)
    assert generator.cfg.upsample_kernel_sizes == (11, 11, 8, 7)
    mel = torch.randn(2, 80, 7)
    with torch.inference_mode():
        expected, got = generator(mel), generator.inference()(mel)
    assert got.shape == expected.shape == (2, 1, 7 * 300)
    assert (got - expected).abs().max() <= INFERENCE_TOLERANCE


def test_inference_generator_keeps_the_training_generator_and_folds_weight_norm():
    torch.manual_seed(4)
    generator = tiny_generator()  # still weight-normed, as in training
    with torch.no_grad():
        generator.ups[1].parametrizations.weight.original0.mul_(3.0)  # make the norm matter
        mel = torch.randn(2, 80, 9)
        before = generator.eval()(mel)
        fast = generator.inference()
        assert (fast(mel) - before).abs().max() <= INFERENCE_TOLERANCE
        assert any("parametrizations" in k for k in generator.state_dict())  # training module untouched
        assert torch.equal(generator(mel), before)
    generator.train()(mel).sum().backward()  # and it still trains
    assert generator.conv_pre.parametrizations.weight.original1.grad is not None


def test_lsgan_and_feature_matching_losses():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros).item() == 0.0  # perfect discriminator
    assert discriminator_loss(zeros, ones).item() == 2.0  # (1 - 0)^2 + 1^2
    assert generator_adversarial_loss(ones).item() == 0.0
    assert generator_adversarial_loss(zeros).item() == 1.0
    maps = [[torch.full((2, 3), 1.0), torch.full((2, 4), 2.0)]]
    shifted = [[m + 0.5 for m in maps[0]]]
    assert feature_matching_loss(maps, maps).item() == 0.0
    assert feature_matching_loss(maps, shifted).item() == pytest.approx(1.0)  # two layers × 0.5
