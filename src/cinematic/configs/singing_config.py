"""The `singing_model` section: XiaoiceSing (`cinematic.models.singing`), trained by `cinematic train singing`.

The mel front end defaults to the voice model's (22.05 kHz, hop 256, 80 mels, fmax 8000), so the speech
HiFi-GAN vocoder renders the singing mels; the model and its vocoder must share it (checked at synthesis).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cinematic.configs.model_config import MelConfig, _heads_problem, _merged_with, _odd_kernel_problem
from cinematic.configs.training_config import StrictModel, TrainingOverrides, raise_problems


def _singing_training() -> TrainingOverrides:
    # FastSpeech 2 / XiaoiceSing: Adam (0.9, 0.98, 1e-9) with the Transformer's inverse-sqrt schedule.
    return TrainingOverrides(
        optimizer="adam",
        betas=(0.9, 0.98),
        eps=1e-9,
        scheduler="inverse_sqrt",
        warmup_steps=4000,
        learning_rate=1e-3,
        weight_decay=0.0,
    )


class SingingModelConfig(StrictModel):
    """XiaoiceSing (Lu et al. 2020): FastSpeech 2 with note pitch, note duration and slur per phoneme, F0 as
    a residual over the note pitch, syllable-level duration loss; singer table plus d-vector."""

    encoder_num_layers: int = Field(4, ge=1)
    decoder_num_layers: int = Field(4, ge=1)
    num_speakers: int = Field(16, ge=1)
    """Rows of the singer table (at least the number of singers in the data)."""
    embed_dim: int = Field(256, ge=8)
    num_heads: int = Field(2, ge=1)
    conv_filter_size: int = Field(1024, ge=8)
    """Width of the FFT block's position-wise convolutions."""
    conv_kernel_sizes: tuple[int, int] = (9, 1)
    dropout: float = Field(0.1, ge=0, lt=1)
    variance_filter_size: int = Field(256, ge=8)
    variance_kernel_size: int = Field(3, ge=1)
    variance_dropout: float = Field(0.5, ge=0, lt=1)
    postnet_layers: int = Field(0, ge=0)
    """Tacotron 2 postnet convolutions after the decoder (0: none)."""
    front_end: Literal["phonemes", "characters"] = "phonemes"
    """How syllables without phonemes are phonemised (espeak-ng; characters when it is missing)."""
    languages: list[str] = Field(default_factory=lambda: ["en", "es"])
    """Languages of the model; the first is the language of songs that do not name theirs."""
    speaker_encoder: bool = True
    """Add a GE2E d-vector (resemblyzer) projection so unseen singers can be cloned from a clip."""
    formant_shifts: list[Annotated[float, Field(ge=0.7, le=1.4)]] = Field(default_factory=list)
    """Speaker augmentation: each training recording again with its formants moved by each of these ratios
    (pitch and timing kept; Praat's "Change gender"), as a virtual singer with its own d-vector and no
    table row, so the d-vector path sees a continuum of voices (empty: none)."""
    transpositions: list[Annotated[int, Field(ge=-12, le=12)]] = Field(default_factory=list)
    """Register augmentation: each training recording again moved by each of these semitones (formants
    and timing kept; Praat PSOLA), notes moved with it, same singer: the singer's timbre apart from the
    register it happens to sing in (empty: none)."""
    speaker_table_dropout: float = Field(0.5, ge=0, le=1)
    """Share of training items that lose their singer-table entry, so the d-vector path learns the voice."""
    max_song_seconds: float = Field(12.0, gt=0)
    """Recordings longer than this are cut at a rest (or a note boundary) into pieces no longer than it."""
    audio: MelConfig = Field(default_factory=MelConfig)
    """The mel front end (the speech vocoder's by default)."""
    training: TrainingOverrides = Field(default_factory=_singing_training)

    @field_validator("training", mode="before")
    @classmethod
    def _keep_preset(cls, value: object) -> object:
        return _merged_with(_singing_training(), value)

    @model_validator(mode="after")
    def _check(self) -> SingingModelConfig:
        problems = _heads_problem(self.embed_dim, self.num_heads)
        problems += _odd_kernel_problem(
            "conv_kernel_sizes", list(self.conv_kernel_sizes), "each FFT-block convolution"
        )
        problems += _odd_kernel_problem(
            "variance_kernel_size", [self.variance_kernel_size], "each variance-predictor convolution"
        )
        if not self.languages:
            problems.append(
                (("languages",), [], "languages is empty: list at least one language (e.g. [en])")
            )
        raise_problems(problems, "SingingModelConfig")
        return self
