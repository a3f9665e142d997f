"""HiFi-GAN (Kong, Kim & Bae, NeurIPS 2020, arXiv:2010.05646): a GAN vocoder from log-mels to waveforms.

Generator (§2.1, Fig. 1): a 7-tap input convolution, then one stage per upsampling rate — leaky ReLU,
transposed convolution, and a multi-receptive-field fusion (MRF) block that averages |k_r| residual
blocks with different kernels and dilations — then leaky ReLU, a 7-tap output convolution and tanh.
V1/V2 use ResBlock1 (two convolutions per dilation), V3 the lighter ResBlock2 (one per dilation).

Discriminators: the multi-period discriminator (MPD, §2.2) reshapes the waveform into (T/p, p) and
runs 2-D convolutions over the time axis for each period p ∈ {2, 3, 5, 7, 11}; the multi-scale
discriminator (MSD, §2.3, from MelGAN) runs 1-D grouped convolutions on the raw, ×2 and ×4 average-
pooled waveform, with spectral norm on the first scale and weight norm elsewhere.

Losses (§2.4): LSGAN adversarial losses (Eq. 1), feature matching (Eq. 3, L1 between discriminator
feature maps) and mel-spectrogram L1 (Eq. 2); the generator minimises Eq. 6,
L_adv(G; D) + λ_fm·L_FM + λ_mel·L_mel with λ_fm = 2 and λ_mel = 45.

`HiFiGANConfig` holds every hyperparameter (`HiFiGANConfig.from_preset` resolves a preset for a mel
front end; the vocoder task maps its `vocoder` config section onto it and stores it in the checkpoint).
Weight norm is used in training and folded into plain weights for inference (`remove_weight_norm`).
`Generator.inference()` gives an `InferenceGenerator`: the same function, computed 1.5–1.9× faster on
CPU (channels-last convolutions, in-place activations); `cinematic.generation.vocode.Vocoder` runs it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from cinematic.configs.model_config import HIFIGAN_PRESETS, derive_upsample_rates

log = logging.getLogger(__name__)

LRELU_SLOPE = 0.1

# The paper's three generator settings (Table 1 and the authors' config_v{1,2,3}.json). The table
# lives with the vocoder's config section, whose load-time checks resolve null keys with it.
PRESETS: dict[str, dict] = HIFIGAN_PRESETS


@dataclass(frozen=True)
class HiFiGANConfig:
    """Fully resolved HiFi-GAN hyperparameters: the generator's (a preset with overrides applied, see
    `from_preset`) and the discriminators'. Vocoder checkpoints store it (`asdict`), and inference builds
    the generator from it alone."""

    n_mels: int
    upsample_rates: tuple[int, ...]
    """One transposed convolution per rate; their product is the mel hop (samples per frame)."""
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    """Channels after the input convolution; every upsampling stage halves them."""
    resblock: str
    """"1": ResBlock1 (V1/V2, two convolutions per dilation); "2": ResBlock2 (V3, one)."""
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    mpd_periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Periods of the multi-period discriminator (§2.2)."""
    discriminator_width: float = 1.0
    """Channel multiplier of the MPD and MSD (1: the paper's 32…1024 channels)."""

    def __post_init__(self) -> None:
        # Lists (from a checkpoint or YAML) become tuples: the config is frozen and hashable.
        fix = object.__setattr__
        for key in ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes", "mpd_periods"):
            fix(self, key, tuple(int(v) for v in getattr(self, key)))
        fix(
            self,
            "resblock_dilation_sizes",
            tuple(tuple(int(d) for d in ds) for ds in self.resblock_dilation_sizes),
        )
        fix(self, "resblock", str(self.resblock))
        rates, kernels = self.upsample_rates, self.upsample_kernel_sizes
        if len(kernels) != len(rates):
            raise ValueError(
                f"upsample_kernel_sizes {list(kernels)} needs one kernel per upsample rate {list(rates)}"
            )
        for u, k in zip(rates, kernels):
            if k < u or (k - u) % 2:
                raise ValueError(
                    f"upsample_kernel_sizes: kernel {k} for rate {u} must be >= the rate and differ from it by "
                    "an even number (the paper uses 2 × rate), so the output has exactly frames × hop samples"
                )
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes need the same length")
        if self.upsample_initial_channel % 2 ** len(rates):
            raise ValueError(
                f"upsample_initial_channel ({self.upsample_initial_channel}) must be divisible by "
                f"2^{len(rates)} (each upsampling stage halves the channels)"
            )

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @classmethod
    def from_preset(cls, preset: str, n_mels: int, hop_length: int, **overrides: Any) -> HiFiGANConfig:
        """The paper's `preset` ("v1", "v2", "v3") for a mel front end, with the `overrides` that are not
        None. When the preset's rates do not multiply to `hop_length` and none were given, rates are
        derived from the hop (`derive_upsample_rates`), with kernels 2 × rate (+ 1 for odd rates)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown HiFi-GAN preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        given = {key: value for key, value in overrides.items() if value is not None}
        values = {**PRESETS[preset], **given}
        rates = list(values["upsample_rates"])
        if "upsample_rates" not in given and math.prod(rates) != hop_length:
            derived = derive_upsample_rates(hop_length, len(rates))
            if "upsample_kernel_sizes" not in given:  # 2 × rate (the paper's), + 1 if odd: even overlap
                values["upsample_kernel_sizes"] = [2 * u + u % 2 for u in derived]
            log.info(
                "HiFi-GAN preset %s upsamples by %d but the mel hop is %d; using upsample_rates=%s "
                "(set upsample_rates to choose)",
                preset,
                math.prod(rates),
                hop_length,
                derived,
            )
            values["upsample_rates"] = rates = derived
        if math.prod(rates) != hop_length:
            raise ValueError(
                f"upsample_rates {rates} multiply to {math.prod(rates)}, but the mel hop_length is "
                f"{hop_length}: the generator must upsample each mel frame to exactly one hop of samples"
            )
        return cls(n_mels=n_mels, **values)


def _same_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


def _init_weights(module: nn.Module) -> None:
    # The authors' init: N(0, 0.01) for the generator's convolutions (before weight norm splits them).
    if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
        module.weight.data.normal_(0.0, 0.01)


def _remove_norms(module: nn.Module) -> None:
    """Fold every weight-norm / spectral-norm parametrization into a plain weight tensor."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)


# ----------------------------------------------------------------------------------------------- generator


class ResBlock1(nn.Module):
    """Residual block of V1/V2 (Fig. 1, right): per dilation, lrelu → dilated conv → lrelu → conv, + skip."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.kernel, self.dilations = kernel, tuple(dilations)
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel)) for _ in dilations
        )
        self.apply(_init_weights)
        for conv in (*self.convs1, *self.convs2):
            weight_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x

    def radius(self) -> int:
        """How many samples either side an output sample depends on."""
        half = (self.kernel - 1) // 2
        return sum(half * d + half for d in self.dilations)


class ResBlock2(nn.Module):
    """Residual block of V3: per dilation, lrelu → dilated conv, + skip (half the convolutions of ResBlock1)."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]):
        super().__init__()
        self.kernel, self.dilations = kernel, tuple(dilations)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d))
            for d in dilations
        )
        self.apply(_init_weights)
        for conv in self.convs:
            weight_norm(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x

    def radius(self) -> int:
        return sum((self.kernel - 1) // 2 * d for d in self.dilations)


class MRF(nn.Module):
    """Multi-receptive-field fusion (§2.1): the mean of parallel residual blocks with different kernels."""

    def __init__(
        self, channels: int, resblock: str, kernels: Sequence[int], dilations: Sequence[Sequence[int]]
    ):
        super().__init__()
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.blocks = nn.ModuleList(block(channels, k, d) for k, d in zip(kernels, dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        for block in self.blocks[1:]:
            out = out + block(x)
        return out / len(self.blocks)

    def radius(self) -> int:
        return max(block.radius() for block in self.blocks)


class Generator(nn.Module):
    """Log-mel (B, n_mels, T) → waveform (B, 1, T · hop) in [-1, 1]."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(cfg.n_mels, ch, 7, padding=3))
        self.ups = nn.ModuleList()
        self.mrfs = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            up = nn.ConvTranspose1d(ch // 2**i, ch // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            _init_weights(up)
            self.ups.append(weight_norm(up))
            self.mrfs.append(
                MRF(ch // 2 ** (i + 1), cfg.resblock, cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
            )
        self.conv_post = nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, padding=3)
        _init_weights(self.conv_post)
        weight_norm(self.conv_post)

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for up, mrf in zip(self.ups, self.mrfs):
            x = mrf(up(F.leaky_relu(x, LRELU_SLOPE)))
        # The authors' code uses the default slope (0.01) here, not 0.1; kept for checkpoint parity.
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self) -> Generator:
        """Fold weight norm into the weights (inference): same outputs, fewer operations per call."""
        _remove_norms(self)
        return self

    def inference(self) -> InferenceGenerator:
        """A fast inference-only copy of this generator (see `InferenceGenerator`); this module is unchanged."""
        return InferenceGenerator(self)

    def context_frames(self) -> int:
        """Mel frames either side that can influence an output sample (a safe upper bound).

        Chunked synthesis gives each chunk this much context, so its kept centre equals one-shot output."""
        radius = 3  # conv_post, in output samples
        for u, k, mrf in reversed(
            list(zip(self.cfg.upsample_rates, self.cfg.upsample_kernel_sizes, self.mrfs))
        ):
            radius += mrf.radius()
            radius = math.ceil((radius + k) / u) + 1  # through the transposed convolution, rounded up
        return radius + 3  # conv_pre


# ----------------------------------------------------------------------------------- inference generator


class _ChannelsLastConv(nn.Module):
    """A Conv1d / ConvTranspose1d run as its 2-D twin on (B, C, 1, T) tensors in channels-last memory.

    Why: oneDNN's kernels for channels-last (time-major, "nwc") activations run this generator's
    convolutions at 80–100 GFLOP/s on one AVX2 core, where the default channels-first layout gets
    15–60 (worst for the 8–64-channel late stages: those convolutions become 2–5× faster). `scale`
    multiplies the weight (not the bias), used to fold the preceding MRF's 1/|k_r| into this layer."""

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d, scale: float = 1.0):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose1d)
        weight = conv.weight.detach() * scale  # weight norm applied if still present
        self.register_buffer("weight", weight.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride, self.padding, self.dilation = (
            (1, conv.stride[0]),
            (0, conv.padding[0]),
            (1, conv.dilation[0]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(
                x, self.weight, self.bias, self.stride, self.padding, dilation=self.dilation
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class _FastResBlock(nn.Module):
    """`ResBlock1` / `ResBlock2` with channels-last convolutions and in-place activations and adds.

    Each dilation step of ResBlock1 is x ← x + c2(lrelu(c1(lrelu(x)))); only the first leaky ReLU
    needs a new tensor (x is still needed for the skip), the rest reuse the convolutions' fresh outputs."""

    def __init__(self, block: ResBlock1 | ResBlock2):
        super().__init__()
        pairs = (
            zip(block.convs1, block.convs2) if isinstance(block, ResBlock1) else ((c,) for c in block.convs)
        )
        self.steps = nn.ModuleList(nn.ModuleList(_ChannelsLastConv(c) for c in step) for step in pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for convs in self.steps:
            h = convs[0](F.leaky_relu(x, LRELU_SLOPE))
            for conv in convs[1:]:
                h = conv(F.leaky_relu_(h, LRELU_SLOPE))
            x = h.add_(x)
        return x


class _FastMRF(nn.Module):
    """The *sum* of the MRF's residual blocks; the 1/|k_r| of the mean is folded into the next layer's
    weight, which is exact in real arithmetic because leaky ReLU is positively homogeneous
    (lrelu(s·a) = s·lrelu(a) for s > 0) and saves one pass over the stage's largest tensors."""

    def __init__(self, mrf: MRF):
        super().__init__()
        self.blocks = nn.ModuleList(_FastResBlock(block) for block in mrf.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks[0](x)
        if out is x:  # a block without convolutions returns its input, which the other blocks still read
            out = out.clone()
        for block in self.blocks[1:]:
            out.add_(block(x))
        return out


class InferenceGenerator(nn.Module):
    """Inference-only HiFi-GAN generator: the same function as `Generator.forward` with weight norm
    folded in, computed faster on CPU (1.5× for V1, 1.7–1.9× for V2/V3 on one thread; docs/vocoder.md).

    - every activation is a (B, C, 1, T) tensor in channels-last memory and every convolution the
      equivalent 2-D one (`_ChannelsLastConv`), so oneDNN picks its fast time-major kernels; the
      transposed (upsampling) convolutions run the same way;
    - leaky ReLUs and residual adds work in place on tensors no one else reads;
    - the MRF mean's division is folded into the next layer's weights (`_FastMRF`).

    Outputs equal the plain generator's (weight norm removed) up to float rounding (≤ 1e-5 measured on
    the presets, tested at 1e-4). Its weights are buffers: no gradients, training uses `Generator`."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.cfg = generator.cfg
        n = len(generator.cfg.resblock_kernel_sizes)
        self.conv_pre = _ChannelsLastConv(generator.conv_pre)
        self.ups = nn.ModuleList(
            _ChannelsLastConv(up, 1.0 if i == 0 else 1.0 / n) for i, up in enumerate(generator.ups)
        )
        self.mrfs = nn.ModuleList(_FastMRF(mrf) for mrf in generator.mrfs)
        self.conv_post = _ChannelsLastConv(generator.conv_post, 1.0 / n)
        self.eval()

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, n_mels, T) → waveform (B, 1, T · hop), as `Generator.forward`."""
        x = self.conv_pre(mel.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        for up, mrf in zip(self.ups, self.mrfs):
            x = mrf(up(F.leaky_relu_(x, LRELU_SLOPE)))  # x is always a fresh tensor here
        # slope 0.01 before conv_post, as in `Generator.forward`
        return torch.tanh_(self.conv_post(F.leaky_relu_(x))).squeeze(2)


# ------------------------------------------------------------------------------------------ discriminators


def _scaled(channels: int, width: float, multiple: int = 1) -> int:
    """Channel count scaled by `width` (tiny test models), kept a positive multiple of the group count."""
    return max(multiple, round(channels * width / multiple) * multiple)


def run_discriminator_stack(
    convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leaky-ReLU conv stack of an MPD/MSD sub-discriminator: logits (B, N) and every feature map
    (the feature-matching loss compares them)."""
    fmaps = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmaps.append(x)
    x = conv_post(x)
    fmaps.append(x)
    return x.flatten(1), fmaps


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator (§2.2): waveform (B, 1, T) → (B, 1, T/p, p), 2-D convs along time."""

    def __init__(self, period: int, width: float = 1.0, kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        chans = [1] + [_scaled(c, width) for c in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (kernel, 1), (stride if i < 4 else 1, 1), padding=(2, 0)))
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:  # reflect-pad the end so the length divides by the period
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return run_discriminator_stack(self.convs, self.conv_post, x.view(b, c, -1, self.period))


class MultiPeriodDiscriminator(nn.Module):
    """MPD: one `PeriodDiscriminator` per period (the paper: 2, 3, 5, 7, 11, primes to avoid overlap)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, 1, T) → per sub-discriminator: logits (B, N) and its feature maps (5 convs + output)."""
        outs = [d(wav) for d in self.discriminators]
        return [o[0] for o in outs], [o[1] for o in outs]


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator (MelGAN's): strided grouped 1-D convolutions over the waveform."""

    # (out channels, kernel, stride, groups) of the authors' DiscriminatorS
    LAYERS = ((128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16),
              (1024, 41, 4, 16), (1024, 41, 1, 16), (1024, 5, 1, 1))  # fmt: skip

    def __init__(self, use_spectral_norm: bool = False, width: float = 1.0):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList()
        cin = 1
        for cout, kernel, stride, groups in self.LAYERS:
            cout = _scaled(cout, width, 16)  # divisible by every group count used (≤ 16)
            self.convs.append(
                norm(nn.Conv1d(cin, cout, kernel, stride, groups=groups, padding=(kernel - 1) // 2))
            )
            cin = cout
        self.conv_post = norm(nn.Conv1d(cin, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return run_discriminator_stack(self.convs, self.conv_post, x)


class MultiScaleDiscriminator(nn.Module):
    """MSD: three `ScaleDiscriminator`s on the raw, ×2 and ×4 average-pooled waveform (§2.3)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(
            [
                ScaleDiscriminator(use_spectral_norm=True, width=width),
                ScaleDiscriminator(width=width),
                ScaleDiscriminator(width=width),
            ]  # fmt: skip
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """(B, 1, T) → per scale: logits (B, N) and its feature maps (7 convs + output)."""
        logits, fmaps = [], []
        for i, d in enumerate(self.discriminators):
            if i:
                wav = self.pool(wav)
            out, fmap = d(wav)
            logits.append(out)
            fmaps.append(fmap)
        return logits, fmaps


# ----------------------------------------------------------------------------------------------- losses


def discriminator_loss(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN discriminator loss (Eq. 1): Σ_k E[(D_k(x) − 1)²] + E[D_k(G(s))²]."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(g**2) for r, g in zip(real, fake))


def generator_adversarial_loss(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """LSGAN generator loss (Eq. 1): Σ_k E[(D_k(G(s)) − 1)²]."""
    return sum(torch.mean((1 - g) ** 2) for g in fake)


def feature_matching_loss(
    real: Sequence[Sequence[torch.Tensor]], fake: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """Feature matching (Eq. 3): Σ over sub-discriminators and layers of the mean |D^i(x) − D^i(G(s))|.

    Real features are targets only, so they are detached (the generator's gradient is unchanged)."""
    return sum(torch.mean(torch.abs(r.detach() - g)) for rs, gs in zip(real, fake) for r, g in zip(rs, gs))


def discriminate(
    disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]:
    """Run a discriminator once on real and generated audio stacked along the batch (one pass, not two).

    Returns (real logits, fake logits, real feature maps, fake feature maps), one entry per sub-discriminator."""
    logits, fmaps = disc(torch.cat([real, fake], dim=0))
    n = real.shape[0]
    return (
        [x[:n] for x in logits], [x[n:] for x in logits],
        [[f[:n] for f in fm] for fm in fmaps], [[f[n:] for f in fm] for fm in fmaps],
    )  # fmt: skip


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
