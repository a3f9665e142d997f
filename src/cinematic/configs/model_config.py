"""Model hyperparameters: the seed README's `music_model`, `voice_model`, `lyrics_model` keys plus the
vocoder and the shared mel-spectrogram settings.

Defaults are the seed's where it names one, else the paper's. Each model section may carry a
`training:` block that overrides the global training keys for that model's runs (the presets use it
to give FastSpeech 2 its Noam schedule and HiFi-GAN its AdamW 0.8/0.99 + exponential decay).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from cinematic.configs.training_config import Problem, StrictModel, TrainingOverrides, raise_problems


def _heads_problem(embed_dim: int, num_heads: int) -> list[Problem]:
    """Multi-head attention splits embed_dim into num_heads equal heads (every model asserts it)."""
    if embed_dim % num_heads == 0:
        return []
    choices = [n for n in range(1, min(embed_dim, 128) + 1) if embed_dim % n == 0]
    return [
        (
            ("num_heads",),
            num_heads,
            f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}): each head gets "
            f"embed_dim / num_heads dimensions; choose num_heads in {', '.join(map(str, choices))} "
            "(or change embed_dim)",
        )
    ]


def _odd_kernel_problem(key: str, kernels: list[int], what: str) -> list[Problem]:
    """A "same" convolution pads kernel // 2 on each side: only an odd kernel keeps the length, and
    the residual that adds its output back to its input fails on one frame too many."""
    bad = [k for k in kernels if k < 1 or k % 2 == 0]
    if not bad:
        return []
    value = kernels[0] if len(kernels) == 1 else list(kernels)
    return [
        (
            (key,),
            value,
            f"{key} {value} must be odd and positive ({what} pads kernel // 2 on each side, so an even "
            f"kernel gives one frame too many and the residual sum fails); use e.g. "
            f"{', '.join(str(k + 1 if k >= 1 else 1) for k in bad)}",
        )
    ]


def _hz_to_mel(hz: float) -> float:
    """Slaney's mel scale (librosa's default, which `MelSpectrogram` uses): linear below 1 kHz."""
    return hz * 3 / 200 if hz < 1000 else 15 + math.log(hz / 1000) / (math.log(6.4) / 27)


def _mel_to_hz(mel: float) -> float:
    return mel * 200 / 3 if mel < 15 else 1000 * math.exp((mel - 15) * math.log(6.4) / 27)


def empty_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> int:
    """How many filters of librosa's mel filterbank (`librosa.filters.mel`, Slaney scale) for these
    settings cover no FFT bin. Filter i is a triangle over (edge i, edge i + 2) of n_mels + 2 edges
    evenly spaced in mel from fmin to fmax, and weighs bin k (at k · sample_rate / n_fft Hz) only when
    the bin lies strictly inside; a filter with no bin inside is a constant (silent) mel channel.
    Exact up to n_mels = 2 × (n_fft // 2 + 1); beyond (a bin lies inside at most two filters) the
    count returned, n_mels − 2 × (n_fft // 2 + 1), is a lower bound."""
    top = sample_rate / 2 if fmax is None else fmax
    low, high = _hz_to_mel(fmin), _hz_to_mel(top)
    n_bins = n_fft // 2 + 1
    if n_mels > 2 * n_bins:
        return n_mels - 2 * n_bins
    step = (high - low) / (n_mels + 1)
    edges = [_mel_to_hz(low + step * i) for i in range(n_mels + 2)]
    per_hz = n_fft / sample_rate
    empty = 0
    for i in range(n_mels):
        first = max(0, math.floor(edges[i] * per_hz) + 1)  # the first bin above edge i
        last = min(n_bins - 1, math.ceil(edges[i + 2] * per_hz) - 1)  # the last bin below edge i + 2
        empty += last < first
    return empty


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
        raise_problems(self.problems(), "MelConfig")
        return self

    def problems(self) -> list[Problem]:
        """The broken constraints of this front end (`MelSpectrogram`, Griffin-Lim, the vocoders)."""
        problems: list[Problem] = []
        if self.win_length > self.n_fft:
            problems.append(
                (
                    ("win_length",),
                    self.win_length,
                    f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft}): the window "
                    f"is one FFT frame; raise n_fft or lower win_length",
                )
            )
        if self.hop_length > self.win_length:
            problems.append(
                (
                    ("hop_length",),
                    self.hop_length,
                    f"hop_length ({self.hop_length}) must not exceed win_length ({self.win_length}): the "
                    "samples between two windows would never be analysed (and the inverse STFT of "
                    "Griffin-Lim fails); lower hop_length or raise win_length",
                )
            )
        elif (self.n_fft - self.hop_length) % 2:
            problems.append(
                (
                    ("hop_length",),
                    self.hop_length,
                    f"n_fft - hop_length must be even, got {self.n_fft} - {self.hop_length}: the mel "
                    "pads (n_fft - hop_length) / 2 samples on each side so that a clip of N hops gives "
                    "N frames; use hop_length "
                    + " or ".join(
                        str(h)
                        for h in (self.hop_length - 1, self.hop_length + 1)
                        if 16 <= h <= self.win_length
                    ),
                )
            )
        nyquist = self.sample_rate / 2
        fmax = self.fmax if self.fmax is not None else nyquist
        if not self.fmin < fmax <= nyquist:
            blame_fmax = self.fmax is not None and (fmax > nyquist or "fmin" not in self.model_fields_set)
            problems.append(
                (
                    ("fmax",) if blame_fmax else ("fmin",),
                    self.fmax if blame_fmax else self.fmin,
                    f"need fmin < fmax <= sample_rate/2 ({nyquist:g}), got fmin={self.fmin}, "
                    f"fmax={self.fmax}" + (" (null: sample_rate/2)" if self.fmax is None else ""),
                )
            )
        else:
            problems += self._empty_filter_problems()
        return problems

    def _empty_filter_problems(self) -> list[Problem]:
        def empty(n_fft: int = self.n_fft, n_mels: int = self.n_mels) -> int:
            return empty_mel_filters(self.sample_rate, n_fft, n_mels, self.fmin, self.fmax)

        count = empty()
        if not count:
            return []
        # the largest n_mels without empty filters (binary search; skipped for absurd sizes)
        low, high = 1, self.n_mels - 1 if self.n_mels <= 2**14 else 1
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (low, middle - 1) if empty(n_mels=middle) else (middle, high)
        n_fft = self.n_fft * 2 if self.n_mels <= 2**14 else 2**16
        while n_fft < 2**16 and empty(n_fft=n_fft):
            n_fft *= 2
        fixes = [f"n_mels <= {low}"] if low >= 8 and not empty(n_mels=low) else []
        fixes += [f"n_fft >= {n_fft}"] if n_fft < 2**16 else []
        fixes.append("a wider fmin…fmax")
        fmax = (
            f"{self.fmax:g} Hz" if self.fmax is not None else f"sample_rate/2 = {self.sample_rate / 2:g} Hz"
        )
        at_least = "at least " if self.n_mels > 2 * (self.n_fft // 2 + 1) else ""
        return [
            (
                ("n_mels",),
                self.n_mels,
                f"n_mels ({self.n_mels}) is too many for n_fft ({self.n_fft}) at sample_rate "
                f"{self.sample_rate} between fmin {self.fmin:g} Hz and fmax {fmax}: {at_least}{count} mel "
                "filter(s) would cover no FFT bin and give constant, empty channels; use "
                + ", or ".join(fixes),
            )
        ]

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


AttributeName = Literal[
    "key", "mode", "tempo", "density", "register", "polyphony", "instruments", "loudness", "brightness"
]
"""The attributes `cinematic.data.attributes` measures (its ALL_ATTRIBUTES; a test keeps them equal)."""


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
    """Probability of replacing each label (emotion, genre, scene) by the null label in training."""
    unconditional_prob: float = Field(0.15, ge=0, le=1)
    """Probability of replacing *all* conditions of an item by the null label at once in training (on
    top of the per-condition dropout): trains the unconditional branch classifier-free guidance uses."""
    attributes: list[AttributeName] | None = None
    """Attributes measured from the music that become conditions (symbolic: key, mode, tempo, density,
    register, polyphony, instruments; audio: tempo, loudness, brightness). null: all of the route's;
    []: none. A value given in a file's `.json` (e.g. "key": "D minor", "tempo": 90) wins."""
    attribute_dropout: float = Field(0.3, ge=0, le=1)
    """Probability of replacing each attribute by the null label in training: generation usually
    sets only a few attributes, so the model must see most of them missing."""
    labels_alone_prob: float = Field(0.0, ge=0, le=1)
    """Probability of replacing every attribute of an item by the null label at once, its labels kept:
    trains the model on a label alone (emotion only, `--no_fill`), which independent attribute dropout
    reaches with probability attribute_dropout^#attributes."""
    attribute_window: int = Field(512, ge=0)
    """Symbolic route: a training crop's key, mode, density, register and polyphony are measured on
    the first this-many tokens from its start (the music the conditions should describe: a chorale's
    crop in its dominant is labelled with the dominant), tempo and instrumentation on the whole piece;
    0: every crop takes the whole piece's values. Match it to the length you generate."""
    opening_crop_prob: float = Field(0.5, ge=0, le=1)
    """Symbolic route: fraction of training crops that start at the piece's opening (BOS), where a
    sampled piece starts and where the conditions decide the first notes."""
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
    eval_samples: int = Field(0, ge=0)
    """At each validation, log `evaluate music`'s label sensitivity and control accuracy (this many
    generated pieces per condition) to TensorBoard as val/label_sensitivity/* and val/control_accuracy/*;
    0: off (generation costs time)."""
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)

    @model_validator(mode="after")
    def _check(self) -> MusicModelConfig:
        problems = _heads_problem(self.embed_dim, self.num_heads)
        bad = [factor for factor in self.time_stretch if not factor > 0]
        if bad:
            problems.append(
                (
                    ("time_stretch",),
                    list(self.time_stretch),
                    f"time_stretch factors must be positive, got {bad}: a factor scales every event "
                    "time (1.0: unchanged, 1.05: 5 % slower); e.g. [0.95, 1.0, 1.05]",
                )
            )
        if self.representation != "midi" and self.max_seq_len <= self.rvq_codebooks:
            problems.append(
                (
                    ("max_seq_len",),
                    self.max_seq_len,
                    f"max_seq_len ({self.max_seq_len}) must exceed rvq_codebooks ({self.rvq_codebooks}) "
                    "for the audio route: the delay pattern shifts codebook k by k steps, so the "
                    "samples drawn at each validation are max_seq_len − rvq_codebooks frames long and "
                    "would be empty (each fails; under FSDP the run stops); raise max_seq_len or lower "
                    "rvq_codebooks (or set representation: midi)",
                )
            )
        raise_problems(problems, "MusicModelConfig")
        return self


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
            try:
                self.audio.n_mels = self.num_mels
            except ValidationError as err:  # the mel front end refuses it: say so at num_mels
                raise_problems([(("num_mels",), self.num_mels, e["msg"]) for e in err.errors()])
        elif self.audio.n_mels != self.num_mels:
            if "num_mels" in self.model_fields_set:
                raise_problems(
                    [
                        (
                            ("num_mels",),
                            self.num_mels,
                            f"num_mels ({self.num_mels}) and audio.n_mels ({self.audio.n_mels}) differ; "
                            "they are the same setting: set one of them",
                        )
                    ]
                )
            self.num_mels = self.audio.n_mels
        return self

    @model_validator(mode="after")
    def _check(self) -> VoiceModelConfig:
        problems = _heads_problem(self.embed_dim, self.num_heads)
        problems += _odd_kernel_problem(
            "conv_kernel_sizes", list(self.conv_kernel_sizes), "each FFT-block convolution"
        )
        problems += _odd_kernel_problem(
            "variance_kernel_size", [self.variance_kernel_size], "each variance-predictor convolution"
        )
        if not self.languages:
            problems.append(
                (
                    ("languages",),
                    [],
                    "languages is empty: list at least one language (e.g. [en]); the first is the "
                    "language of utterances that do not name theirs",
                )
            )
        raise_problems(problems, "VoiceModelConfig")
        return self


HIFIGAN_PRESETS: dict[str, dict[str, Any]] = {
    "v1": dict(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=512,
        resblock="1",
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3,
    ),
    "v2": dict(
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        upsample_initial_channel=128,
        resblock="1",
        resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3,
    ),
    "v3": dict(
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        upsample_initial_channel=256,
        resblock="2",
        resblock_kernel_sizes=[3, 5, 7],
        resblock_dilation_sizes=[[1, 2], [2, 6], [3, 12]],
    ),
}
"""The generator settings of HiFi-GAN's presets (Kong et al. 2020, Table 1): what
`cinematic.models.hifigan` builds from, and what the vocoder section's checks resolve null keys with."""


def derive_upsample_rates(hop: int, stages: int) -> list[int]:
    """Split `hop` into `stages` factors as evenly as possible, largest first (e.g. 512, 4 → [8, 4, 4, 4]).

    The rates a preset gets when its own do not multiply to the mel hop (44.1 kHz music with hop 1024,
    24 kHz speech with hop 300), so any sample rate works without hand-tuning the generator."""
    primes, n, p = [], hop, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    rates = [1] * stages
    for factor in sorted(primes, reverse=True):  # largest factor onto the smallest stage so far
        rates[rates.index(min(rates))] *= factor
    return sorted(rates, reverse=True)


def _kernel_fit_problem(kernels: list[int], rates: list[int]) -> str | None:
    """HiFi-GAN's transposed convolution of stride u and kernel k pads (k − u) / 2: the output is
    exactly u samples per input sample only when k >= u and k − u is even."""
    if all(k >= u and (k - u) % 2 == 0 for k, u in zip(kernels, rates)):
        return None
    fitting = [2 * u for u in rates]
    return (
        f"upsample_kernel_sizes {kernels} do not fit the upsample_rates {rates}: each kernel "
        "must be >= its rate and differ from it by an even number, or the generator's output is not "
        f"frames × hop samples long; the paper uses 2 × rate: {fitting}"
    )


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
    lambda_mel: float = Field(45.0, ge=0)
    """Weight of the mel L1 loss (computed on a full-band mel: fmax = Nyquist)."""
    lambda_fm: float = Field(2.0, ge=0)
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

    def generator_settings(self) -> dict[str, Any]:
        """The preset's generator settings with this section's non-null keys applied (before the rates
        are fitted to a hop: see `hop_problems`)."""
        preset = HIFIGAN_PRESETS[self.preset]
        return {key: preset[key] if getattr(self, key) is None else getattr(self, key) for key in preset}

    def _origin(self, key: str) -> str:
        return f" (preset {self.preset}'s)" if getattr(self, key) is None else ""

    @model_validator(mode="after")
    def _check(self) -> VocoderConfig:
        raise_problems(self._generator_problems(), "VocoderConfig")
        return self

    def _generator_problems(self) -> list[Problem]:
        """What `HiFiGANConfig` and the generator refuse whatever the mel hop (the hop is checked
        across sections: `vocoder_hop_problems`)."""
        g = self.generator_settings()
        rates, kernels = list(g["upsample_rates"]), list(g["upsample_kernel_sizes"])
        res_kernels, dilations = (
            list(g["resblock_kernel_sizes"]),
            [list(d) for d in g["resblock_dilation_sizes"]],
        )
        problems: list[Problem] = []

        def add(key: str, message: str) -> None:
            problems.append(((key,), getattr(self, key), message))

        positive = {
            "upsample_rates": rates,
            "upsample_kernel_sizes": kernels,
            "resblock_kernel_sizes": res_kernels,
            "mpd_periods": list(self.mpd_periods),
        }
        for key, values in positive.items():
            if any(v < 1 for v in values):
                add(key, f"{key} {values} must all be positive integers (rates, kernel sizes, periods)")
        if any(d < 1 for ds in dilations for d in ds):
            add(
                "resblock_dilation_sizes",
                f"resblock_dilation_sizes {dilations} must all be positive integers",
            )
        if g["upsample_initial_channel"] < 1:
            add(
                "upsample_initial_channel",
                f"upsample_initial_channel ({g['upsample_initial_channel']}) must be positive",
            )
        if not rates:
            add(
                "upsample_rates",
                "upsample_rates is empty: give one rate per upsampling stage (their product is the hop)",
            )
        if not res_kernels:
            add(
                "resblock_kernel_sizes",
                "resblock_kernel_sizes is empty: the MRF needs at least one residual block",
            )
        if problems:
            return problems
        if len(kernels) != len(rates):
            key = "upsample_kernel_sizes" if self.upsample_kernel_sizes is not None else "upsample_rates"
            add(
                key,
                f"upsample_kernel_sizes {kernels}{self._origin('upsample_kernel_sizes')} need one kernel per "
                f"upsample rate {rates}{self._origin('upsample_rates')}: set both (e.g. kernels "
                f"{[2 * u for u in rates]})",
            )
        elif self.upsample_rates is not None:  # rates not given are fitted to the hop: checked there
            problem = _kernel_fit_problem(kernels, rates)
            if problem:
                add("upsample_kernel_sizes", problem + self._origin("upsample_kernel_sizes"))
        if len(res_kernels) != len(dilations):
            key = (
                "resblock_dilation_sizes"
                if self.resblock_dilation_sizes is not None
                else "resblock_kernel_sizes"
            )
            add(
                key,
                f"resblock_kernel_sizes {res_kernels}{self._origin('resblock_kernel_sizes')} and "
                f"resblock_dilation_sizes {dilations}{self._origin('resblock_dilation_sizes')} need the same "
                "length (one list of dilations per kernel): set both",
            )
        else:
            # a "same" dilated convolution pads (k − 1)·d // 2 per side: an odd (k − 1)·d loses a sample
            # and the residual sum fails; ResBlock1 also runs each kernel undilated (d = 1)
            uses = [
                (k, d)
                for k, ds in zip(res_kernels, dilations)
                for d in ([*ds, 1] if g["resblock"] == "1" else ds)
            ]
            bad = sorted({(k, d) for k, d in uses if (k - 1) * d % 2})
            if bad:
                add(
                    "resblock_kernel_sizes"
                    if self.resblock_kernel_sizes is not None
                    else "resblock_dilation_sizes",
                    f"resblock_kernel_sizes {res_kernels} with resblock_dilation_sizes {dilations} "
                    f"(resblock {g['resblock']}): kernel {bad[0][0]} at dilation {bad[0][1]} would shorten "
                    "the signal by a sample and the residual sum fails; use odd kernels (e.g. 3, 5, 7)",
                )
        stages = len(rates)
        if g["upsample_initial_channel"] % 2**stages:
            channels = g["upsample_initial_channel"]
            add(
                "upsample_initial_channel",
                f"upsample_initial_channel ({channels}){self._origin('upsample_initial_channel')} must be "
                f"divisible by 2^{stages} = {2**stages}: each of the {stages} upsampling stages halves the "
                f"channels; e.g. {max(2**stages, channels // 2**stages * 2**stages)}",
            )
        return problems

    def hop_problems(self, hop: int) -> dict[str, list[int] | None]:
        """The keys that do not fit a vocoder at mel hop `hop` (empty: this section fits it), each with
        the upsample rates the generator would use there (None where no rates are derived)."""
        g = self.generator_settings()
        rates, kernels = list(g["upsample_rates"]), list(g["upsample_kernel_sizes"])
        problems: dict[str, list[int] | None] = {}
        if self.upsample_rates is not None:
            if math.prod(rates) != hop:
                problems["upsample_rates"] = None
        elif len(kernels) == len(rates) and all(k >= 1 for k in kernels):
            # as HiFiGANConfig.from_preset: the preset's rates, or rates derived from the hop
            if math.prod(rates) != hop:
                rates = derive_upsample_rates(hop, len(rates))
            if self.upsample_kernel_sizes is not None and _kernel_fit_problem(kernels, rates):
                problems["upsample_kernel_sizes"] = rates
        if self.segment_size % hop:
            problems["segment_size"] = None
        return problems


def vocoder_hop_problems(config: Any) -> list[Problem]:
    """The `vocoder` section against the mel hops of its two vocoders (a check across sections, run
    on the root config): the speech vocoder's (`vocoder.audio`, or `voice_model.audio` when null) and
    the music vocoder's (`music_model.audio`). One section serves both, and a setting that fits one of
    the hops is for that vocoder, so it is refused only when it fits neither (training the other
    vocoder with it stops with a message when the vocoder task builds)."""
    vocoder = getattr(config, "vocoder", None)
    if not isinstance(vocoder, VocoderConfig):
        return []
    targets: list[tuple[str, str, MelConfig]] = []  # (vocoder, where its mel is set, the mel)
    voice = getattr(getattr(config, "voice_model", None), "audio", None)
    if vocoder.audio is not None:
        targets.append(("the speech vocoder", "vocoder.audio", vocoder.audio))
    elif isinstance(voice, MelConfig):
        targets.append(("the speech vocoder", "voice_model.audio", voice))
    music = getattr(getattr(config, "music_model", None), "audio", None)
    if isinstance(music, MelConfig):
        targets.append(("the music vocoder", "music_model.audio", music))
    found = [
        (who, where, mel.hop_length, vocoder.hop_problems(mel.hop_length)) for who, where, mel in targets
    ]
    if not found or any(not problems for *_, problems in found):
        return []
    problems: list[Problem] = []
    for key in ("upsample_rates", "upsample_kernel_sizes", "segment_size"):
        failing = [(who, where, hop, p[key]) for who, where, hop, p in found if key in p]
        if not failing:
            continue
        value = getattr(vocoder, key)
        hops = ", ".join(f"{hop} for {who} ({where}.hop_length)" for who, where, hop, _ in failing)
        fitting = [who for who, _, _, p in found if key not in p]
        hops += f" (it fits {' and '.join(fitting)})" if fitting else ""
        if key == "segment_size":
            fix = " or ".join(sorted({str(math.ceil(value / hop) * hop) for _, _, hop, _ in failing}))
            message = (
                f"segment_size ({value}) must be a multiple of the mel hop_length, {hops}: training "
                f"crops are whole mel frames; e.g. {fix}"
            )
        elif key == "upsample_rates":
            fix = " or ".join(str(derive_upsample_rates(hop, len(value))) for _, _, hop, _ in failing)
            message = (
                f"upsample_rates {value} multiply to {math.prod(value)}, but the generator must turn each "
                f"mel frame into one hop of samples: {hops}; e.g. {fix}, or leave upsample_rates null to "
                "derive them from the hop"
            )
        else:
            used = ", ".join(f"{rates} for {who}" for who, _, _, rates in failing)
            message = (
                f"upsample_kernel_sizes {value} do not fit the upsample_rates fitted to the mel hop "
                f"({used}): each kernel must be >= its rate and differ from it by an even number (the "
                "paper: 2 × rate); set upsample_rates too, or leave upsample_kernel_sizes null"
            )
        problems.append((("vocoder", key), value, message))
    return problems


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
    unconditional_prob: float = Field(0.15, ge=0, le=1)
    """Probability of leaving out all four conditions of a song at once in training (on top of
    `condition_dropout`), so the unconditional prefix that guidance uses is trained."""
    balance_alpha: float = Field(0.3, ge=0, le=1)
    """Language-balanced sampling temperature (1 natural, 0 uniform)."""
    tie_embeddings: bool = True
    training: TrainingOverrides = Field(default_factory=TrainingOverrides)

    @model_validator(mode="after")
    def _check_heads(self) -> LyricsModelConfig:
        raise_problems(_heads_problem(self.embed_dim, self.num_heads), "LyricsModelConfig")
        return self


def dataclass_from_section(cls: type, section: Any, **given: Any) -> Any:
    """A model-file dataclass config filled from the config section's fields of the same name, plus
    `given` (what the section does not hold: table sizes from the data, the mel bins of its audio)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    shared = {name: getattr(section, name) for name in names if name in type(section).model_fields}
    return cls(**shared, **given)
