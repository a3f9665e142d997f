"""FastSpeech 2 (Ren et al. 2020, arXiv:2006.04558) with a built-in aligner, speakers, d-vectors and languages.

symbols → embedding (+ language) → FFT-block encoder (§2.2) → + speaker vector → variance adaptor (§2.3:
duration, pitch, energy predictors; pitch and energy fed back through 256-bin embeddings) → length regulator
→ FFT-block decoder with speaker-conditional layer norms → mel → postnet (Tacotron 2 style, residual).

Choices beyond the paper, and why:
- Durations come from the jointly trained aligner (`cinematic.models.aligner`, Badlani et al. 2022), as in
  FastPitch, so no forced aligner is needed; pitch and energy targets are averaged per phoneme over those
  durations (FastSpeech 2 §2.3 "phoneme-level" variant, as in FastPitch). Given durations (TextGrids) win.
- Pitch is log-F0 (unvoiced frames interpolated) and energy log frame energy, both z-normalised with the
  data's statistics (stored as buffers), so a pitch shift of s semitones is the constant s·ln2/12/σ and an
  energy scale g is ln(g)/σ in the normalised space.
- Energy is quantised like pitch: 256 bins spaced evenly in that normalised *log* space, where the paper
  (§2.3) spaces energy bins evenly in linear energy. Frame energy spans several orders of magnitude and is
  heavy-tailed, so linear bins spend most of their range on a few loud frames and lump the quiet ones
  (pauses, onsets, unvoiced consonants) into the lowest bins; in log space the values are close to normal,
  the z-normalised predictor target and its MSE are well scaled, the bins are used evenly, and a loudness
  scale g is one additive shift. The price: a checkpoint's energy embedding is not interchangeable with one
  trained on linear bins (nothing here mixes them).
- Padded text positions are zeroed before every variance-predictor convolution, and padded frames before
  every postnet convolution, so a short utterance gets the same durations, pitch, energy and mel alone
  as padded in a batch (the speaker vector and the pitch/energy embeddings are added at every position,
  padding included, and a kernel-3 convolution would carry them into the last real positions).
- The speaker vector is a table embedding (row 0: "no table entry") plus a projection of a GE2E d-vector
  (Wan et al. 2018; resemblyzer's weights). In training the table entry is dropped for a share of the
  batch, so the d-vector path alone must carry the voice: that is what zero-shot cloning uses.
- Decoder layer norms are conditioned on the speaker vector (AdaSpeech, Chen et al. 2021, §2.3): adapting to
  a new voice then only needs the speaker row and these small projections.
- The duration predictor's bias starts at the data's mean log-duration, so even a barely trained model
  gives every phoneme a plausible length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cinematic.models.aligner import (
    AlignmentEncoder,
    ForwardSumLoss,
    beta_binomial_prior,
    binarization_loss,
    hard_alignment,
)
from cinematic.models.layers import Dropout  # nn.Dropout, faster CPU masks for large tensors

DVECTOR_DIM = 256
"""Size of resemblyzer's GE2E d-vectors."""


@dataclass
class FastSpeech2Config:
    """Model hyperparameters (the voice task fills it from `voice_model` and the data's vocabularies; the
    checkpoint stores it, so inference never reads the app's config section)."""

    n_symbols: int
    """Rows of the symbol table (phonemes or characters, with <pad> = 0 and <unk>)."""
    n_languages: int = 1
    n_mels: int = 80
    num_speakers: int = 100
    """Rows of the speaker table besides row 0 ("no table entry": zero-shot and table dropout)."""
    embed_dim: int = 256
    num_heads: int = 2
    encoder_num_layers: int = 4
    decoder_num_layers: int = 4
    conv_filter_size: int = 1024
    """Width of the FFT block's position-wise convolutions."""
    conv_kernel_sizes: tuple[int, int] = (9, 1)
    dropout: float = 0.2
    variance_filter_size: int = 256
    variance_kernel_size: int = 3
    variance_dropout: float = 0.5
    n_bins: int = 256
    """Quantization bins of the pitch and energy embeddings."""
    postnet_layers: int = 5
    speaker_encoder: bool = True
    """Project a GE2E d-vector into the speaker vector (zero-shot cloning from a reference clip)."""

    def __post_init__(self) -> None:
        self.conv_kernel_sizes = tuple(int(k) for k in self.conv_kernel_sizes)  # type: ignore[assignment]
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )


@dataclass
class VarianceStats:
    """Data statistics the model needs (stored as buffers and in the checkpoint's task state)."""

    pitch_mean: float = 5.0
    """Mean log-F0 (natural log of Hz) over voiced frames."""
    pitch_std: float = 0.25
    pitch_min: float = -4.0
    """Normalised range covered by the 256 pitch bins."""
    pitch_max: float = 4.0
    energy_mean: float = 0.0
    energy_std: float = 1.0
    energy_min: float = -4.0
    energy_max: float = 4.0
    mean_log_duration: float = math.log(6.0)
    """Mean log(1 + frames per symbol): the duration predictor's initial bias."""


def sinusoid_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """The Transformer's sinusoidal position encoding (Vaswani et al. 2017, §3.5): (length, dim)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths → (B, max_len) bool mask, True at padding."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


def length_regulate(
    hidden: torch.Tensor, durations: torch.Tensor, max_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Length regulator (§2.1): repeat phoneme i's hidden state durations[i] times, without Python loops.

    hidden (B, T_text, D), durations (B, T_text) ≥ 0 → (B, T_mel, D), mel lengths (B,). Frame t takes the
    phoneme whose cumulative-duration interval holds t (a batched searchsorted)."""
    mel_lengths = durations.long().sum(1)
    total = int(mel_lengths.max()) if max_len is None else max_len
    index = length_regulate_index(durations, total)  # (B, T_mel)
    out = hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    out = out.masked_fill(lengths_to_mask(mel_lengths, total).unsqueeze(-1), 0.0)
    return out, mel_lengths


class ConditionalLayerNorm(nn.Module):
    """Layer norm whose scale and shift are linear in the speaker vector (AdaSpeech §2.3); starts as plain LN."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_scale = nn.Linear(cond_dim, dim)
        self.to_shift = nn.Linear(cond_dim, dim)
        for layer in (self.to_scale, self.to_shift):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * (1 + self.to_scale(cond).unsqueeze(1)) + self.to_shift(cond).unsqueeze(1)


class ConvFeedForward(nn.Module):
    """The FFT block's two-layer 1-D convolutional network (§2.1, replacing the Transformer's dense FFN)."""

    def __init__(self, dim: int, filter_size: int, kernel_sizes: tuple[int, int], dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, filter_size, kernel_sizes[0], padding=kernel_sizes[0] // 2)
        self.conv2 = nn.Conv1d(filter_size, dim, kernel_sizes[1], padding=kernel_sizes[1] // 2)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        y = self.conv2(F.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)
        return self.dropout(y)


class FFTBlock(nn.Module):
    """Feed-forward Transformer block (FastSpeech §3.1): self-attention and conv FFN, post-norm residuals."""

    def __init__(self, cfg: FastSpeech2Config, cond_dim: int | None = None):
        super().__init__()
        dim = cfg.embed_dim
        self.attention = nn.MultiheadAttention(dim, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.dropout = Dropout(cfg.dropout)
        self.ffn = ConvFeedForward(dim, cfg.conv_filter_size, cfg.conv_kernel_sizes, cfg.dropout)
        self.conditional = cond_dim is not None
        if cond_dim is not None:
            self.norm1: nn.Module = ConditionalLayerNorm(dim, cond_dim)
            self.norm2: nn.Module = ConditionalLayerNorm(dim, cond_dim)
        else:
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def _norm(self, norm: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return norm(x, cond) if self.conditional else norm(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        keep = (~mask).unsqueeze(-1).float()
        attended, _ = self.attention(x, x, x, key_padding_mask=mask, need_weights=False)
        x = self._norm(self.norm1, x + self.dropout(attended), cond) * keep
        x = self._norm(self.norm2, x + self.ffn(x), cond) * keep
        return x


class VariancePredictor(nn.Module):
    """Duration / pitch / energy predictor (§2.3): 2 × (conv1d, ReLU, layer norm, dropout), then a linear."""

    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        dims = [cfg.embed_dim, cfg.variance_filter_size]
        self.convs = nn.ModuleList(
            nn.Conv1d(
                dims[i],
                cfg.variance_filter_size,
                cfg.variance_kernel_size,
                padding=cfg.variance_kernel_size // 2,
            )
            for i in range(2)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.variance_filter_size) for _ in range(2))
        self.dropout = Dropout(cfg.variance_dropout)
        self.out = nn.Linear(cfg.variance_filter_size, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, D) → (B, T)
        pad = mask.unsqueeze(-1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x.masked_fill(pad, 0.0)  # padding must look like the convolution's own zero padding
            x = self.dropout(norm(F.relu(conv(x.transpose(1, 2)).transpose(1, 2))))
        return self.out(x).squeeze(-1).masked_fill(mask, 0.0)


class PostNet(nn.Module):
    """Five 1-D convolutions with batch norm and tanh that refine the mel residually (Tacotron 2, §2.2)."""

    def __init__(self, n_mels: int, channels: int, layers: int, dropout: float = 0.5):
        super().__init__()
        blocks = []
        for i in range(layers):
            c_in = n_mels if i == 0 else channels
            c_out = n_mels if i == layers - 1 else channels
            blocks.append(nn.Sequential(nn.Conv1d(c_in, c_out, 5, padding=2), nn.BatchNorm1d(c_out)))
        self.blocks = nn.ModuleList(blocks)
        self.dropout = Dropout(dropout)
        # Zero scale on the last batch norm: the residual starts at 0, so the postnet begins as the identity
        # instead of adding unit-variance noise to the mel (it then learns only what improves it).
        if blocks:
            nn.init.zeros_(blocks[-1][1].weight)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, n_mels), (B, T)
        keep = (~mask).unsqueeze(1).to(mel.dtype)  # (B, 1, T)
        x = mel.transpose(1, 2)
        for i, block in enumerate(self.blocks):
            x = block(x * keep)  # batch norm's shift makes padded frames non-zero again
            x = self.dropout(torch.tanh(x) if i < len(self.blocks) - 1 else x)
        return x.transpose(1, 2)


class FastSpeech2(nn.Module):
    """The acoustic model. `forward` trains (teacher-forced with aligner durations); `infer` synthesises."""

    def __init__(self, cfg: FastSpeech2Config, stats: VarianceStats | None = None):
        super().__init__()
        stats = stats or VarianceStats()
        dim, n_mels = cfg.embed_dim, cfg.n_mels
        self.cfg = cfg
        self.n_mels = n_mels
        self.embedding = nn.Embedding(cfg.n_symbols, dim, padding_idx=0)
        self.language_embedding = nn.Embedding(max(cfg.n_languages, 1), dim)
        self.encoder = nn.ModuleList(FFTBlock(cfg) for _ in range(cfg.encoder_num_layers))
        # Row 0 is "no table entry" (zero-shot and table dropout); rows 1..num_speakers are speakers.
        self.speaker_embedding = nn.Embedding(cfg.num_speakers + 1, dim)
        nn.init.normal_(self.speaker_embedding.weight, std=0.1)
        self.dvector_proj = nn.Linear(DVECTOR_DIM, dim) if cfg.speaker_encoder else None
        self.aligner = AlignmentEncoder(n_mels, dim)
        self.duration_predictor = VariancePredictor(cfg)
        self.pitch_predictor = VariancePredictor(cfg)
        self.energy_predictor = VariancePredictor(cfg)
        self.pitch_embedding = nn.Embedding(cfg.n_bins, dim)
        self.energy_embedding = nn.Embedding(cfg.n_bins, dim)
        self.decoder = nn.ModuleList(FFTBlock(cfg, cond_dim=dim) for _ in range(cfg.decoder_num_layers))
        self.mel_linear = nn.Linear(dim, n_mels)
        self.postnet = PostNet(n_mels, 2 * dim, cfg.postnet_layers) if cfg.postnet_layers > 0 else None
        self.forward_sum = ForwardSumLoss()
        # Training steps taken (a buffer, so it is saved and resumed with the weights): the aligner's
        # binarization loss switches on after a number of them the task chooses.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.set_stats(stats)

    # ------------------------------------------------------------------------------------------ statistics

    def set_stats(self, stats: VarianceStats) -> None:
        """Store the data statistics as buffers (so they travel with the weights) and set the duration bias."""
        n = self.cfg.n_bins
        values = {
            "pitch_mean": stats.pitch_mean,
            "pitch_std": stats.pitch_std,
            "energy_mean": stats.energy_mean,
            "energy_std": stats.energy_std,
        }
        for name, value in values.items():
            self.register_buffer(name, torch.tensor(float(value)))
        self.register_buffer("pitch_bins", torch.linspace(stats.pitch_min, stats.pitch_max, n - 1))
        self.register_buffer("energy_bins", torch.linspace(stats.energy_min, stats.energy_max, n - 1))
        with torch.no_grad():
            self.duration_predictor.out.bias.fill_(stats.mean_log_duration)

    # ------------------------------------------------------------------------------------------ conditioning

    def speaker_vector(self, speakers: torch.Tensor, dvectors: torch.Tensor | None) -> torch.Tensor:
        """(B,) table rows (0: none) and (B, 256) d-vectors or None → (B, D)."""
        vector = self.speaker_embedding(speakers)
        if self.dvector_proj is not None and dvectors is not None:
            vector = vector + self.dvector_proj(dvectors)
        return vector

    def encode(
        self, tokens: torch.Tensor, text_mask: torch.Tensor, languages: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (encoder output (B, T_text, D), symbol embeddings (B, T_text, D) for the aligner)."""
        embedded = self.embedding(tokens)
        x = embedded + self.language_embedding(languages).unsqueeze(1)
        x = x + sinusoid_positions(tokens.shape[1], x.shape[-1], x.device)
        for block in self.encoder:
            x = block(x, text_mask)
        return x, embedded

    def decode(
        self, frames: torch.Tensor, mel_mask: torch.Tensor, speaker: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T_mel, D) → (mel before postnet, mel after postnet), both (B, T_mel, n_mels)."""
        x = frames + sinusoid_positions(frames.shape[1], frames.shape[-1], frames.device)
        for block in self.decoder:
            x = block(x, mel_mask, speaker)
        keep = (~mel_mask).unsqueeze(-1)
        mel = self.mel_linear(x) * keep  # the linear's bias would fill padded frames
        post = mel + self.postnet(mel, mel_mask) if self.postnet is not None else mel
        return mel, post * keep

    def _bucket(self, values: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(values.detach().to(bins.dtype).contiguous(), bins)  # bf16 under autocast

    # ------------------------------------------------------------------------------------------ training

    def forward(
        self,
        tokens: torch.Tensor,
        text_lengths: torch.Tensor,
        mels: torch.Tensor,
        mel_lengths: torch.Tensor,
        pitch: torch.Tensor,
        energy: torch.Tensor,
        speakers: torch.Tensor,
        languages: torch.Tensor,
        dvectors: torch.Tensor | None = None,
        durations: torch.Tensor | None = None,
        use_prior: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass. tokens (B, T_text); mels (B, T_mel, n_mels) log-mel; pitch and energy (B, T_mel)
        normalised frame values; durations (B, T_text) when known (TextGrids), else from the aligner."""
        text_mask = lengths_to_mask(text_lengths, tokens.shape[1])
        mel_mask = lengths_to_mask(mel_lengths, mels.shape[1])
        hidden, embedded = self.encode(tokens, text_mask, languages)
        speaker = self.speaker_vector(speakers, dvectors)
        hidden = hidden + speaker.unsqueeze(1)

        prior = (
            beta_binomial_prior(text_lengths, mel_lengths, tokens.shape[1], mels.shape[1])
            if use_prior
            else None
        )
        soft, attn_logprob = self.aligner(mels.transpose(1, 2), embedded.transpose(1, 2), text_mask, prior)
        soft = soft.masked_fill(mel_mask.unsqueeze(-1), 0.0)
        if durations is None:  # the alignment search (MAS) runs on the host: only when it is needed
            hard, durations = hard_alignment(soft, text_lengths, mel_lengths)
        else:  # user durations: the hard path follows them, so pitch/energy averages use the same frames
            hard = F.one_hot(length_regulate_index(durations, mels.shape[1]), tokens.shape[1]).float()
            hard = hard.masked_fill(mel_mask.unsqueeze(-1), 0.0)

        # Phoneme-level pitch/energy targets: means over each phoneme's frames (FastPitch §2.2).
        counts = durations.clamp(min=1).float()
        pitch_target = torch.bmm(hard.transpose(1, 2), pitch.unsqueeze(-1)).squeeze(-1) / counts
        energy_target = torch.bmm(hard.transpose(1, 2), energy.unsqueeze(-1)).squeeze(-1) / counts
        pitch_target = pitch_target.masked_fill(text_mask, 0.0)
        energy_target = energy_target.masked_fill(text_mask, 0.0)

        log_duration = self.duration_predictor(hidden, text_mask)
        pitch_pred = self.pitch_predictor(hidden, text_mask)
        energy_pred = self.energy_predictor(hidden, text_mask)
        hidden = hidden + self.pitch_embedding(self._bucket(pitch_target, self.pitch_bins))
        hidden = hidden + self.energy_embedding(self._bucket(energy_target, self.energy_bins))

        frames, _ = length_regulate(hidden, durations, max_len=mels.shape[1])
        mel_out, mel_post = self.decode(frames, mel_mask, speaker)
        return {
            "mel": mel_out,
            "mel_post": mel_post,
            "log_duration": log_duration,
            "durations": durations,
            "pitch_pred": pitch_pred,
            "pitch_target": pitch_target,
            "energy_pred": energy_pred,
            "energy_target": energy_target,
            "soft": soft,
            "hard": hard,
            "attn_logprob": attn_logprob,
            "text_mask": text_mask,
            "mel_mask": mel_mask,
        }

    def losses(
        self,
        out: dict[str, torch.Tensor],
        mels: torch.Tensor,
        text_lengths: torch.Tensor,
        mel_lengths: torch.Tensor,
        binarization_weight: float | torch.Tensor = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Mel L1 + postnet L1 + duration/pitch/energy MSE (§2.4) + forward-sum and binarization losses.
        A tensor `binarization_weight` (0 or 1 on the device) switches the binarization loss on without a
        host read; a float 0 skips computing it."""
        keep_mel = (~out["mel_mask"]).unsqueeze(-1).float()
        keep_text = (~out["text_mask"]).float()
        n_mel = keep_mel.sum() * self.n_mels
        n_text = keep_text.sum()
        mel_l1 = ((out["mel"] - mels).abs() * keep_mel).sum() / n_mel
        post_l1 = ((out["mel_post"] - mels).abs() * keep_mel).sum() / n_mel
        log_target = torch.log1p(out["durations"].float())
        duration = (((out["log_duration"] - log_target) ** 2) * keep_text).sum() / n_text
        pitch = (((out["pitch_pred"] - out["pitch_target"]) ** 2) * keep_text).sum() / n_text
        energy = (((out["energy_pred"] - out["energy_target"]) ** 2) * keep_text).sum() / n_text
        align = self.forward_sum(out["attn_logprob"], text_lengths, mel_lengths)
        needed = isinstance(binarization_weight, torch.Tensor) or binarization_weight > 0
        binar = binarization_loss(out["hard"], out["soft"]) if needed else mels.new_zeros(())
        total = mel_l1 + post_l1 + duration + pitch + energy + align + binarization_weight * binar
        return {
            "loss": total,
            "mel_l1": mel_l1,
            "postnet_l1": post_l1,
            "duration": duration,
            "pitch": pitch,
            "energy": energy,
            "forward_sum": align,
            "binarization": binar,
        }

    # ------------------------------------------------------------------------------------------ synthesis

    @torch.no_grad()
    def infer(
        self,
        tokens: torch.Tensor,
        speakers: torch.Tensor,
        languages: torch.Tensor,
        dvectors: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        speed: float = 1.0,
        pitch_shift: float = 0.0,
        energy_scale: float = 1.0,
        durations: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Synthesis: predicted durations divided by `speed` (≥ 1 frame each), predicted pitch shifted by
        `pitch_shift` semitones, energy scaled by `energy_scale`. → mel (B, T_mel, n_mels) and more."""
        if speed <= 0 or energy_scale <= 0:
            raise ValueError("speed and energy scale must be positive")
        if text_lengths is None:
            text_lengths = torch.full((tokens.shape[0],), tokens.shape[1], device=tokens.device)
        text_mask = lengths_to_mask(text_lengths, tokens.shape[1])
        hidden, _ = self.encode(tokens, text_mask, languages)
        speaker = self.speaker_vector(speakers, dvectors)
        hidden = hidden + speaker.unsqueeze(1)

        if durations is None:
            predicted = torch.expm1(self.duration_predictor(hidden, text_mask)).clamp(min=0)
            durations = torch.round(predicted / speed).long().clamp(min=1)
        durations = durations.masked_fill(text_mask, 0)
        pitch = self.pitch_predictor(hidden, text_mask) + pitch_shift * math.log(2) / 12 / self.pitch_std
        energy = self.energy_predictor(hidden, text_mask) + math.log(energy_scale) / self.energy_std
        hidden = hidden + self.pitch_embedding(self._bucket(pitch, self.pitch_bins))
        hidden = hidden + self.energy_embedding(self._bucket(energy, self.energy_bins))

        frames, mel_lengths = length_regulate(hidden, durations)
        mel_mask = lengths_to_mask(mel_lengths, frames.shape[1])
        _, mel = self.decode(frames, mel_mask, speaker)
        f0_hz = torch.exp(pitch * self.pitch_std + self.pitch_mean).masked_fill(text_mask, 0.0)
        return {
            "mel": mel,
            "mel_lengths": mel_lengths,
            "durations": durations,
            "f0_hz": f0_hz,
            "energy": energy,
        }

    def adaptation_parameters(self) -> list[nn.Parameter]:
        """The weights `cinematic clone` tunes by default: the speaker table and the decoder's conditional
        layer-norm projections (AdaSpeech §2.3) — a few thousand numbers per speaker, no drift elsewhere."""
        params = [self.speaker_embedding.weight]
        for block in self.decoder:
            for norm in (block.norm1, block.norm2):
                params.extend(norm.parameters())
        return params


def teacher_forced(
    model: nn.Module, batch: dict[str, torch.Tensor], speakers: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The teacher-forced pass of `model` (a FastSpeech2, or its DDP/FSDP wrapper: it is called, not
    unwrapped) over a collated voice batch (`cinematic.data.voice.collate`): ground-truth pitch and
    energy, TextGrid durations when the batch has them, else the aligner's. `speakers` replaces the
    batch's speaker rows (the task's speaker-table dropout)."""
    return model(
        batch["tokens"],
        batch["text_lengths"],
        batch["mels"],
        batch["mel_lengths"],
        batch["pitch"],
        batch["energy"],
        batch["speakers"] if speakers is None else speakers,
        batch["languages"],
        batch["dvectors"],
        batch.get("durations"),
    )


def length_regulate_index(durations: torch.Tensor, total: int) -> torch.Tensor:
    """(B, T_text) durations → (B, total) index of the phoneme each frame belongs to (batched searchsorted
    over the cumulative durations; frames past the end point at the last phoneme and are masked by callers)."""
    ends = durations.long().cumsum(1)
    frames = (
        torch.arange(total, device=durations.device).unsqueeze(0).expand(durations.shape[0], -1).contiguous()
    )
    return torch.searchsorted(ends, frames, right=True).clamp(max=durations.shape[1] - 1)
