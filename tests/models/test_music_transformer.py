"""Music Transformer: relative attention against an explicit L×L×D reference, causality, KV cache,
K streams and conditioning."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from cinematic.models.music_transformer import (
    MusicTransformer,
    MusicTransformerConfig,
    RelativeMultiheadAttention,
    causal_mask,
    local_mask,
    skew,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors gain nothing from threads


def tiny(**overrides) -> MusicTransformerConfig:
    settings = dict(
        vocab_size=24,
        num_layers=2,
        num_heads=2,
        embed_dim=16,
        ff_dim=32,
        dropout=0.0,
        max_relative_position=6,
        local_block_length=8,
        condition_sizes=(3, 4),
    )
    settings.update(overrides)
    return MusicTransformerConfig(**settings)


def reference_attention(q, k, v, rel_emb, max_rel, mask):
    """Huang et al. eq. 2 the slow way: an explicit (L, L, D_h) tensor R[i, j] = E[clip(i − j)]."""
    lq, lk = q.size(-2), k.size(-2)
    past = lk - lq
    dist = (torch.arange(lq).unsqueeze(1) + past - torch.arange(lk).unsqueeze(0)).clamp(0, max_rel)
    r = rel_emb[:, dist]  # (H, Lq, Lk, D_h)
    s_rel = torch.einsum("bhid,hijd->bhij", q, r)
    logits = (q @ k.transpose(-1, -2) + s_rel) / q.size(-1) ** 0.5
    logits = logits.masked_fill(mask, float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def assert_close_with_grads(fast, slow, inputs):
    """Same values to 1e-5, and the same gradients w.r.t. `inputs` of a random projection of them."""
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * upstream).sum(), inputs)
    grads_slow = torch.autograd.grad((slow * upstream).sum(), inputs)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _qkv(b=2, h=2, lq=12, lk=12, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=gen, requires_grad=True) for n in (lq, lk, lk)]


@pytest.mark.parametrize("max_rel", [3, 40])
@pytest.mark.parametrize("past", [0, 5])
@pytest.mark.parametrize("query_chunk", [0, 5])  # 0: one block; 5: chunks of 5, 5, 2 queries
def test_skewed_relative_attention_matches_explicit_reference_forward_and_grads(max_rel, past, query_chunk):
    cfg = tiny(max_relative_position=max_rel, embed_dim=16, num_heads=2, query_chunk=query_chunk)
    attn = RelativeMultiheadAttention(cfg)
    q, k, v = _qkv(lq=12, lk=12 + past)
    mask = causal_mask(12, past)
    fast = attn.attend(q, k, v, mask)
    slow = reference_attention(q, k, v, attn.relative_embeddings, max_rel, mask)
    assert_close_with_grads(fast, slow, [q, k, v, attn.relative_embeddings])


def test_local_block_attention_matches_reference_with_a_window_mask():
    block = 4
    attn = RelativeMultiheadAttention(
        tiny(attention="local", local_block_length=block, max_relative_position=5)
    )
    q, k, v = _qkv(lq=11, lk=11)
    fast = attn._local_blocks(q, k, v)
    slow = reference_attention(q, k, v, attn.relative_embeddings, 5, local_mask(11, 0, block))
    assert_close_with_grads(fast, slow, [q, k, v, attn.relative_embeddings])


def test_skew_places_each_distance_on_its_diagonal():
    # column c of the input holds distance Lk-1-c; after the skew entry [i, j] holds distance past+i-j
    lq, lk = 3, 5
    distances = torch.arange(lk - 1, -1, -1).float().expand(lq, lk)
    out = skew(distances)
    expected = (torch.arange(lq).unsqueeze(1) + (lk - lq) - torch.arange(lk).unsqueeze(0)).float()
    valid = expected >= 0
    assert torch.equal(out[valid], expected[valid])


def test_relative_embeddings_are_parameters_saved_in_the_state_dict():
    model = MusicTransformer(tiny())
    keys = [k for k in model.state_dict() if k.endswith("relative_embeddings")]
    assert len(keys) == 2
    assert model.state_dict()[keys[0]].shape == (2, 7, 8)  # heads × (max distance + 1) × head dim


@pytest.mark.parametrize("attention", ["global", "local"])
@pytest.mark.parametrize("streams", [1, 3])
def test_model_is_causal_by_perturbation(attention, streams):
    torch.manual_seed(0)
    model = MusicTransformer(tiny(attention=attention, num_streams=streams)).eval()
    tokens = torch.randint(0, 24, (2, streams, 20))
    conditions = torch.tensor([[1, 2], [2, 0]])
    base = model(tokens, conditions)
    assert base.shape == (2, streams, 20, 24)
    t = 11
    changed = tokens.clone()
    changed[:, -1, t] = (changed[:, -1, t] + 1) % 24  # only the last stream, only position t
    out = model(changed, conditions)
    assert torch.equal(out[:, :, :t], base[:, :, :t])
    assert not torch.allclose(out[:, :, t], base[:, :, t])


@pytest.mark.parametrize("attention", ["global", "local"])  # local: chunks under a window mask
def test_query_chunking_changes_nothing_in_the_model_or_a_chunked_cached_prefill(attention):
    torch.manual_seed(3)
    whole = MusicTransformer(tiny(query_chunk=0, attention=attention, local_block_length=4)).eval()
    chunked = MusicTransformer(tiny(query_chunk=3, attention=attention, local_block_length=4)).eval()
    chunked.load_state_dict(whole.state_dict())
    tokens = torch.randint(0, 24, (2, 23))
    conditions = torch.tensor([[1, 2], [2, 3]])
    full = whole(tokens, conditions)
    torch.testing.assert_close(chunked(tokens, conditions), full, atol=1e-5, rtol=1e-5)
    cache = chunked.new_cache()  # a prompt, then a 12-token continuation with past > 0, both chunked
    parts = [chunked(tokens[:, :6], conditions, cache), chunked(tokens[:, 6:18], conditions, cache)]
    parts += [chunked(tokens[:, t : t + 1], conditions, cache) for t in range(18, 23)]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_grows_past_its_first_buffer_without_changing_the_logits():
    torch.manual_seed(5)
    model = MusicTransformer(tiny(max_relative_position=100)).eval()
    tokens = torch.randint(0, 24, (1, 150))  # the first buffer holds 64 positions, then 2 × 66, ...
    full = model(tokens)
    cache = model.new_cache()
    steps = [model(tokens[:, :2], None, cache)] + [
        model(tokens[:, t : t + 1], None, cache) for t in range(2, 150)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 152 and cache.keys[0].size(-2) >= 152  # 2 control positions + 150 tokens


def test_training_dropout_in_attention_keeps_the_expected_value():
    """Attention dropout rescales the output, not the weights: averaged over many masks the
    training output approaches the dropout-free one."""
    torch.manual_seed(4)
    attn = RelativeMultiheadAttention(tiny(dropout=0.5, query_chunk=0)).train()
    q, k, v = (z.detach() for z in _qkv(b=1, h=2, lq=6, lk=6))
    mask = causal_mask(6, 0)
    expected = attn.eval().attend(q, k, v, mask)
    attn.train()
    draws = torch.stack([attn.attend(q, k, v, mask) for _ in range(4000)])
    assert not torch.allclose(draws[0], expected, atol=1e-3)  # dropout is active
    torch.testing.assert_close(draws.mean(0), expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("query_chunk", [0, 5])
def test_attention_dropout_gradients_match_autograd_through_the_same_masks(query_chunk, monkeypatch):
    """The hand-written backward with dropout against autograd on the explicit reference, the
    recorded keep-masks of each chunk placed into one (Lq, Lk) mask. The Function saves one (Lq, Lk)
    tensor per chunk, not W and W̃."""
    import cinematic.models.music_transformer as mt

    masks, draw = [], mt.keep_mask

    def recording_keep_mask(weights, p, out=None):
        mask = draw(weights, p, out)
        masks.append(mask.clone())  # the chunks' masks share one buffer
        return mask

    monkeypatch.setattr(mt, "keep_mask", recording_keep_mask)
    attn = RelativeMultiheadAttention(tiny(dropout=0.3, query_chunk=query_chunk, max_relative_position=4))
    attn.train()
    q, k, v = _qkv(lq=12, lk=12)
    mask = causal_mask(12, 0)
    fast = attn.attend(q, k, v, mask)
    forward_masks = list(masks)
    num_chunks = -(-12 // (query_chunk or 12))
    assert len(fast.grad_fn.saved_tensors) == 5 + num_chunks  # q, k, v, table, output, one per chunk

    keep = torch.zeros(2, 2, 12, 12)
    chunk = query_chunk or 12
    for i, recorded in enumerate(forward_masks):
        start, stop = i * chunk, min(12, (i + 1) * chunk)
        keep[:, :, start:stop, :stop] = recorded  # chunk i sees keys 0 … stop − 1
    assert len(forward_masks) == -(-12 // chunk) and 0 < keep[..., mask.logical_not()].mean() < 1
    identity = torch.eye(12).expand(2, 2, 12, 12)  # as "values", the reference returns its weights
    weights = reference_attention(q, k, identity, attn.relative_embeddings, 4, mask)
    slow = (weights * keep) @ v / 0.7
    assert_close_with_grads(fast, slow, [q, k, v, attn.relative_embeddings])
    assert len(masks) == len(forward_masks)  # the backward draws nothing


@pytest.mark.parametrize("attention", ["global", "local"])
@pytest.mark.parametrize("conditioning", ["tokens", "embedding", "both"])
def test_cached_decoding_gives_the_full_forward_logits_at_every_step(attention, conditioning):
    torch.manual_seed(1)
    model = MusicTransformer(tiny(attention=attention, conditioning=conditioning, num_streams=2)).eval()
    tokens = torch.randint(0, 24, (2, 2, 26))
    conditions = torch.tensor([[1, 3], [0, 2]])
    full = model(tokens, conditions)
    cache = model.new_cache()
    steps = [model(tokens[:, :, :5], conditions, cache)]
    steps += [model(tokens[:, :, t : t + 1], conditions, cache) for t in range(5, 26)]
    torch.testing.assert_close(torch.cat(steps, dim=2), full, atol=1e-5, rtol=1e-5)


def test_two_dimensional_tokens_are_one_stream():
    model = MusicTransformer(tiny()).eval()
    tokens = torch.randint(0, 24, (2, 9))
    assert torch.equal(model(tokens), model(tokens.unsqueeze(1)))


def test_conditions_change_the_output_and_null_labels_are_the_default():
    torch.manual_seed(2)
    model = MusicTransformer(tiny()).eval()
    tokens = torch.randint(0, 24, (1, 10))
    with_null = model(tokens, torch.zeros(1, 2, dtype=torch.long))
    assert torch.equal(model(tokens), with_null)
    assert not torch.allclose(model(tokens, torch.tensor([[2, 1]])), with_null)


def test_condition_dropout_replaces_labels_with_null_only_in_training():
    model = MusicTransformer(tiny(condition_dropout=0.5))
    labels = torch.ones(4000, 2, dtype=torch.long)
    dropped = model.drop_conditions(labels)
    assert 0.45 < (dropped == 0).float().mean().item() < 0.55
    assert torch.equal(model.eval().drop_conditions(labels), labels)


def test_tied_embeddings_share_the_token_table():
    model = MusicTransformer(tiny(tie_embeddings=True))
    assert len(model.heads) == 0
    x = torch.randint(0, 24, (1, 6))
    model(x).sum().backward()
    assert model.token_embeddings[0].weight.grad is not None


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    model = MusicTransformer(tiny(embed_dim=32, num_heads=2, max_relative_position=32, condition_dropout=0.0))
    tokens = torch.randint(3, 24, (4, 1, 33))
    conditions = torch.tensor([[1, 1], [2, 3], [0, 2], [1, 0]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        logits = model(tokens[:, :, :-1], conditions)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 2), tokens[:, :, 1:].flatten())
        if loss.item() < 0.1:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_mismatched_streams_or_conditions_are_clear_errors():
    model = MusicTransformer(tiny(num_streams=2))
    with pytest.raises(ValueError, match="2 token streams"):
        model(torch.zeros(1, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="conditions"):
        model(torch.zeros(1, 2, 4, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        tiny(embed_dim=10, num_heads=3)


def test_flops_per_token_counts_weights_and_attention():
    model = MusicTransformer(tiny(condition_sizes=()))
    weights = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    assert model.flops_per_token(100) == 6 * weights + 3 * 2 * 3 * 2 * 100 * 16


def test_bf16_autocast_training_step_matches_fp32_and_keeps_fp32_gradients():
    """Under CPU bf16 autocast the hand-written attention backward gets bf16 q/k/v and an fp32
    distance table; the step must still run, give fp32 gradients for fp32 parameters, and agree
    with the fp32 step to bf16 precision."""
    torch.manual_seed(2)
    model = MusicTransformer(tiny(query_chunk=4, max_relative_position=8)).train()
    tokens = torch.randint(0, 24, (2, 13))

    def loss_and_grads(autocast: bool):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same condition dropout draws in both runs (dropout=0 otherwise)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[:, 0].float().flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        return logits, loss, model.blocks[0].attn.relative_embeddings.grad.clone()

    logits16, loss16, grad16 = loss_and_grads(True)
    _, loss32, grad32 = loss_and_grads(False)
    assert logits16.dtype == torch.bfloat16 and grad16.dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) < 0.02 * loss32.item()
    assert torch.isfinite(grad16).all() and grad32.abs().sum() > 0
    assert torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0) > 0.95


# --------------------------------------------------------------------- attention paths (issue 19)


def _with_impl(model: MusicTransformer, impl: str, **overrides) -> MusicTransformer:
    """A copy of `model` (same weights) whose attention runs through `impl`."""
    from dataclasses import replace

    other = MusicTransformer(replace(model.cfg, attention_impl=impl, **overrides))
    other.load_state_dict(model.state_dict())
    return other.train(model.training)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("impl", ["sdpa", "flex"])
@pytest.mark.parametrize("attention", ["global", "local"])
def test_fused_paths_give_the_chunked_forward_full_and_with_a_kv_cache(impl, attention):
    """Training/prefill forward of the fused paths equals the chunked Function to 1e-5, causal and
    local; a cached prefill with past > 0 runs through them too (single-token decoding keeps the
    cached one-query path on every impl)."""
    torch.manual_seed(7)
    chunked = MusicTransformer(tiny(attention=attention, local_block_length=4, query_chunk=5)).eval()
    fused = _with_impl(chunked, impl)
    tokens = torch.randint(0, 24, (2, 23))
    conditions = torch.tensor([[1, 2], [2, 3]])
    with torch.no_grad():
        full = chunked(tokens, conditions)
        torch.testing.assert_close(fused(tokens, conditions), full, atol=1e-5, rtol=1e-5)
        cache = fused.new_cache()
        parts = [fused(tokens[:, :6], conditions, cache), fused(tokens[:, 6:18], conditions, cache)]
        parts += [fused(tokens[:, t : t + 1], conditions, cache) for t in range(18, 23)]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("max_rel", [3, 40])
@pytest.mark.parametrize("past", [0, 5])
def test_sdpa_path_matches_explicit_reference_forward_and_grads(max_rel, past):
    attn = RelativeMultiheadAttention(tiny(max_relative_position=max_rel, attention_impl="sdpa"))
    q, k, v = _qkv(lq=12, lk=12 + past)
    mask = causal_mask(12, past)
    fast = attn.attend(q, k, v, mask)
    slow = reference_attention(q, k, v, attn.relative_embeddings, max_rel, mask)
    assert_close_with_grads(fast, slow, [q, k, v, attn.relative_embeddings])


def test_sdpa_local_blocks_match_reference_forward_and_grads():
    attn = RelativeMultiheadAttention(
        tiny(attention="local", local_block_length=4, max_relative_position=5, attention_impl="sdpa")
    )
    q, k, v = _qkv(lq=11, lk=11)
    fast = attn._local_blocks(q, k, v)
    slow = reference_attention(q, k, v, attn.relative_embeddings, 5, local_mask(11, 0, 4))
    assert_close_with_grads(fast, slow, [q, k, v, attn.relative_embeddings])


def test_sdpa_training_step_gives_the_chunked_gradients():
    torch.manual_seed(8)
    chunked = MusicTransformer(tiny(query_chunk=4, max_relative_position=8, condition_dropout=0.0)).train()
    fused = _with_impl(chunked, "sdpa")
    tokens = torch.randint(0, 24, (2, 14))
    for model in (chunked, fused):
        logits = model(tokens[:, :-1])
        torch.nn.functional.cross_entropy(logits[:, 0].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    for (name, a), b in zip(chunked.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_sdpa_attention_dropout_keeps_the_expected_value():
    """On the SDPA path the kernel drops attention weights itself (dropout_p) with the same
    expectation as the chunked path's mask."""
    torch.manual_seed(4)
    attn = RelativeMultiheadAttention(tiny(dropout=0.5, attention_impl="sdpa")).train()
    q, k, v = (z.detach() for z in _qkv(b=1, h=2, lq=6, lk=6))
    mask = causal_mask(6, 0)
    expected = attn.eval().attend(q, k, v, mask)
    attn.train()
    draws = torch.stack([attn.attend(q, k, v, mask) for _ in range(3000)])
    assert not torch.allclose(draws[0], expected, atol=1e-3)
    torch.testing.assert_close(draws.mean(0), expected, atol=0.05, rtol=0)


def test_flex_path_refuses_cpu_training_with_a_clear_error():
    model = MusicTransformer(tiny(attention_impl="flex", dropout=0.0)).train()
    with pytest.raises(ValueError, match="no backward on CPU"):
        model(torch.randint(0, 24, (1, 9)))


def test_attention_impl_resolves_per_device_and_old_config_dicts_load():
    from dataclasses import asdict

    attn = RelativeMultiheadAttention(tiny())
    assert attn.impl(torch.device("cpu")) == "chunked" and attn.impl(torch.device("cuda")) == "sdpa"
    assert RelativeMultiheadAttention(tiny(attention_impl="flex")).impl(torch.device("cpu")) == "flex"
    old = asdict(tiny())
    del old["attention_impl"]  # a checkpoint's model_config from before the field existed
    assert MusicTransformerConfig(**old).attention_impl == "auto"
    with pytest.raises(ValueError, match="attention_impl"):
        tiny(attention_impl="fused")


def test_chunked_function_accumulates_key_value_and_table_gradients_in_fp32_under_bf16_autocast():
    """dK, dV and dE sum one term per query chunk (256 chunks here). Against an fp64 reference on the
    same bf16-rounded inputs the fp32 accumulators stay within ~0.6 % (dQ, which has one term per
    chunk, shows the bf16 floor); accumulating in bf16 gives 1.9–2.5 % (measured), over the 1 % bound."""
    from cinematic.models.music_transformer import ChunkedRelativeAttention

    b, h, length, d = 1, 2, 256, 8
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, length, d, generator=gen) for _ in range(3))
    q = q * d**-0.5
    table = torch.randn(h, length, d, generator=gen) * 0.3  # distance rows L − 1 … 0
    mask = causal_mask(length, 0)
    upstream = torch.randn(b, h, length, d, generator=gen, dtype=torch.float64)

    exact = [x.to(torch.bfloat16).double().requires_grad_() for x in (q, k, v, table)]
    distance = (torch.arange(length).unsqueeze(1) - torch.arange(length).unsqueeze(0)).clamp(min=0)
    s_rel = torch.einsum("bhid,hijd->bhij", exact[0], exact[3][:, length - 1 - distance])
    scores = (exact[0] @ exact[1].transpose(-1, -2) + s_rel).masked_fill(mask, float("-inf"))
    reference = torch.autograd.grad(((scores.softmax(-1) @ exact[2]) * upstream).sum(), exact)

    inputs = [x.clone().requires_grad_() for x in (q, k, v, table)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ChunkedRelativeAttention.apply(*inputs, mask, 1, 0.0, True)
    grads = torch.autograd.grad((y.double() * upstream).sum(), inputs)
    errors = {
        name: ((grad.double() - ref).norm() / ref.norm()).item()
        for name, grad, ref in zip("qkvE", grads, reference, strict=True)
    }
    assert all(grad.dtype == torch.float32 for grad in grads)  # returned in the inputs' dtype
    assert errors["q"] < 0.01  # the bf16 floor
    assert max(errors["k"], errors["v"], errors["E"]) < 0.01, errors


def test_chunked_function_declares_its_autocast_behaviour(monkeypatch):
    """custom_fwd/custom_bwd: under CPU bf16 autocast fp32 inputs are cast to bf16 (what is saved and
    returned is bf16), the backward runs under the forward's autocast state, and the gradients come
    back in the inputs' dtype. The CUDA class carries the same decorators for CUDA autocast."""
    import cinematic.models.music_transformer as mt

    states, backward = [], mt._chunked_backward

    def spy(ctx, grad_y):
        states.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return backward(ctx, grad_y)

    monkeypatch.setattr(mt, "_chunked_backward", spy)
    q, k, v = _qkv(lq=7, lk=9)
    table = torch.randn(2, 9, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mt.ChunkedRelativeAttention.apply(q, k, v, table, causal_mask(7, 2), 3, 0.0, True)
    assert y.dtype == torch.bfloat16
    assert y.grad_fn._fwd_used_autocast and y.grad_fn._dtype == torch.bfloat16
    assert {t.dtype for t in y.grad_fn.saved_tensors} == {torch.bfloat16}
    grads = torch.autograd.grad(y.float().sum(), [q, k, v, table])
    assert states == [(True, torch.bfloat16)]
    assert [g.dtype for g in grads] == [torch.float32] * 4
    with torch.no_grad():  # outside autocast nothing is cast
        plain = mt.ChunkedRelativeAttention.apply(q, k, v, table, causal_mask(7, 2), 3, 0.0, True)
    assert plain.dtype == torch.float32
    assert mt.chunked_attention_function(torch.device("cuda")) is mt.CudaChunkedRelativeAttention
    assert mt.chunked_attention_function(torch.device("cpu")) is mt.ChunkedRelativeAttention
    for function, device_type in (
        (mt.ChunkedRelativeAttention, "cpu"),
        (mt.CudaChunkedRelativeAttention, "cuda"),
    ):
        for method in (function.forward, function.backward):  # the decorators' closures hold the device
            assert inspect.getclosurevars(method).nonlocals["device_type"] == device_type


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_without_cuda_prints_json_and_exits_0():
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cuda"] is False and "no CUDA device" in report["message"]


def test_joint_dropout_nulls_every_condition_of_an_item_together_and_per_condition_rates_apply():
    torch.manual_seed(0)
    conditions = torch.tensor([[1, 2, 3]]).repeat(4000, 1)
    joint = MusicTransformer(tiny(condition_sizes=(4, 4, 4), condition_dropout=0.0, unconditional_prob=0.3))
    dropped = joint.train().drop_conditions(conditions)
    all_null = (dropped == 0).all(dim=1)
    assert 0.25 < all_null.float().mean() < 0.35 and ((dropped == 0).any(dim=1) == all_null).all()
    assert torch.equal(joint.eval().drop_conditions(conditions), conditions)  # never at inference
    per = MusicTransformer(tiny(condition_sizes=(4, 4, 4), condition_dropouts=(0.0, 1.0, 0.5)))
    dropped = per.train().drop_conditions(conditions)
    assert (dropped[:, 0] == 1).all() and (dropped[:, 1] == 0).all()
    assert 0.45 < (dropped[:, 2] == 0).float().mean() < 0.55
    with pytest.raises(ValueError, match="condition_dropouts has 2 entries for 3 conditions"):
        tiny(condition_sizes=(4, 4, 4), condition_dropouts=(0.1, 0.1))


def test_labels_alone_dropout_nulls_every_attribute_of_an_item_together_and_keeps_its_labels():
    torch.manual_seed(0)
    conditions = torch.tensor([[1, 2, 3]]).repeat(4000, 1)  # (emotion label, key, tempo attributes)
    cfg = tiny(condition_sizes=(4, 4, 4), condition_dropout=0.0, attribute_conditions=(False, True, True))
    model = MusicTransformer(dataclasses.replace(cfg, labels_alone_prob=0.3)).train()
    dropped = model.drop_conditions(conditions)
    assert (dropped[:, 0] == 1).all()  # the label is kept
    alone = (dropped[:, 1:] == 0).all(dim=1)
    assert 0.25 < alone.float().mean() < 0.35 and ((dropped[:, 1:] == 0).any(dim=1) == alone).all()
    assert torch.equal(model.eval().drop_conditions(conditions), conditions)
    with pytest.raises(ValueError, match="attribute_conditions has 1 entries for 3 conditions"):
        tiny(condition_sizes=(4, 4, 4), attribute_conditions=(True,))


def _null_branch_loss_after_training(unconditional_prob: float, steps: int = 40) -> tuple[float, float]:
    """A tiny model learns sequences whose tokens are drawn from a set fixed by three labels; the NLL of
    a fixed batch under the all-null conditions (guidance's unconditional branch), before and after."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = tiny(
        condition_sizes=(3, 3, 3),
        condition_dropout=0.1,
        unconditional_prob=unconditional_prob,
        embed_dim=32,
        max_relative_position=16,
    )
    model = MusicTransformer(cfg)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(1, 3, (n, 3), generator=gen)
        offset = (labels[:, :1] - 1) * 8 + (labels[:, 1:2] - 1) * 4  # the labels pick a 4-token set
        tokens = offset + torch.randint(0, 4, (n, 17), generator=gen)
        return tokens, labels

    fixed, _ = batch(32)

    def null_loss() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(fixed[:, :-1])[:, 0]  # conditions None: all null
        model.train()
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), fixed[:, 1:].flatten()).item()

    before = null_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        tokens, labels = batch(16)
        logits = model(tokens[:, :-1], labels)[:, 0]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, null_loss()


@pytest.mark.usefixtures("one_thread")
def test_joint_condition_dropout_trains_the_unconditional_branch():
    before, after = _null_branch_loss_after_training(unconditional_prob=0.2)
    assert after < before - 0.5  # the all-null branch learned the data's marginal (ln 24 → ≈ ln 16)
