"""Typed configuration: `Config` and its sections, YAML loading and validation."""

from cinematic.configs.loading import TASK_SECTIONS, Config, config_from_dict, load_config
from cinematic.configs.model_config import (
    LyricsModelConfig,
    MelConfig,
    MusicModelConfig,
    VocoderConfig,
    VoiceModelConfig,
)
from cinematic.configs.training_config import DataConfig, LoggingConfig, TrainingConfig, WandbConfig

__all__ = [
    "TASK_SECTIONS",
    "Config",
    "DataConfig",
    "LoggingConfig",
    "LyricsModelConfig",
    "MelConfig",
    "MusicModelConfig",
    "TrainingConfig",
    "VocoderConfig",
    "VoiceModelConfig",
    "WandbConfig",
    "config_from_dict",
    "load_config",
]
