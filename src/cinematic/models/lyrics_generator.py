"""Lyrics GPT: a decoder-only Transformer language model (GPT-2, Radford et al. 2019), after nanoGPT.

Every song is one document: its conditioning prefix (`<bos> <lang=es> <emotion=sad> <genre=ballad>
<scene> ... </scene>`, see `cinematic.tasks.lyrics`) followed by its text and `<eos>`. The model is
the plain autoregressive factorisation p(x) = Π_t p(x_t | x_<t) (GPT-2 eq. 1) of that stream:

    h_0 = E[x] + P[pos]                                   token + learned position embedding
    h   = h + Attn(LN(h));  h = h + MLP(LN(h))            pre-norm block (GPT-2 §2.3), × num_layers
    Attn(Q, K, V) = softmax(Q Kᵀ / √d + causal mask) V    Vaswani et al. 2017, eq. 1
    MLP(h) = GELU(h W₁) W₂, width 4·D                     Hendrycks & Gimpel 2016
    logits = LN(h) Eᵀ                                     output embedding tied to E (Press & Wolf 2017)

Attention goes through `F.scaled_dot_product_attention` with `is_causal=True`, so PyTorch picks its
fused (flash / memory-efficient) kernels. Generation keeps the keys and values of earlier positions in
a preallocated `KVCache`, so each new token costs one position instead of the whole prefix.
Packed training blocks (several short songs in one block) pass `doc_ids`: attention then stays inside
each song and positions restart at every song, exactly as if each song were its own sequence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cinematic.models.layers import Dropout, KVCache  # Dropout: faster CPU masks for large tensors

IGNORE_INDEX = -100
"""Target id that contributes nothing to the loss (padding, the token before a block starts)."""


@dataclass
class LyricsGPTConfig:
    """Hyperparameters of one model; stored in the checkpoint as a plain dict."""

    vocab_size: int
    """Rows of the embedding: the tokenizer's size rounded up to a multiple of 64 (faster matmuls)."""
    block_size: int = 1024
    """Longest sequence (learned positions)."""
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.1
    bias: bool = False
    """Biases in Linear and LayerNorm (GPT-2 has them; without is a little faster and as good)."""
    tie_embeddings: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LyricsGPTConfig:
        return cls(**data)


def padded_vocab_size(size: int, multiple: int = 64) -> int:
    """Round the embedding up (nanoGPT's 50257 -> 50304): the extra rows are never targets or samples."""
    return ((size + multiple - 1) // multiple) * multiple


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention (Vaswani et al. 2017, §3.2.2)."""

    def __init__(self, config: LyricsGPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"embed_dim ({config.n_embd}) must be divisible by num_heads ({config.n_head})")
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # Q, K, V in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
        )  # (B, H, T, hd)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(layer, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if attn_mask is not None:  # packed documents: block-diagonal causal mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        elif past == 0:  # the fused causal kernels
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        elif T == 1:  # one new token sees every cached position
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        else:  # several new tokens after a cached prefix: causal with an offset
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network with GELU (GPT-2 uses 4 × width)."""

    def __init__(self, config: LyricsGPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block (GPT-2 §2.3: layer norm moved to the input of each sub-block)."""

    def __init__(self, config: LyricsGPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, attn_mask)
        return x + self.mlp(self.ln_2(x))


class LyricsGPT(nn.Module):
    """The whole decoder: embeddings, `n_layer` blocks, final norm, (tied) output projection."""

    def __init__(self, config: LyricsGPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2 §2.3: scale the residual projections by 1/√(2·n_layer) so the residual stream's variance
        # does not grow with depth
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position table is left out of the non-embedding count (as in nanoGPT)."""
        total = sum(p.numel() for p in self.parameters())
        return total - self.wpe.weight.numel() if non_embedding else total

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token, 6N + 12·L·H·Q·T (PaLM appendix B; nanoGPT's `estimate_mfu`)."""
        c = self.config
        T = seq_len or c.block_size
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * T

    def new_cache(self, max_len: int | None = None) -> KVCache:
        """A KV cache for up to `max_len` positions (default block_size), any batch size."""
        return KVCache(self.config.n_layer, max_len or self.config.block_size)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        doc_ids: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, V) or (B, 1, V) with `last_only`, mean loss or None).

        cache: continue after the cached positions (generation). doc_ids (B, T): packed documents, each
        attending only to itself with positions restarting at 0; equal ids must be contiguous."""
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}")
        attn_mask = None
        if doc_ids is not None:
            pos, attn_mask = _document_positions_and_mask(doc_ids)
        else:
            pos = torch.arange(past, past + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, attn_mask)
        if cache is not None:
            cache.advance(T)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, -1:] if last_only else x), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss


def _document_positions_and_mask(doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions that restart at each document and a (B, 1, T, T) causal mask within documents."""
    B, T = doc_ids.shape
    index = torch.arange(T, device=doc_ids.device).expand(B, T)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.cummax(
        torch.where(starts, index, torch.zeros_like(index)), dim=1
    ).values  # start of own doc
    same_doc = doc_ids.unsqueeze(2) == doc_ids.unsqueeze(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    return index - first, (same_doc & causal).unsqueeze(1)
