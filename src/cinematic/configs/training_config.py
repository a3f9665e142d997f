"""Training, data and logging settings (the seed README's `training:`, `data:` and `logging:` keys).

Every field has the seed's default where the seed names one. A model section may hold its own
`training:` block (`TrainingOverrides`) that replaces the global keys for that model's runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Problem = tuple[tuple[str | int, ...], Any, str]
"""A broken constraint: the key path it is reported at (relative to the model being validated), the
value there, and a message that names the keys and values involved and says what to do."""


def raise_problems(problems: Sequence[Problem], title: str = "Config") -> None:
    """Raise the problems (if any) as one `ValidationError` (a `ValueError`) with an error per key.

    A model validator raising it reports each message at its key, e.g. `music_model.num_heads`, where
    a plain `ValueError` would be reported at the section; pydantic prefixes the section's own path and
    the loader turns each into one line of its `UserError`."""
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "{message}", {"message": message}),
                    loc=loc,
                    input=value,
                )
                for loc, value, message in problems
            ],
        )


def _training_problems(values: BaseModel) -> list[Problem]:
    """Checks of `TrainingConfig` keys that also hold for a partial override block (None: not set)."""
    problems: list[Problem] = []
    betas = getattr(values, "betas", None)
    if betas is not None and not all(0 <= b < 1 for b in betas):
        problems.append(
            (
                ("betas",),
                list(betas),
                f"betas {list(betas)} must each lie in [0, 1) (Adam/AdamW refuse others); the usual "
                "values are [0.9, 0.999] (FastSpeech 2: [0.9, 0.98], HiFi-GAN: [0.8, 0.99])",
            )
        )
    return problems


class TrainingConfig(StrictModel):
    """How a model is optimised: length, batch, optimizer, schedule, precision, checkpoints."""

    epochs: int = Field(100, ge=1)
    """Full passes over the training set; `max_steps` wins when both are set."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    batch_size: int = Field(8, ge=1)
    """Batch size per GPU (per process). The seed's `data.batch_size` is accepted as an alias."""
    learning_rate: float = Field(1e-4, gt=0)
    """Peak learning rate (after warmup)."""
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW betas (HiFi-GAN uses 0.8/0.99, FastSpeech 2 0.9/0.98)."""
    eps: float = Field(1e-8, gt=0)
    """Adam/AdamW epsilon (FastSpeech 2 uses 1e-9)."""
    weight_decay: float = Field(0.01, ge=0)
    """Decoupled weight decay, applied only to ≥2-D weights (never to biases, norms, embeddings' scales)."""
    momentum: float = Field(0.9, ge=0)
    """SGD momentum."""
    scheduler: Literal["cosine_warmup", "linear_warmup", "inverse_sqrt", "exponential", "constant"] = (
        "cosine_warmup"
    )
    warmup_steps: int = Field(10000, ge=0)
    """Linear warmup length in optimizer steps (cosine_warmup, linear_warmup, inverse_sqrt)."""
    lr_decay: float = Field(0.999, gt=0, le=1)
    """Per-epoch decay factor of the `exponential` scheduler (HiFi-GAN: 0.999)."""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """Final learning rate of cosine/linear decay as a fraction of `learning_rate`."""
    amp: bool | Literal["bf16", "fp16"] = True
    """Mixed precision. true: bf16 on CUDA where supported, else fp16 + GradScaler; on a CPU without
    native bf16 it falls back to fp32 with a warning. "bf16"/"fp16" force that dtype."""
    gradient_clip_val: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm (after unscaling); null disables clipping."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Batches whose gradients are summed into one optimizer step (the effective batch is
    batch_size × this × the number of processes)."""
    ema_decay: float | None = Field(0.999, gt=0, lt=1)
    """Exponential moving average of the weights, used for validation and export; null turns it off."""
    seed: int = Field(1234, ge=0, lt=2**63)
    """Base seed; each rank and data-loader worker derives its own from it (numpy's generators refuse
    negative seeds, torch's those of 64 bits and more)."""
    deterministic: bool = False
    """Use deterministic kernels (slower on GPU)."""
    strategy: Literal["ddp", "fsdp"] = "ddp"
    """Data parallelism under torchrun: DDP, or FSDP2 (`fully_shard`)."""
    compile: bool = False
    """`torch.compile` each model (the whole model; its blocks one by one under FSDP). Falls back to
    eager with a warning where compilation is impossible (no C++ compiler, a backend failure).
    Checkpoint keys are the same with and without it (docs/scale.md)."""
    activation_checkpointing: bool = False
    """Recompute each block of the models (the elements of their ModuleLists, as FSDP's units) in the
    backward pass instead of keeping its activations: less memory, about one more forward per step.
    Gradients are the same (dropout masks are redrawn from the saved RNG state)."""
    requeue: bool = False
    """Under SLURM (`SLURM_JOB_ID` set): after a preemption checkpoint (SIGTERM or SIGUSR1), requeue the
    job with `scontrol requeue` so it continues with `--resume auto` (docs/scale.md)."""
    checkpoint_every_steps: int = Field(1000, ge=1)
    keep_last_k: int = Field(3, ge=0)
    """How many periodic `step_<n>.pth` checkpoints to keep (last.pth and best.pth are always kept)."""
    validate_every_steps: int = Field(1000, ge=1)
    validate_at_start: bool = False
    """Also validate before the first step (the quickstart uses it to show before/after)."""
    best_metric: str = "val/loss"
    """Validation metric that selects best.pth."""
    best_mode: Literal["min", "max"] = "min"
    early_stopping_patience: int | None = Field(None, ge=1)
    """Stop after this many validations without improvement of `best_metric`; null: never."""
    max_nan_skips: int = Field(10, ge=1)
    """Consecutive non-finite steps tolerated before the run stops with an error."""
    work_dir: str = "./work_dir"
    """Root of all outputs; a task writes to <work_dir>/<task>/ (or <work_dir>/<run_name>/)."""
    run_name: str | None = None
    """Folder name under work_dir instead of the task name (e.g. vocoder_music)."""

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        raise_problems(_training_problems(self), type(self).__name__)
        return self


def _check_override(self: BaseModel) -> BaseModel:
    raise_problems(_training_problems(self), type(self).__name__)
    return self


def _all_optional(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same fields as `model`, each optional with default None: a partial override block. Each
    field keeps its bounds (a set key is checked where it is written) and the checks of
    `_training_problems` apply, so a bad `voice_model.training` key is refused when the config loads."""
    fields: dict[str, Any] = {}
    for key, field in model.model_fields.items():
        optional = field.annotation | None
        fields[key] = (Annotated[optional, *field.metadata] if field.metadata else optional, None)
    return create_model(
        name,
        __base__=StrictModel,
        __validators__={"_check": model_validator(mode="after")(_check_override)},
        **fields,
    )


TrainingOverrides = _all_optional(TrainingConfig, "TrainingOverrides")
TrainingOverrides.__doc__ = "A model section's own `training:` keys; each set key replaces the global one."


class WandbConfig(StrictModel):
    project: str = "cinematic-music-generation"
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None
    """null: W&B decides (WANDB_MODE). offline writes files locally and needs no network."""


class LoggingConfig(StrictModel):
    logger: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """TensorBoard always writes under <work_dir>/logs/tensorboard/<task>/ unless "none"; "wandb"
    logs to Weights & Biases as well."""
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    log_every_steps: int = Field(10, ge=1)
    """Scalars are written every this many optimizer steps."""
    progress_bar: bool | None = None
    """null: a progress bar on a terminal, plain lines otherwise."""
    heartbeat_seconds: float | None = Field(30.0, gt=0)
    """A "still working: step N/T, <what> for <s> s" line whenever the run printed nothing for this
    many seconds (a slow step, build or validation); null: off."""


class CleaningConfig(StrictModel):
    """Thresholds of `cinematic data clean` (see docs/data.md for the reason codes)."""

    min_duration: float = Field(0.5, gt=0)
    """Audio shorter than this (seconds) is rejected as `too_short`."""
    max_duration_voice: float = Field(30.0, gt=0)
    """Utterances longer than this are rejected as `too_long` (long clips hurt alignment and batching)."""
    max_duration_music: float = Field(900.0, gt=0)
    silence_dbfs: float = Field(-50.0, le=0)
    """A file whose peak stays below this level (dBFS) is `silent`."""
    clip_fraction: float = Field(0.001, gt=0, lt=1)
    """Share of samples at full scale (|x| ≥ 0.999) above which a file is `clipped`."""
    dc_offset: float = Field(0.01, gt=0)
    """|mean| above this is a `dc_offset` (removed in the cleaned copy)."""
    target_lufs_voice: float = -23.0
    """Loudness the cleaned voice copy is normalized to (EBU R 128)."""
    target_lufs_music: float = -14.0
    """Loudness the cleaned music copy is normalized to (streaming level)."""
    loudness_tolerance: float = Field(2.0, ge=0)
    """Files within this many LU of the target are left as they are."""
    near_duplicate_ber: float = Field(0.15, ge=0, le=0.5)
    """Two clips of about the same length whose audio fingerprints differ in fewer than this share of
    bits are near duplicates (Haitsma & Kalker 2002 fingerprints; unrelated audio gives ~0.5)."""
    music_max_channels: int = Field(2, ge=1)
    """Music with more channels is mixed down to this many; voice is always mixed to mono."""


class DataConfig(StrictModel):
    """Where data comes from and how it is cut. Model-specific audio settings live in the model sections."""

    batch_size: int | None = Field(None, ge=1)
    """Alias of training.batch_size (the seed's spelling)."""
    sample_rate: int = Field(44100, ge=8000)
    """Sample rate for audio that no model section sets (music-side preprocessing, augmentation)."""
    segment_duration: float = Field(10.0, gt=0)
    """Length in seconds of the pieces long audio is cut into."""
    num_workers: int = Field(2, ge=0)
    """DataLoader worker processes (raise it if data loading is the bottleneck)."""
    val_fraction: float = Field(0.1, ge=0, lt=1)
    """Share of files held out for validation (stratified by label where labels exist)."""
    max_val_items: int = Field(64, ge=1)
    """Upper bound on held-out files, so validation stays fast on big data sets."""
    augment_probability: float = Field(0.0, ge=0, le=1)
    """Probability that a training audio example is replaced by a random augmentation variation."""
    balance_attributes: list[str] = Field(default_factory=list)
    """Metadata attributes to balance when sampling (e.g. [emotion, language]); empty: natural."""
    balance_alpha: float = Field(1.0, ge=0, le=1)
    """Sampling temperature: 1 natural frequencies, 0 uniform per group."""
    strict: bool = False
    """false: a training file that cannot be read is skipped, counted and listed in
    <run_dir>/skipped_files.json; true (`cinematic train --strict`): it stops the run."""
    skip_bad_shards: bool = False
    """Training from shards (docs/streaming.md): false: a missing or truncated shard stops the run with
    an error naming it; true (`cinematic train --skip_bad_shards`): its items are left out and the shard
    is listed in <run_dir>/skipped_files.json."""
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    """Thresholds and targets of `cinematic data clean`."""
