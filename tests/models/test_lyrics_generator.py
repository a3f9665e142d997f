"""Lyrics GPT: the KV cache and document packing against the plain forward, learning, tying."""

from __future__ import annotations

import pytest
import torch

from cinematic.models.lyrics_generator import IGNORE_INDEX, LyricsGPT, LyricsGPTConfig, padded_vocab_size


def tiny(**overrides) -> LyricsGPT:
    torch.manual_seed(0)
    args = {"vocab_size": 96, "block_size": 48, "n_layer": 2, "n_head": 4, "n_embd": 32, "dropout": 0.0}
    return LyricsGPT(LyricsGPTConfig(**{**args, **overrides}))


def test_cached_generation_equals_uncached_logits_at_every_step():
    model = tiny().eval()
    tokens = torch.randint(0, 96, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(tokens)
        cache = model.new_cache()
        pieces = [model(tokens[:, :7], cache=cache)[0]]  # prefill
        pieces.append(model(tokens[:, 7:12], cache=cache)[0])  # several tokens after a cached prefix
        for t in range(12, 40):  # then one token at a time
            step, _ = model(tokens[:, t : t + 1], cache=cache, last_only=True)
            pieces.append(step)
            torch.testing.assert_close(step[:, -1], full[:, t], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == 40


def test_packed_documents_match_separate_sequences():
    model = tiny().eval()
    a, b = torch.randint(0, 96, (1, 11)), torch.randint(0, 96, (1, 20))
    packed = torch.cat([a, b], dim=1)
    doc_ids = torch.tensor([[0] * 11 + [1] * 20])
    with torch.no_grad():
        logits, _ = model(packed, doc_ids=doc_ids)
        alone_a, _ = model(a)
        alone_b, _ = model(b)
    torch.testing.assert_close(logits[:, :11], alone_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 11:], alone_b, atol=1e-5, rtol=0)


def test_tiny_model_overfits_one_batch():
    model = tiny(dropout=0.1)
    tokens = torch.randint(0, 96, (4, 33), generator=torch.Generator().manual_seed(2))
    x, y = tokens[:, :-1], tokens[:, 1:].clone()
    y[:, :3] = IGNORE_INDEX  # ignored positions must not count
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    _, loss = model(x, y)
    assert first > 4.0 and loss.item() < 0.1


def test_output_embedding_is_tied_and_vocab_is_padded():
    model = tiny()
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert padded_vocab_size(50257) == 50304 and padded_vocab_size(64) == 64


def test_flops_per_token_is_6n_plus_attention():
    model = tiny()
    n = model.num_params()
    assert n == sum(p.numel() for p in model.parameters()) - 48 * 32
    assert model.flops_per_token(seq_len=48) == 6 * n + 12 * 2 * 4 * 8 * 48


def test_longer_than_block_size_is_refused():
    model = tiny()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 49, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 48, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
