"""Typed configuration: `Config` and its sections, YAML loading and validation."""

from cinematic.configs.loading import (
    Config,
    config_class,
    config_from_dict,
    load_config,
    make_config_class,
    use_config_class,
)
from cinematic.configs.model_config import (
    LyricsModelConfig,
    MelConfig,
    MusicModelConfig,
    VocoderConfig,
    VoiceModelConfig,
)
from cinematic.configs.training_config import DataConfig, LoggingConfig, TrainingConfig, WandbConfig

__all__ = [
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
    "config_class",
    "config_from_dict",
    "load_config",
    "make_config_class",
    "use_config_class",
]
