"""Resuming a checkpoint whose config predates a key: the key is ignored while it keeps its default."""

from __future__ import annotations

import copy

import pytest

from cinematic.errors import UserError
from cinematic.training.checkpoint import check_compatible


@pytest.fixture(scope="module")
def cfg():
    from cinematic.configs.loading import config_from_dict

    return config_from_dict({})


def old_checkpoint(cfg, *missing: str) -> dict:
    config = copy.deepcopy(cfg.to_dict())
    for key in missing:
        del config["music_model"][key]
    return {"task": "music", "config": config}


def test_keys_the_old_config_lacks_are_ignored_at_their_default(cfg):
    check_compatible(
        old_checkpoint(cfg, "unconditional_prob", "attributes", "attribute_dropout"), "music", cfg
    )


def test_a_new_key_set_away_from_its_default_is_still_a_difference(cfg):
    changed = cfg.model_copy(deep=True)
    changed.music_model.unconditional_prob = 0.5
    with pytest.raises(UserError, match=r"music_model\.unconditional_prob: 'missing' != 0\.5"):
        check_compatible(old_checkpoint(cfg, "unconditional_prob"), "music", changed)


def test_a_key_present_in_both_still_has_to_match(cfg):
    checkpoint = old_checkpoint(cfg, "unconditional_prob")
    checkpoint["config"]["music_model"]["num_layers"] = 3
    with pytest.raises(UserError, match=r"music_model\.num_layers: 3 != 12"):
        check_compatible(checkpoint, "music", cfg)
