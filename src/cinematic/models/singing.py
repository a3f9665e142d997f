"""XiaoiceSing (Lu et al. 2020, arXiv:2006.06261): a FastSpeech 2 that sings notes.

phonemes (+ per phoneme: note pitch, note length, slur flag; + language) → FFT-block encoder → + singer
vector → duration predictor (phonemes fill their note) → length regulator → F0 = smoothed note pitch +
predicted residual, V/UV → pitch fed back → FFT-block decoder with singer-conditional layer norms → mel.

What is XiaoiceSing's and what is not:
- §2.2: the encoder input adds note pitch, note duration and slur embeddings to each phoneme's embedding.
- §2.3: F0 is the note pitch plus a predicted residual ("residual connection between note pitch and
  F0"), so the model stays in tune with no training at all and learns only the singer's deviations
  (vibrato, glides, overshoot); its output layer starts at zero, so an untrained model sings the notes
  exactly. The residual is in semitones over the note pitch smoothed across frames
  (a 5-frame moving average, ~60 ms: transitions glide instead of stepping), rests take their
  neighbouring notes' pitch.
- §2.4: durations are trained at the phoneme level and the syllable (note) level; we add the sentence
  level with DiffSinger's weights 0.3/1.0/3.0 (Liu et al. 2022, §3.3), all as MSE of log(1 + frames). At
  synthesis the predicted phoneme durations of each note are rescaled to fill the note exactly
  (`cinematic.data.singing.fit_durations`), so every syllable starts on its note.
- Output: a log-mel at the speech vocoder's settings instead of XiaoiceSing's WORLD parameters, so the
  project's HiFi-GAN renders it (or the harmonic-plus-noise renderer of `cinematic.generation.singing`,
  a WORLD-like source-filter synthesis driven by this model's F0).
- Beyond the paper: the speaker table plus a GE2E d-vector projection, with table dropout in training,
  as in the voice model (`cinematic.models.fastspeech`), so a singer can be cloned zero-shot from a
  reference clip; a language embedding (multilingual phonemes); durations come from the corpus when it
  gives them, else from the voice model's unsupervised aligner (`cinematic.models.aligner`) restricted
  to each note's frames (a note-constrained prior), so no forced aligner is needed.
- Pitch is fed to the network as sinusoidal features of the MIDI value (like positional encodings, periods
  from 1 to 128 semitones) and a linear layer, not as quantisation bins: a pitch never heard in training
  still gets a sensible vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cinematic.models.aligner import AlignmentEncoder, ForwardSumLoss, hard_alignment
from cinematic.models.fastspeech import (
    DVECTOR_DIM,
    FastSpeech2Config,
    FFTBlock,
    PostNet,
    VariancePredictor,
    length_regulate,
    length_regulate_index,
    lengths_to_mask,
    sinusoid_positions,
)

DURATION_WEIGHTS = (0.3, 1.0, 3.0)
"""Phoneme, syllable (note) and sentence duration loss weights (DiffSinger §3.3)."""
SMOOTH_FRAMES = 5
"""Moving-average width (frames) of the note-pitch track the F0 residual is added to."""


@dataclass
class XiaoiceSingConfig:
    """Model hyperparameters (the singing task fills it from `singing_model` and the data's vocabularies;
    the checkpoint stores it, so inference never reads the app's config section)."""

    n_symbols: int
    """Rows of the phoneme table (<pad> = 0, <unk>, SP and the data's phonemes)."""
    n_languages: int = 1
    n_mels: int = 80
    num_speakers: int = 16
    """Rows of the singer table besides row 0 ("no table entry": zero-shot and table dropout)."""
    embed_dim: int = 256
    num_heads: int = 2
    encoder_num_layers: int = 4
    decoder_num_layers: int = 4
    conv_filter_size: int = 1024
    conv_kernel_sizes: tuple[int, int] = (9, 1)
    dropout: float = 0.1
    variance_filter_size: int = 256
    variance_kernel_size: int = 3
    variance_dropout: float = 0.5
    postnet_layers: int = 0
    speaker_encoder: bool = True
    """Project a GE2E d-vector into the singer vector (zero-shot singers from a reference clip)."""
    mean_log_duration: float = math.log(6.0)
    """Mean log(1 + frames per phoneme) of the data: the duration predictor's initial bias."""

    def __post_init__(self) -> None:
        self.conv_kernel_sizes = tuple(int(k) for k in self.conv_kernel_sizes)  # type: ignore[assignment]
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )

    def fft_config(self) -> FastSpeech2Config:
        """The FastSpeech 2 settings its FFT blocks and variance predictors are built from."""
        return FastSpeech2Config(
            n_symbols=self.n_symbols,
            n_languages=self.n_languages,
            n_mels=self.n_mels,
            num_speakers=self.num_speakers,
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            conv_filter_size=self.conv_filter_size,
            conv_kernel_sizes=self.conv_kernel_sizes,
            dropout=self.dropout,
            variance_filter_size=self.variance_filter_size,
            variance_kernel_size=self.variance_kernel_size,
            variance_dropout=self.variance_dropout,
        )


class PitchFeatures(nn.Module):
    """MIDI pitch (any float) → (…, D): sinusoids with periods of 1–128 semitones, then a linear layer."""

    def __init__(self, dim: int, n_freqs: int = 8):
        super().__init__()
        periods = 2.0 ** torch.linspace(0, 7, n_freqs)  # 1 … 128 semitones
        self.register_buffer("omega", 2 * math.pi / periods, persistent=False)
        self.proj = nn.Linear(2 * n_freqs + 1, dim)

    def forward(self, midi: torch.Tensor) -> torch.Tensor:
        angle = midi.unsqueeze(-1) * self.omega
        centred = ((midi - 60.0) / 12.0).unsqueeze(-1)  # the register itself, in octaves from middle C
        return self.proj(torch.cat([angle.sin(), angle.cos(), centred], dim=-1))


def fill_rests(pitch: torch.Tensor) -> torch.Tensor:
    """(B, T) note pitch with 0 at rests → rests take the pitch of the note before them (the first note's
    before any note). An all-rest row stays 0."""
    index = torch.arange(pitch.shape[1], device=pitch.device).expand_as(pitch)
    sung = pitch > 0
    last = torch.where(sung, index, torch.zeros_like(index)).cummax(1).values
    forward = pitch.gather(1, last)
    first = torch.where(sung, index, torch.full_like(index, pitch.shape[1] - 1)).min(1, keepdim=True).values
    lead = pitch.gather(1, first.expand_as(pitch))
    return torch.where((forward > 0) | ~sung.any(1, keepdim=True), forward, lead)


def smooth_note_pitch(frame_pitch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) note pitch per frame (0 at rests) → rests filled, then a moving average of SMOOTH_FRAMES
    (edges repeated): the track F0 is a residual over."""
    filled = fill_rests(frame_pitch.float().masked_fill(mask, 0.0))
    pad = SMOOTH_FRAMES // 2
    padded = F.pad(filled.unsqueeze(1), (pad, pad), mode="replicate")
    return F.avg_pool1d(padded, SMOOTH_FRAMES, stride=1).squeeze(1)


def group_sums(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(B, T_text) values, (B, T_text) group index → (B, n_groups) sums per group (padding must be 0)."""
    out = values.new_zeros(values.shape[0], n_groups)
    return out.scatter_add(1, groups, values)


class XiaoiceSing(nn.Module):
    """The singing acoustic model. `forward` trains (teacher-forced durations and F0); `infer` sings."""

    def __init__(self, cfg: XiaoiceSingConfig):
        super().__init__()
        self.cfg = cfg
        fft = cfg.fft_config()
        dim = cfg.embed_dim
        self.embedding = nn.Embedding(cfg.n_symbols, dim, padding_idx=0)
        self.language_embedding = nn.Embedding(max(cfg.n_languages, 1), dim)
        self.note_pitch_embedding = nn.Embedding(128, dim)  # row 0 doubles as "rest"
        self.note_duration_proj = nn.Linear(1, dim)
        self.slur_embedding = nn.Embedding(2, dim)
        self.encoder = nn.ModuleList(FFTBlock(fft) for _ in range(cfg.encoder_num_layers))
        self.speaker_embedding = nn.Embedding(cfg.num_speakers + 1, dim)
        nn.init.normal_(self.speaker_embedding.weight, std=0.1)
        self.dvector_proj = nn.Linear(DVECTOR_DIM, dim) if cfg.speaker_encoder else None
        self.aligner = AlignmentEncoder(cfg.n_mels, dim)
        self.forward_sum = ForwardSumLoss()
        self.duration_predictor = VariancePredictor(fft)
        with torch.no_grad():
            self.duration_predictor.out.bias.fill_(cfg.mean_log_duration)
        self.note_track_features = PitchFeatures(dim)
        self.residual_predictor = VariancePredictor(fft)
        with (
            torch.no_grad()
        ):  # F0 starts exactly on the (smoothed) notes; training adds the singer's deviations
            self.residual_predictor.out.weight.zero_()
            self.residual_predictor.out.bias.zero_()
        self.vuv_predictor = VariancePredictor(fft)
        with torch.no_grad():
            self.vuv_predictor.out.bias.fill_(2.0)  # sung frames are mostly voiced
        self.pitch_features = PitchFeatures(dim)
        self.decoder = nn.ModuleList(FFTBlock(fft, cond_dim=dim) for _ in range(cfg.decoder_num_layers))
        self.mel_linear = nn.Linear(dim, cfg.n_mels)
        self.postnet = PostNet(cfg.n_mels, 2 * dim, cfg.postnet_layers) if cfg.postnet_layers > 0 else None

    # ------------------------------------------------------------------------------------------ parts

    def speaker_vector(self, speakers: torch.Tensor, dvectors: torch.Tensor | None) -> torch.Tensor:
        """(B,) table rows (0: none) and (B, 256) d-vectors or None → (B, D)."""
        vector = self.speaker_embedding(speakers)
        if self.dvector_proj is not None and dvectors is not None:
            vector = vector + self.dvector_proj(dvectors)
        return vector

    def encode(
        self,
        tokens: torch.Tensor,
        note_pitch: torch.Tensor,
        note_frames: torch.Tensor,
        slur: torch.Tensor,
        text_mask: torch.Tensor,
        languages: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (encoder output (B, T_text, D), phoneme embeddings (B, T_text, D) for the aligner)."""
        embedded = self.embedding(tokens)
        x = embedded + self.language_embedding(languages).unsqueeze(1)
        x = x + self.note_pitch_embedding(note_pitch.long().clamp(0, 127))
        x = x + self.note_duration_proj(torch.log1p(note_frames.float()).unsqueeze(-1))
        x = x + self.slur_embedding(slur.long().clamp(0, 1))
        x = x + sinusoid_positions(tokens.shape[1], x.shape[-1], x.device)
        for block in self.encoder:
            x = block(x, text_mask)
        return x, embedded

    def variance(
        self, frames: torch.Tensor, frame_note: torch.Tensor, mel_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame states + the smoothed note track → (states with the note track, F0 residual (semitones),
        V/UV logits), all per frame."""
        frames = frames + self.note_track_features(frame_note)
        residual = self.residual_predictor(frames, mel_mask)
        vuv = self.vuv_predictor(frames, mel_mask)
        return frames, residual, vuv

    def decode(
        self, frames: torch.Tensor, mel_mask: torch.Tensor, speaker: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames + sinusoid_positions(frames.shape[1], frames.shape[-1], frames.device)
        for block in self.decoder:
            x = block(x, mel_mask, speaker)
        keep = (~mel_mask).unsqueeze(-1)
        mel = self.mel_linear(x) * keep
        post = mel + self.postnet(mel, mel_mask) if self.postnet is not None else mel
        return mel, post * keep

    # ------------------------------------------------------------------------------------------ training

    def forward(
        self, batch: dict[str, torch.Tensor], speakers: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass over a collated singing batch (`cinematic.data.singing` tracks, see the task):
        durations from the batch when the corpus gave them, else the aligner's within each note; the true
        F0 feeds the decoder. `speakers` replaces the batch's table rows (table dropout)."""
        tokens, text_lengths = batch["tokens"], batch["text_lengths"]
        mels, mel_lengths = batch["mels"], batch["mel_lengths"]
        text_mask = lengths_to_mask(text_lengths, tokens.shape[1])
        mel_mask = lengths_to_mask(mel_lengths, mels.shape[1])
        hidden, embedded = self.encode(
            tokens, batch["note_pitch"], batch["note_frames"], batch["slur"], text_mask, batch["languages"]
        )
        speaker = self.speaker_vector(
            batch["speakers"] if speakers is None else speakers, batch.get("dvectors")
        )
        hidden = hidden + speaker.unsqueeze(1)

        durations = batch.get("durations")
        attn_logprob = None
        if durations is None:  # the aligner (and MAS on the host) only when the corpus gives no durations
            soft, attn_logprob = self.aligner(
                mels.transpose(1, 2), embedded.transpose(1, 2), text_mask, batch["align_prior"]
            )
            soft = soft.masked_fill(mel_mask.unsqueeze(-1), 0.0)
            _, durations = hard_alignment(soft, text_lengths, mel_lengths)
        log_duration = self.duration_predictor(hidden, text_mask)

        frames, _ = length_regulate(hidden, durations, max_len=mels.shape[1])
        index = length_regulate_index(durations, mels.shape[1])
        frame_note = smooth_note_pitch(batch["note_pitch"].float().gather(1, index), mel_mask)
        frames, residual, vuv = self.variance(frames, frame_note, mel_mask)
        frames = frames + self.pitch_features(batch["f0"])
        mel, post = self.decode(frames, mel_mask, speaker)
        return {
            "mel": mel,
            "mel_post": post,
            "log_duration": log_duration,
            "durations": durations,
            "residual": residual,
            "vuv": vuv,
            "frame_note": frame_note,
            "attn_logprob": attn_logprob,
            "text_mask": text_mask,
            "mel_mask": mel_mask,
        }

    def losses(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mel L1 (+ postnet), phoneme/syllable/sentence duration MSE (0.3/1.0/3.0 of log(1 + frames)), F0
        residual L1 (semitones, voiced frames), V/UV cross-entropy and the aligner's forward-sum loss."""
        keep_mel = (~out["mel_mask"]).float()
        keep_text = (~out["text_mask"]).float()
        n_mels = out["mel"].shape[-1]
        n_frames = keep_mel.sum().clamp(min=1)
        mels = batch["mels"]
        mel_l1 = ((out["mel"] - mels).abs() * keep_mel.unsqueeze(-1)).sum() / (n_frames * n_mels)
        post_l1 = ((out["mel_post"] - mels).abs() * keep_mel.unsqueeze(-1)).sum() / (n_frames * n_mels)

        target = out["durations"].float() * keep_text
        predicted = torch.expm1(out["log_duration"]).clamp(min=0) * keep_text
        phone = (((out["log_duration"] - torch.log1p(target)) ** 2) * keep_text).sum() / keep_text.sum()
        groups, n_groups = batch["groups"], int(batch["group_frames"].shape[1])
        true_groups = batch["group_frames"].float()
        pred_groups = group_sums(predicted, groups, n_groups)
        keep_group = (true_groups > 0).float()
        syllable = (
            ((torch.log1p(pred_groups) - torch.log1p(true_groups)) ** 2) * keep_group
        ).sum() / keep_group.sum()
        sentence = ((torch.log1p(predicted.sum(1)) - torch.log1p(target.sum(1))) ** 2).mean()
        w_phone, w_syllable, w_sentence = DURATION_WEIGHTS
        duration = w_phone * phone + w_syllable * syllable + w_sentence * sentence

        voiced = batch["voiced"].float() * keep_mel
        residual_target = batch["f0"] - out["frame_note"]
        pitch = ((out["residual"] - residual_target).abs() * voiced).sum() / voiced.sum().clamp(min=1)
        vuv = (
            F.binary_cross_entropy_with_logits(out["vuv"], batch["voiced"].float(), reduction="none")
            * keep_mel
        ).sum() / n_frames
        if out["attn_logprob"] is not None:
            align = self.forward_sum(out["attn_logprob"], batch["text_lengths"], batch["mel_lengths"])
        else:  # given durations: the aligner rests, but stays in the graph (DDP expects every parameter)
            align = sum(p.sum() for p in self.aligner.parameters()) * 0.0
        total = mel_l1 + post_l1 + duration + pitch + vuv + align
        return {
            "loss": total,
            "mel_l1": mel_l1,
            "postnet_l1": post_l1,
            "duration": duration,
            "duration_phoneme": phone,
            "duration_syllable": syllable,
            "duration_sentence": sentence,
            "f0_residual": pitch,
            "vuv": vuv,
            "forward_sum": align,
        }

    # ------------------------------------------------------------------------------------------ synthesis

    @torch.no_grad()
    def predict_durations(
        self,
        tokens: torch.Tensor,
        note_pitch: torch.Tensor,
        note_frames: torch.Tensor,
        slur: torch.Tensor,
        languages: torch.Tensor,
        speakers: torch.Tensor,
        dvectors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One song (B = 1, no padding) → (encoder states + singer vector, singer vector, predicted frames
        per phoneme (float, before the notes' constraint))."""
        mask = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
        hidden, _ = self.encode(tokens, note_pitch, note_frames, slur, mask, languages)
        speaker = self.speaker_vector(speakers, dvectors)
        hidden = hidden + speaker.unsqueeze(1)
        return hidden, speaker, torch.expm1(self.duration_predictor(hidden, mask)).clamp(min=0)

    @torch.no_grad()
    def synthesize(
        self, hidden: torch.Tensor, speaker: torch.Tensor, note_pitch: torch.Tensor, durations: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Encoder states (from `predict_durations`) and the durations that fill the notes → mel
        (1, T, n_mels), F0 in MIDI semitones (1, T) and V/UV probability (1, T)."""
        frames, _ = length_regulate(hidden, durations)
        mel_mask = torch.zeros(frames.shape[:2], dtype=torch.bool, device=frames.device)
        index = length_regulate_index(durations, frames.shape[1])
        frame_note = smooth_note_pitch(note_pitch.float().gather(1, index), mel_mask)
        frames, residual, vuv = self.variance(frames, frame_note, mel_mask)
        f0 = frame_note + residual
        frames = frames + self.pitch_features(f0)
        _, mel = self.decode(frames, mel_mask, speaker)
        sung = note_pitch.gather(1, index) > 0
        return {"mel": mel, "f0_midi": f0, "voiced": torch.sigmoid(vuv) * sung, "frame_note": frame_note}

    def adaptation_parameters(self) -> list[nn.Parameter]:
        """The singer table and the decoder's conditional layer-norm projections (AdaSpeech §2.3)."""
        params = [self.speaker_embedding.weight]
        for block in self.decoder:
            for norm in (block.norm1, block.norm2):
                params.extend(norm.parameters())
        return params
