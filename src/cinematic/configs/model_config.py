"""Model hyperparameters: the seed README's `music_model`, `voice_model`, `lyrics_model` keys plus the
vocoder and the shared mel-spectrogram settings.

Defaults are the seed's where it names one, else the paper's. Each model section may carry a
`training:` block that overrides the global training keys for that model's runs (the presets use it
to give FastSpeech 2 its Noam schedule and HiFi-GAN its AdamW 0.8/0.99 + exponential decay).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cinematic.configs.training_config import StrictModel, TrainingOverrides


class MelConfig(StrictModel):
    """One log-mel front end, shared by an acoustic model and its vocoder and stored in both checkpoints."""

    sample_rate: int = Field(22050, ge=8000)
    n_fft: int = Field(1024, ge=64)
    hop_length: int = Field(256, ge=16)
    win_length: int = Field(1024, ge=64)
    n_mels: int = Field(80, ge=8)
    fmin: float = Field(0.0, ge=0)
    fmax: float | None = 8000.0
    """null: Nyquist (sample_rate / 2)."""

    @model_validator(mode="after")
    def _check(self) -> MelConfig:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        nyquist = self.sample_rate / 2
        if self.fmax is not None and not (self.fmin < self.fmax <= nyquist):
            raise ValueError(
                f"need fmin < fmax <= sample_rate/2 ({nyquist:g}), got fmin={self.fmin}, fmax={self.fmax}"
            )
        return self

    def differences(self, other: MelConfig) -> list[str]:
        """Names and values of the fields that differ, e.g. ['hop_length: 256 != 512']."""
        return [
            f"{name}: {getattr(self, name)} != {getattr(other, name)}"
            for name in type(self).model_fields
            if getattr(self, name) != getattr(other, name)
        ]


def _merged_with(defaults: TrainingOverrides, given: object) -> object:
    """A user's partial `training:` block keeps the preset's other keys (e.g. the Noam schedule)."""
    if isinstance(given, dict):
        return {**defaults.model_dump(exclude_unset=True), **given}
    return given


def _voice_training() -> TrainingOverrides:
    # FastSpeech 2, §3.1: Adam (0.9, 0.98, 1e-9) with the Transformer's inverse-sqrt (Noam) schedule.
    return TrainingOverrides(
        optimizer="adam",
        betas=(0.9, 0.98),
        eps=1e-9,
        scheduler="inverse_sqrt",
        warmup_steps=4000,
        learning_rate=1e-3,
        weight_decay=0.0,
    )


def _vocoder_training() -> TrainingOverrides:
    # HiFi-GAN, §4: AdamW (0.8, 0.99), lr 2e-4, decayed by 0.999 every epoch; no clipping.
    return TrainingOverrides(
        optimizer="adamw",
        learning_rate=2e-4,
        betas=(0.8, 0.99),
        scheduler="exponential",
        lr_decay=0.999,
        weight_decay=0.01,
        gradient_clip_val=None,
    )


def _music_mel() -> MelConfig:
    # hop 1024: 43 frames/s, near MusicGen's 50 Hz token rate. Sampling reads the whole transformer
    # once per frame, so the frame rate sets generation speed: hop 512 (86 frames/s) took 11.4 s for
    # 10 s of music on 2 CPU cores, hop 1024 takes 5.5 s (benchmarks/music_audio.py)
    return MelConfig(sample_rate=44100, n_fft=2048, hop_length=1024, win_length=2048, n_mels=128, fmax=None)


class MusicModelConfig(StrictModel):
    """Music Transformer (Huang et al. 2018) with emotion/genre/scene conditioning."""

    num_layers: int = Field(12, ge=1)
    num_heads: int = Field(12, ge=1)
    embed_dim: int = Field(768, ge=8)
    ff_dim: int | None = Field(None, ge=8)
    """Feed-forward width; null: 4 × embed_dim."""
    dropout: float = Field(0.1, ge=0, lt=1)
    emotion_conditioning: bool = True
    genre_conditioning: bool = True
    scene_conditioning: bool = True
    conditioning: Literal["tokens", "embedding", "both"] = "both"
    """Control tokens prepended to the sequence, a learned condition embedding added at every
    position, or both."""
    condition_dropout: float = Field(0.1, ge=0, le=1)
    """Probability of replacing each label by the null label in training (enables classifier-free guidance)."""
    max_seq_len: int = Field(2048, ge=16)
    """Training crop length in tokens (frames for the audio route)."""
    max_relative_position: int = Field(2048, ge=1)
    """Relative distances beyond this are clipped to it (one learned embedding per distance per head)."""
    attention: Literal["global", "local"] = "global"
    local_block_length: int = Field(256, ge=8)
    """Block length of relative local attention (each block attends to itself and the previous one)."""
    tie_embeddings: bool = False
    tokenizer: Literal["performance", "remi"] = "performance"
    """performance: the paper's 388-event encoding; remi: miditok's REMI."""
    representation: Literal["auto", "midi", "audio"] = "auto"
    """auto: MIDI when the folder holds MIDI files, else audio."""
    transpose_range: int = Field(3, ge=0, le=12)
    """Training augmentation: transpose by −N…+N semitones (dropping transpositions out of range)."""
    time_stretch: list[float] = Field(default_factory=lambda: [0.95, 0.975, 1.0, 1.025, 1.05])
    """Training augmentation: time-stretch factors, one drawn per example."""
    tempo_augmentation: float | None = Field(None, ge=0, lt=1)
    """Optional uniform tempo augmentation ±this fraction (the seed's ±15 %: 0.15) instead of `time_stretch`."""
    audio: MelConfig = Field(default_factory=_music_mel)
    """Mel front end of the audio route (and of its music vocoder)."""
    rvq_codebooks: int = Field(4, ge=1, le=32)
    """Audio route: residual VQ codebooks K (parallel token streams)."""
    rvq_codebook_size: int = Field(256, ge=2)
    """Audio route: entries per codebook."""
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)


class VoiceModelConfig(StrictModel):
    """FastSpeech 2 (Ren et al. 2020) with a built-in aligner, speaker table, d-vectors and languages."""

    encoder_num_layers: int = Field(4, ge=1)
    decoder_num_layers: int = Field(4, ge=1)
    num_speakers: int = Field(100, ge=1)
    num_mels: int = Field(80, ge=8)
    """Mel bins; kept equal to audio.n_mels."""
    embed_dim: int = Field(256, ge=8)
    num_heads: int = Field(2, ge=1)
    conv_filter_size: int = Field(1024, ge=8)
    """Width of the FFT block's position-wise convolutions."""
    conv_kernel_sizes: tuple[int, int] = (9, 1)
    dropout: float = Field(0.2, ge=0, lt=1)
    variance_filter_size: int = Field(256, ge=8)
    variance_kernel_size: int = Field(3, ge=1)
    variance_dropout: float = Field(0.5, ge=0, lt=1)
    n_bins: int = Field(256, ge=2)
    """Quantization bins of the pitch and energy embeddings."""
    postnet_layers: int = Field(5, ge=0)
    front_end: Literal["phonemes", "characters"] = "phonemes"
    """phonemes via espeak-ng (falls back to characters with a warning when it is missing)."""
    languages: list[str] = Field(default_factory=lambda: ["en", "es", "fr", "de"])
    speaker_encoder: bool = True
    """Add a GE2E d-vector (resemblyzer) projection so unseen voices can be cloned from a clip."""
    aligner_binarization_start_steps: int = Field(6000, ge=0)
    """Steps of soft alignment before the binarization loss switches on."""
    audio: MelConfig = Field(default_factory=MelConfig)
    training: TrainingOverrides = Field(default_factory=_voice_training)

    @field_validator("training", mode="before")
    @classmethod
    def _keep_preset(cls, value: object) -> object:
        return _merged_with(_voice_training(), value)

    @model_validator(mode="after")
    def _sync_mels(self) -> VoiceModelConfig:
        if "num_mels" in self.model_fields_set and "n_mels" not in self.audio.model_fields_set:
            self.audio.n_mels = self.num_mels
        elif self.audio.n_mels != self.num_mels:
            if "num_mels" in self.model_fields_set:
                raise ValueError(f"num_mels ({self.num_mels}) and audio.n_mels ({self.audio.n_mels}) differ")
            self.num_mels = self.audio.n_mels
        return self


class VocoderConfig(StrictModel):
    """HiFi-GAN (Kong et al. 2020). `preset` fills the generator settings left null."""

    preset: Literal["v1", "v2", "v3"] = "v1"
    upsample_rates: list[int] | None = None
    upsample_kernel_sizes: list[int] | None = None
    upsample_initial_channel: int | None = None
    resblock: Literal["1", "2"] | None = None
    resblock_kernel_sizes: list[int] | None = None
    resblock_dilation_sizes: list[list[int]] | None = None
    mpd_periods: list[int] = Field(default_factory=lambda: [2, 3, 5, 7, 11])
    discriminator_width: float = Field(1.0, gt=0, le=4)
    """Channel multiplier of the MPD and MSD (1 = the paper's 32…1024 channels; the tiny preset shrinks it)."""
    segment_size: int = Field(8192, ge=256)
    """Training segment length in samples (a multiple of the hop)."""
    lambda_mel: float = 45.0
    """Weight of the mel L1 loss (computed on a full-band mel: fmax = Nyquist)."""
    lambda_fm: float = 2.0
    """Weight of the feature-matching loss."""
    mel_dir: str | None = None
    """Fine-tuning on acoustic-model mels: folder of ground-truth-aligned `<relative wav path>.npy` mels
    (n_mels, frames), frames = samples // hop of the WAV of the same relative path under data_dir.
    null: input mels are computed from the audio."""
    init_from: str | None = None
    """Checkpoint whose generator and discriminator weights start a new run (fine-tuning, e.g. with
    `mel_dir`); its MelConfig must match. null: random initialization."""
    audio: MelConfig | None = None
    """null: the speech vocoder uses voice_model.audio; the music vocoder always uses music_model.audio."""
    training: TrainingOverrides = Field(default_factory=_vocoder_training)

    @field_validator("training", mode="before")
    @classmethod
    def _keep_preset(cls, value: object) -> object:
        return _merged_with(_vocoder_training(), value)


class LyricsModelConfig(StrictModel):
    """Multilingual GPT lyrics generator conditioned on language, emotion, genre and scene."""

    vocab_size: int = Field(50257, ge=260)
    """Target BPE vocabulary; a corpus too small for it yields a smaller one (logged)."""
    num_layers: int = Field(12, ge=1)
    """Transformer blocks (GPT-2 small: 12)."""
    num_heads: int = Field(12, ge=1)
    """Attention heads; must divide embed_dim."""
    embed_dim: int = Field(768, ge=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on embeddings, attention weights and residual branches."""
    max_seq_len: int = Field(1024, ge=16)
    """Training block length in tokens (songs are packed into blocks of this size)."""
    languages: list[str] = Field(default_factory=lambda: ["en", "es", "fr", "de"])
    """Languages you expect (folder names); languages found in the data are trained too."""
    emotion_conditioning: bool = True
    genre_conditioning: bool = True
    scene_conditioning: bool = True
    condition_dropout: float = Field(0.1, ge=0, le=1)
    """Probability of leaving out each condition (language, emotion, genre, scene) in training."""
    balance_alpha: float = Field(0.3, ge=0, le=1)
    """Language-balanced sampling temperature (1 natural, 0 uniform)."""
    tie_embeddings: bool = True
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)

    @model_validator(mode="after")
    def _check_heads(self) -> LyricsModelConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        return self
