"""Pieces of the distributed set-up that need no process group: FSDP units and mixed precision, the
gradient buckets, timeouts from the environment (the epoch sampler is tests/data/test_sampler.py)."""

from __future__ import annotations

import datetime

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from cinematic.training import distributed as D
from cinematic.training.distributed import fsdp_mixed_precision, gradient_buckets, shard_units


class Block(nn.Module):
    """A transformer-like block: attention and MLP layers."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.Linear(4, 4)
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
        self.norm = nn.LayerNorm(4)


class SubDiscriminator(nn.Module):
    """HiFi-GAN-like: a list of weight-normed convolutions and an output conv."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(weight_norm(nn.Conv1d(2, 2, 3)) for _ in range(3))
        self.post = weight_norm(nn.Conv1d(2, 1, 3))


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.embeddings = nn.ModuleList(nn.Embedding(3, 4) for _ in range(2))  # leaves: no units
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.ups = nn.ModuleList(weight_norm(nn.ConvTranspose1d(4, 4, 2)) for _ in range(2))  # leaves
        self.stages = nn.ModuleList(nn.ModuleList(SubDiscriminator() for _ in range(2)) for _ in range(2))
        self.post = nn.Sequential(nn.Sequential(nn.Conv1d(4, 4, 1), nn.BatchNorm1d(4)), nn.Tanh())
        self.frozen = nn.ModuleList([Block()])
        self.frozen.requires_grad_(False)
        self.tied = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 10, bias=False))])
        self.tied[0][1].weight = self.wte.weight


def unit_names(model: nn.Module) -> list[str]:
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(unit)] for unit in shard_units(model)]


def test_fsdp_units_are_the_blocks_not_single_layers_nor_what_is_inside_a_unit():
    assert unit_names(Model()) == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "stages.0.0",  # a ModuleList inside a ModuleList is looked into
        "stages.0.1",
        "stages.1.0",
        "stages.1.1",
        "post.0",  # a conv + norm pair; not the Tanh, no parameters
    ]  # not: embeddings.*, ups.* (weight-normed leaves), blocks.*.mlp, frozen.0, tied.0 (shares wte)


def test_a_sequential_of_layers_is_one_unit_the_root():
    assert shard_units(nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 1))) == []


def test_the_real_models_get_one_unit_per_block():
    from cinematic.models.hifigan import MultiPeriodDiscriminator, MultiScaleDiscriminator
    from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig

    assert unit_names(MultiPeriodDiscriminator()) == [f"discriminators.{i}" for i in range(5)]
    assert unit_names(MultiScaleDiscriminator()) == [f"discriminators.{i}" for i in range(3)]
    gpt = LyricsGPT(LyricsGPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=8))
    assert unit_names(gpt) == ["blocks.0", "blocks.1"]


def test_fsdp_mixed_precision_gathers_in_the_amp_dtype_and_reduces_in_fp32():
    policy = fsdp_mixed_precision(torch.bfloat16)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    policy = fsdp_mixed_precision(torch.float16)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.float16, torch.float32)
    plain = fsdp_mixed_precision(None)
    assert (plain.param_dtype, plain.reduce_dtype) == (None, None)


def test_gradient_buckets_by_dtype_and_size_last_parameters_first():
    mib = 2**20 // 4  # float32 elements in one MiB
    grads = [torch.zeros(mib), torch.zeros(mib), torch.zeros(3 * mib), torch.zeros(8, dtype=torch.float16)]
    grads.append(torch.zeros(mib))
    buckets = gradient_buckets(grads, bucket_bytes=2 * 2**20)
    ids = [[id(g) for g in bucket] for bucket in buckets]
    # reversed order: grads[4], then fp16 grads[3] in its own bucket; grads[2] (3 MiB) is too big to join
    assert ids == [[id(grads[4])], [id(grads[3])], [id(grads[2])], [id(grads[1]), id(grads[0])]]
    assert sorted(id(g) for bucket in buckets for g in bucket) == sorted(id(g) for g in grads)


def test_timeouts_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(D.BUILD_TIMEOUT_ENV, raising=False)
    assert D.timeout_from_env(D.BUILD_TIMEOUT_ENV, 1440) == datetime.timedelta(days=1)
    monkeypatch.setenv(D.BUILD_TIMEOUT_ENV, "0.5")
    assert D.timeout_from_env(D.BUILD_TIMEOUT_ENV, 1440) == datetime.timedelta(seconds=30)
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv(D.BUILD_TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match=D.BUILD_TIMEOUT_ENV):
            D.timeout_from_env(D.BUILD_TIMEOUT_ENV, 1440)


def test_speed_switches_stay_off_on_the_cpu_and_when_deterministic(monkeypatch):
    assert not D.enable_tf32(torch.device("cpu"), deterministic=False)
    assert not D.enable_tf32(torch.device("cuda", 0), deterministic=True)
    assert not D.enable_cudnn_benchmark(deterministic=True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert D.enable_cudnn_benchmark(deterministic=False) and torch.backends.cudnn.benchmark
