"""`training.activation_checkpointing` (same gradients as the plain step, dropout included, on the
Music Transformer and the lyrics GPT) and `training.compile` (a tiny model trains compiled on the CPU
with the same checkpoint keys; a backend failure falls back to eager with a warning)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._inductor.config
from toy_tasks import make_task

from cinematic.models.lyrics_generator import LyricsGPT, LyricsGPTConfig
from cinematic.models.music_transformer import MusicTransformer, MusicTransformerConfig
from cinematic.training.checkpoint import load_full_state_dict
from cinematic.training.speed import checkpoint_blocks, compile_model, compiler_problem
from cinematic.training.trainer import Trainer, run_training


def tiny_music() -> torch.nn.Module:
    cfg = MusicTransformerConfig(vocab_size=50, num_layers=2, num_heads=2, embed_dim=64, ff_dim=128,
                                 dropout=0.1, max_relative_position=64)  # fmt: skip
    return MusicTransformer(cfg)


def tiny_gpt() -> torch.nn.Module:
    return LyricsGPT(
        LyricsGPTConfig(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.1)
    )


def music_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])  # (B, 1, T, V)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 2), tokens[:, 1:].flatten())


def gpt_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return model(tokens[:, :-1], targets=tokens[:, 1:])[1]


def gradients(model, loss_fn, tokens, seed):
    torch.manual_seed(seed)  # the dropout masks
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, tokens)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "make, loss_fn", [(tiny_music, music_loss), (tiny_gpt, gpt_loss)], ids=["music", "gpt"]
)
def test_activation_checkpointing_gives_the_plain_gradients_with_dropout(make, loss_fn):
    torch.manual_seed(0)
    plain = make().train()
    checkpointed = make().train()
    checkpointed.load_state_dict(plain.state_dict())
    blocks = checkpoint_blocks(checkpointed)
    assert len(blocks) == 2 and list(checkpointed.state_dict()) == list(plain.state_dict())
    calls = []
    first_layer = next(m for m in blocks[0].modules() if isinstance(m, torch.nn.LayerNorm))
    first_layer.register_forward_hook(lambda *_: calls.append(1))
    tokens = torch.randint(0, 50, (2, 33), generator=torch.Generator().manual_seed(1))

    loss, reference = gradients(plain, loss_fn, tokens, seed=5)
    loss_ckpt, grads = gradients(checkpointed, loss_fn, tokens, seed=5)
    assert len(calls) == 2  # the block ran again in backward
    assert torch.equal(loss, loss_ckpt)
    for name, grad in reference.items():
        assert torch.allclose(grads[name], grad, rtol=0, atol=1e-6), name
    other, _ = gradients(plain, loss_fn, tokens, seed=6)
    assert not torch.equal(other, loss)  # dropout is on: another seed, another loss

    with torch.no_grad():  # no recomputation outside training
        calls.clear()
        loss_fn(checkpointed.eval(), tokens)
        assert len(calls) == 1


def test_compile_failure_falls_back_to_eager_with_a_warning():
    def failing_backend(graph, inputs):
        raise RuntimeError("no kernels today")

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    x = torch.randn(3, 4)
    expected = net(x)
    assert compile_model(net, "net", torch.device("cpu"), backend=failing_backend)
    with pytest.warns(RuntimeWarning, match="torch.compile failed for net .*running it eagerly"):
        out = net(x)
    assert torch.equal(out, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: eager from now on
        assert torch.equal(net(x), expected)


def test_weights_saved_from_a_torch_compile_wrapper_load_into_the_plain_model():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    wrapped_state = torch.compile(net).state_dict()  # keys "_orig_mod.0.weight", ...
    assert all(k.startswith("_orig_mod.") for k in wrapped_state)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh())
    load_full_state_dict(fresh, wrapped_state, fsdp=False, what="net")
    assert torch.equal(fresh[0].weight, net[0].weight)


@pytest.mark.skipif(
    compiler_problem(torch.device("cpu")) is not None, reason="torch.compile needs a C++ compiler"
)
def test_compiled_training_matches_eager_with_the_same_checkpoint_keys(toy_cfg, data_dir):
    keys = {"max_steps": 3, "ema_decay": None, "validate_every_steps": 100, "checkpoint_every_steps": 100}
    eager = run_training(make_task("toy"), toy_cfg(**keys, run_name="eager"), data_dir)
    trainer = Trainer(make_task("toy"), toy_cfg(**keys, run_name="compiled", compile=True), data_dir)
    # One compiler process: a pool of workers costs more than it saves for a handful of kernels.
    with torch._inductor.config.patch(compile_threads=1), warnings.catch_warnings():
        warnings.filterwarnings("error", message="training.compile")  # no fallback to eager
        compiled = trainer.fit()
    assert trainer.models["net"]._compiled_call_impl is not None  # it ran compiled
    a = torch.load(eager.last_checkpoint, weights_only=True)["model"]["net"]
    b = torch.load(compiled.last_checkpoint, weights_only=True)["model"]["net"]
    assert list(a) == list(b)  # the same keys: no _orig_mod. prefix
    for key, value in a.items():
        assert torch.allclose(b[key], value, atol=1e-5), key
