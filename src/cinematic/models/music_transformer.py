"""Music Transformer (Huang et al. 2018, "Music Transformer", arXiv:1809.04281).

A decoder-only, pre-norm Transformer over K parallel token streams with *relative* self-attention:

    RelAttn(Q, K, V) = softmax((Q Kᵀ + S_rel) / √D_h) V                              (paper eq. 2)

where S_rel[i, j] = q_i · E_{d(i, j)} and E holds one learned vector per relative distance
d = i − j ∈ {0 … max_relative_position} and head (distances beyond the maximum share the last one).
S_rel is computed with the paper's *skew* trick (§3.4.1): Q·Eᵀ gives every query against every
distance, (L, L) per head, and pad-reshape-slice moves each row into place, so no (L, L, D_h) tensor
is ever built — memory is O(L·D) beyond the attention logits themselves. Relative *local* attention
(§3.5, `attention="local"`) splits the sequence into blocks of `local_block_length`; a block attends
to itself and to the block before it.

Streams and conditioning (DESIGN §4)
------------------------------------
- `num_streams` = K: K embedding tables whose vectors are summed per position, and K output heads.
  K = 1 for MIDI events; the audio route uses K RVQ codebooks with a delay pattern, which the
  caller applies to `tokens` (this module never shifts streams itself).
- Conditions (emotion, genre, scene, and attributes measured from the music: key, mode, tempo, …):
  one table per condition; index 0 of every table is the *null label*. `conditioning="tokens"`
  prepends one control position per condition, `"embedding"` adds the sum of the condition vectors to
  every position, `"both"` does both. During training each condition is replaced by the null label
  with its own probability (`condition_dropouts`, or `condition_dropout` for all), and with
  probability `unconditional_prob` all of them at once, so the same model also gives the trained
  unconditional logits that classifier-free guidance needs (Ho & Salimans 2022).

Interface
---------
    model = MusicTransformer(MusicTransformerConfig(vocab_size=391, condition_sizes=(5, 4, 6)))
    logits = model(tokens, conditions)          # tokens (B, K, T) — or (B, T) when K = 1 —,
                                                # conditions (B, n_conditions) or None (all null)
                                                # → logits (B, K, T, V); logits[:, :, t] predicts t+1
    cache = model.new_cache()                   # incremental decoding: each call appends to the
    logits = model(prompt, conditions, cache)   # key/value cache and returns logits of the new
    logits = model(next_tok, conditions, cache) # positions only; equal to the uncached forward
                                                # (relative positions are absolute-position based)

The same `conditions` must be passed to every call that shares a cache. Control positions are
added on the first call (empty cache) and never produce logits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from cinematic.models.layers import Dropout, KVCache, keep_mask

ATTENTION_IMPLS = ("auto", "chunked", "sdpa", "flex")


@dataclass
class MusicTransformerConfig:
    """Model hyperparameters (the task fills it from `music_model` and the data's vocabularies)."""

    vocab_size: int
    """Token ids per stream (the performance encoding: 388 events + PAD/BOS/EOS = 391)."""
    num_streams: int = 1
    """K parallel token streams (1 for MIDI; the RVQ codebooks of the audio route)."""
    num_layers: int = 6
    num_heads: int = 8
    embed_dim: int = 512
    ff_dim: int | None = None
    """Feed-forward width; None: 4 × embed_dim."""
    dropout: float = 0.1
    max_relative_position: int = 2048
    """Distances beyond this share one learned embedding (clipping, Shaw et al. 2018)."""
    attention: Literal["global", "local"] = "global"
    local_block_length: int = 256
    condition_sizes: tuple[int, ...] = ()
    """Labels per condition *including* the null label at index 0, e.g. (1 + #emotions, ...)."""
    conditioning: Literal["tokens", "embedding", "both"] = "both"
    condition_dropout: float = 0.1
    """Training: each condition → its null label with this probability, independently."""
    condition_dropouts: tuple[float, ...] = ()
    """Per-condition dropout probabilities (one per condition; empty: `condition_dropout` for all)."""
    unconditional_prob: float = 0.0
    """Training: with this probability *all* conditions of an item go to null together (on top of the
    per-condition dropout), so the all-null row that classifier-free guidance subtracts is trained
    (Ho & Salimans 2022). Checkpoints from before this field load with 0 (they trained without it)."""
    attribute_conditions: tuple[bool, ...] = ()
    """Which conditions are measured attributes (one flag per condition; empty: none)."""
    labels_alone_prob: float = 0.0
    """Training: with this probability every attribute of an item goes to null at once, its labels kept,
    so a label alone (a request of emotion only, `--no_fill`) is a trained condition rather than the rare
    case of all attributes dropped independently. Checkpoints from before this field load with 0."""
    tie_embeddings: bool = False
    query_chunk: int = 128
    """Uncached attention runs over blocks of this many queries (0: one block); the output does
    not depend on it, only speed and memory do (see `RelativeMultiheadAttention.attend`)."""
    attention_impl: Literal["auto", "chunked", "sdpa", "flex"] = "auto"
    """The kernel of uncached attention (training, prefill): `chunked` (`ChunkedRelativeAttention`),
    `sdpa` (F.scaled_dot_product_attention with the skewed Q·Eᵀ as an additive float mask), `flex`
    (FlexAttention, Q·Eᵀ gathered by distance in a score_mod; no attention-weight dropout) or `auto`
    (chunked on CPU, sdpa on CUDA). Resolved per call from the tensors' device, so a checkpoint
    trained on a GPU runs on a CPU unchanged; checkpoints from before this field load as `auto`.
    Decoding one token at a time always takes the cached single-query path."""

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        self.condition_sizes = tuple(int(n) for n in self.condition_sizes)
        self.condition_dropouts = tuple(float(p) for p in self.condition_dropouts)
        self.attribute_conditions = tuple(bool(a) for a in self.attribute_conditions)
        for name in ("condition_dropouts", "attribute_conditions"):
            entries = len(getattr(self, name))
            if entries and entries != len(self.condition_sizes):
                raise ValueError(f"{name} has {entries} entries for {len(self.condition_sizes)} conditions")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {self.attention_impl!r}"
            )


# ------------------------------------------------------------------------------ relative attention


def skew(rel_logits: torch.Tensor) -> torch.Tensor:
    """The skew of §3.4.1, for Lq queries that are the *last* Lq of Lk positions.

    In: (..., Lq, Lk) with column c = query · E[distance Lk − 1 − c] (distances in descending order).
    Out: (..., Lq, Lk) with entry [i, j] = query_i · E[d], d = (Lk − Lq + i) − j; entries with j after
    the query (d < 0) hold garbage and must be masked. Pad one zero column on the left, read the
    buffer as (Lk + 1, Lq), drop the first row, read it as (Lq, Lk)."""
    return _shift_padded(F.pad(rel_logits, (1, 0)))


def _shift_padded(padded: torch.Tensor) -> torch.Tensor:
    """The second half of `skew`: (..., Lq, Lk + 1) left-padded logits → (..., Lq, Lk)."""
    *lead, lq, lk1 = padded.shape
    return padded.reshape(*lead, lk1, lq)[..., 1:, :].reshape(*lead, lq, lk1 - 1)


def relative_softmax(
    q: torch.Tensor, k: torch.Tensor, table: torch.Tensor, mask: torch.Tensor, masked_from: int = 0
) -> torch.Tensor:
    """softmax(Q Kᵀ + S_rel) of eq. 2 for q already scaled by 1/√D_h; q (..., Lq, D_h) are the last Lq
    of the Lk positions of k (..., Lk, D_h), table (..., Lk, D_h) the distance rows Lk − 1 … 0
    (broadcast against q's leading dims). mask (..., Lq, Lk) bool, True = blocked; only its columns
    from `masked_from` on are applied (a causal chunk sees every key before its first query)."""
    # the skew pads Q·Eᵀ's logits; padding the (Lk, D_h) table with a zero row instead gives the
    # same padded logits without an extra pass over the (Lq, Lk) buffer
    padded = _by_distance(q, F.pad(table, (0, 0, 1, 0)))
    # mask the sum, not S_rel: S_rel is a view into `padded`, and an in-place fill there makes
    # autograd clone the whole padded gradient
    scores = torch.matmul(q, k.transpose(-1, -2)).add_(_shift_padded(padded))
    blocked, mask = (
        (scores, mask) if masked_from == 0 else (scores[..., masked_from:], mask[..., masked_from:])
    )
    # adding a 0/−inf table, broadcast over batch and heads, is ~3× faster than masked_fill_ on CPU
    # and exact (x + 0 = x)
    blocked.add_(scores.new_zeros(mask.shape).masked_fill_(mask, float("-inf")))
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)  # fp32 softmax under autocast


def _by_distance(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """q (B, ..., Lq, D_h) against the rows of table (..., R, D_h), which the batch shares: the batch
    is folded into the query rows (a copy of the small q) instead of broadcasting the table over it
    (a copy of the table per batch row) → (B, ..., Lq, R)."""
    b, lq = q.size(0), q.size(-2)
    rows = q.movedim(0, -3).flatten(-3, -2)  # (..., B·Lq, D_h)
    return torch.matmul(rows, table.transpose(-1, -2)).unflatten(-2, (b, lq)).movedim(-3, 0)


class ChunkedRelativeAttention(torch.autograd.Function):
    """Causal relative attention (eq. 2) over chunks of queries, with a hand-written backward.

    Causality means a chunk of queries [s, e) needs only the keys up to its last query, so the
    (Lq, Lk) products shrink to a staircase: about half the attention FLOPs, and logits that stay in
    cache (2× faster training at 2 × 1024 tokens on CPU). The result does not depend on the chunk size.

    Forward, per chunk: W = softmax(Q Kᵀ + skew(Q Eᵀ)) masked, W̃ = W ⊙ M (dropout keep-mask M),
    O = W̃ V / (1 − p).
    Backward, per chunk, with dO' = dO / (1 − p) (the attention backward of FlashAttention, Dao et
    al. 2022, appendix B.2):
        dV += W̃ᵀ dO',   dW = (dO' Vᵀ) ⊙ M,   dS = W ⊙ (dW − δ) = (dO' Vᵀ) ⊙ W̃ − δ W,   δ = rowsum(dO ⊙ O)
        dQ = dS K + dP Eₚ,   dK += dSᵀ Q,   dEₚ = Σ_batch dPᵀ Q
    δ equals rowsum(dW ⊙ W) (Σ_j dW_ij W_ij = dO'_i · (W̃ V)_i) but costs a pass over the (Lq, D_h)
    output instead of the (Lq, Lk) weights; blocked entries need no fill, as W is 0 there. The skew
    only moves numbers, so dP, the gradient of its zero-padded input Q Eₚᵀ, is dS laid behind one
    row of zeros in the same buffer, and dS is written straight there; dP's first column (the pad's
    zero row of Eₚ) adds nothing, so dQ and dE read dP without it against the unpadded table. The
    batch rows run as one batched product (B·H matrices), not a loop over them. Autograd's graph of
    the same forward spent ~8 % of a training step on the slice, skew and mask backward copies this
    avoids.

    Saved for backward: Q, K, V, the distance table and O (in the compute dtype) and one (Lq, Lk)
    tensor per chunk: W without dropout; with dropout S = W̃ − W/2, which is +W/2 where the mask kept
    the weight and −W/2 where it dropped it — W and M in one tensor instead of W and W̃ in two. The
    backward reads W/2 = |S| and W̃/2 = max(S, 0) and folds the two factors of 2 into dO' and δ;
    halving and the difference of two numbers within a factor 2 are exact in floating point, so the
    gradients are bitwise those of keeping W and W̃.

    Mixed precision: `torch.amp.custom_fwd` / `custom_bwd` for this class's device type (this class:
    CPU; `CudaChunkedRelativeAttention`: CUDA). Under autocast the forward casts q, k, v and the
    table to the autocast dtype (bf16/fp16) itself — the products run in it, the softmax in fp32 —
    and the backward runs under the forward's autocast state. The gradients of K, V and the table
    sum one term per chunk (and per batch row for the table): they accumulate in fp32 buffers and
    are cast back to the inputs' dtypes at the end (dQ has one term per chunk and stays in the
    compute dtype); every gradient is returned in its input's dtype.

    Inputs: q (B, H, Lq, D_h) scaled by 1/√D_h, the last Lq of the Lk positions of k and v; table
    (H, Lk, D_h) the distance rows Lk − 1 … 0; mask (Lq, Lk) bool, True = blocked, causal;
    `causal_only`: the mask blocks nothing but the future (only the diagonal blocks are filled)."""

    device_type = "cpu"

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx: Any, *args: Any) -> torch.Tensor:
        return _chunked_forward(ctx, "cpu", *args)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _chunked_backward(ctx, grad_y)


class CudaChunkedRelativeAttention(ChunkedRelativeAttention):
    """`ChunkedRelativeAttention` with its autocast decorators for CUDA (`custom_fwd` and
    `custom_bwd` take the device type when the class is defined)."""

    device_type = "cuda"

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx: Any, *args: Any) -> torch.Tensor:
        return _chunked_forward(ctx, "cuda", *args)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _chunked_backward(ctx, grad_y)


def chunked_attention_function(device: torch.device) -> type[ChunkedRelativeAttention]:
    """The `ChunkedRelativeAttention` class whose autocast decorators match `device`."""
    return CudaChunkedRelativeAttention if device.type == "cuda" else ChunkedRelativeAttention


def _compute_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    """The autocast dtype when autocast is on for `device_type` (and `dtype` is floating), else `dtype`."""
    if dtype.is_floating_point and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def _chunked_forward(
    ctx: Any,
    device_type: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    table: torch.Tensor,
    mask: torch.Tensor,
    query_chunk: int,
    p: float,
    causal_only: bool,
) -> torch.Tensor:
    ctx.input_dtypes = (q.dtype, k.dtype, v.dtype, table.dtype)
    dtype = _compute_dtype(device_type, q.dtype)
    # under autocast q/k/v are already bf16/fp16 (they come out of a Linear) and E is fp32
    q, k, v, table = (x.to(dtype) for x in (q, k, v, table))
    b, h, lq, d = q.shape
    lk = k.size(-2)
    past = lk - lq
    chunks = _query_chunks(lq, query_chunk)
    out = q.new_empty(b, lq, h, d)  # time-major: the caller's merge of the heads is a view
    saved = []
    # W̃ lives only until its chunk's W̃·V: one buffer, sized for the largest chunk, serves them all
    largest = max(stop - start for start, stop in chunks) * b * h
    kept_buffer = q.new_empty(largest * lk) if p > 0 else None
    for start, stop in chunks:
        keys = past + stop  # the last query of this chunk sees keys 0 … past + stop − 1
        weights = relative_softmax(
            q[:, :, start:stop],
            k[:, :, :keys],
            table[:, lk - keys :],
            mask[start:stop, :keys],
            masked_from=past + start if causal_only else 0,
        )
        if p > 0:
            kept = keep_mask(weights, p, out=kept_buffer).mul_(weights)  # W̃
            out[:, start:stop] = torch.matmul(kept, v[:, :, :keys]).transpose(1, 2)
            torch.add(kept, weights, alpha=-0.5, out=weights)  # S = W̃ − W/2 = ±W/2, over W
        else:
            out[:, start:stop] = torch.matmul(weights, v[:, :, :keys]).transpose(1, 2)
        saved.append(weights)
    y = out.transpose(1, 2)
    if p > 0:  # the 1/(1 − p) rescale on the (Lq, D_h) output, not the (Lq, Lk) weights
        y.mul_(1.0 / (1.0 - p))
    ctx.save_for_backward(q, k, v, table, y, *saved)
    ctx.chunks, ctx.p = chunks, p
    return y


def _accumulate(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b (batched). An fp32 `acc` takes a bf16/fp16 product rounded once, so the sum over
    chunks never rounds to the low precision (CPU's baddbmm_ needs one dtype for all three)."""
    if acc.dtype == a.dtype:
        acc.baddbmm_(a, b)
    else:
        acc.add_(torch.bmm(a, b))


def _chunked_backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    q, k, v, table, y, *saved = ctx.saved_tensors
    p = ctx.p
    b, h, lq, d = q.shape
    lk = k.size(-2)
    past = lk - lq
    grad_y = grad_y.to(y.dtype)
    delta = (grad_y * y).sum(-1, keepdim=True).flatten(0, 1)  # (B·H, Lq, 1)
    # with dropout the saved S holds W/2 and W̃/2: dO' = dO/(1 − p) is doubled to make up for it
    grad_o = (grad_y * (2.0 / (1.0 - p)) if p > 0 else grad_y).contiguous().flatten(0, 1)
    q3, k3, v3 = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)  # (B·H, L, D_h) views
    # dK, dV and dE sum a term per chunk: fp32 accumulators whatever the compute dtype
    grad_q = torch.empty_like(q3)
    grad_k = torch.zeros_like(k3, dtype=torch.float32)
    grad_v = torch.zeros_like(v3, dtype=torch.float32)
    grad_table = torch.zeros_like(table, dtype=torch.float32)
    # E per (batch, head) for the batched dP·E: a view when B = 1, else one copy of the small table
    table_rows = table if b == 1 else table.repeat(b, 1, 1)  # (B·H, Lk, D_h)
    # one buffer for every chunk's dP (and two for W̃/2 and W/2), sized for the largest chunk: a fresh
    # (Lq, Lk)-sized tensor per chunk costs page faults on CPU
    largest = max(stop - start for start, stop in ctx.chunks) * b * h
    grad_buffer = q3.new_empty(largest * (lk + 1))
    kept_buffer, weights_buffer = (q3.new_empty(largest * lk) for _ in range(2)) if p > 0 else (None, None)
    for i, (start, stop) in enumerate(ctx.chunks):
        n, keys = stop - start, past + stop
        weights = kept = saved[i].flatten(0, 1)  # (B·H, n, keys): W, or S = ±W/2 with dropout
        if p > 0:  # W̃/2 = max(S, 0) and W/2 = |S|, into buffers (S stays as saved)
            size = b * h * n * keys
            kept = torch.clamp(weights, min=0, out=kept_buffer[:size].view_as(weights))
            weights = torch.abs(weights, out=weights_buffer[:size].view_as(weights))
        qc, kc, vc, grad_oc = q3[:, start:stop], k3[:, :keys], v3[:, :keys], grad_o[:, start:stop]
        _accumulate(grad_v[:, :keys], kept.transpose(1, 2), grad_oc)
        # per (batch, head): n zeros, then dS — read as (n, keys + 1) this is dP
        padded_grad = grad_buffer[: b * h * n * (keys + 1)].view(b * h, n * (keys + 1))
        padded_grad[:, :n] = 0
        grad_s = padded_grad[:, n:].view(b * h, n, keys)
        torch.bmm(grad_oc, vc.transpose(1, 2), out=grad_s)  # dW̃
        # dS = W ⊙ (dW̃ ⊙ M − δ) = dW̃ ⊙ W̃ − δ W: two passes, and no need to keep M itself (with
        # dropout grad_s holds 2 dW̃, kept W̃/2 and weights W/2: δ counts twice)
        grad_s.mul_(kept).addcmul_(weights, delta[:, start:stop], value=-2 if p > 0 else -1)
        _accumulate(grad_k[:, :keys], grad_s.transpose(1, 2), qc)
        torch.bmm(grad_s, kc, out=grad_q[:, start:stop])
        # dP without its first column (the pad row of Eₚ is zero, and its gradient is dropped)
        grad_p = padded_grad.view(b * h, n, keys + 1)[:, :, 1:]
        grad_q[:, start:stop].baddbmm_(grad_p, table_rows[:, lk - keys :])
        grad_rows = torch.bmm(grad_p.transpose(1, 2), qc)  # (B·H, keys, D_h): per batch row
        if b > 1:  # E is shared across the batch: sum its rows' terms (in fp32)
            grad_rows = grad_rows.view(b, h, keys, d).sum(0, dtype=torch.float32)
        grad_table[:, lk - keys :] += grad_rows
    q_dtype, k_dtype, v_dtype, table_dtype = ctx.input_dtypes
    grads = (
        grad_q.view_as(q).to(q_dtype),
        grad_k.view_as(k).to(k_dtype),
        grad_v.view_as(v).to(v_dtype),
        grad_table.to(table_dtype),
    )
    return *grads, None, None, None, None


# ------------------------------------------------------------------------------ fused attention


def relative_bias(q: torch.Tensor, table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The additive float mask of the SDPA path: skew(Q Eᵀ) (eq. 2's S_rel) with −inf where `mask` is
    True. q (B, ..., Lq, D_h) scaled, table (..., Lk, D_h) the distance rows Lk − 1 … 0, mask
    broadcastable to (B, ..., Lq, Lk) → (B, ..., Lq, Lk) in q's dtype, laid out with a row stride
    that is a multiple of 16 (the memory-efficient CUDA kernel would copy it into such a layout)."""
    padded = _by_distance(q, F.pad(table.to(q.dtype), (0, 0, 1, 0)))
    s_rel = _shift_padded(padded)
    lk = s_rel.size(-1)
    bias = s_rel.new_empty(*s_rel.shape[:-1], -(-lk // 16) * 16)[..., :lk]
    bias.copy_(s_rel)
    return bias.masked_fill_(mask, float("-inf"))


def sdpa_relative_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    table: torch.Tensor,
    mask: torch.Tensor,
    p: float = 0.0,
    blocks: int = 0,
) -> torch.Tensor:
    """Eq. 2 through F.scaled_dot_product_attention: the relative logits and the causal/local −inf go
    in as one float attention mask (`relative_bias`), so softmax(QKᵀ + mask)·V runs fused (CUDA's
    memory-efficient kernel takes a float mask and returns its gradient, through which Q and E get
    theirs). q (B, H, Lq, D_h) already scaled (so `scale=1`); `dropout_p = p` drops attention weights
    inside the kernel with its own generator. `blocks` > 0: the H axis holds H × blocks local blocks
    (table (H, 1, Lk, D_h), mask (blocks, Lq, Lk))."""
    if blocks:
        b, hn, lq, d = q.shape
        bias = relative_bias(q.unflatten(1, (hn // blocks, blocks)), table, mask).flatten(1, 2)
    else:
        bias = relative_bias(q, table, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=1.0)


_COMPILED_FLEX: Callable[..., torch.Tensor] | None = None


def _flex_kernel(device: torch.device) -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process on an accelerator (eager, it materializes the scores);
    eager on CPU, where it is a forward-only reference. torch.compile's default dynamic mode: the
    first shape compiles a static kernel, a second shape one kernel for any length (a length per
    compile, with `dynamic=False`, would soon hit dynamo's recompile limit and fall back to eager)."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if device.type == "cpu":
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention)
    return _COMPILED_FLEX


def flex_relative_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Eq. 2 through FlexAttention. q (B, H, Lq, D_h) scaled, the last Lq of the Lk positions of k, v;
    table (H, R, D_h) the rows of distances 0 … R − 1 (R − 1 the clipping distance, or Lk − 1 when
    nothing is clipped); mask (Lq, Lk) bool, True = blocked. The score_mod adds
    (q_i · E_R)[d] with d = clip(past + i − j, 0, R − 1) to the score of query i and key j."""
    from torch.nn.attention.flex_attention import create_block_mask

    lq, lk = q.size(-2), k.size(-2)
    past, rows = lk - lq, table.size(-2)
    by_distance = _by_distance(q, table)  # (B, H, Lq, R): every query against every distance
    allowed = ~mask

    def score_mod(score, b, h, q_idx, kv_idx):  # FlexAttention calls it per (batch, head, query, key)
        distance = (q_idx + past - kv_idx).clamp(0, rows - 1)
        return score + by_distance[b, h, q_idx, distance]

    def mask_mod(b, h, q_idx, kv_idx):
        return allowed[q_idx, kv_idx]

    block_mask = create_block_mask(mask_mod, None, None, lq, lk, device=q.device)
    return _flex_kernel(q.device)(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=1.0)


_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, stacklevel=3)


def _query_chunks(num_queries: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive chunks of `chunk` queries (one chunk when chunk ≤ 0)."""
    step = chunk if chunk > 0 else num_queries
    return [(start, min(num_queries, start + step)) for start in range(0, num_queries, step)]


class RelativeMultiheadAttention(nn.Module):
    """Relative global (or local) multi-head self-attention (§3.4, §3.5) with a KV cache."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.max_relative_position = cfg.max_relative_position
        self.local = cfg.attention == "local"
        self.block = cfg.local_block_length
        self.query_chunk = cfg.query_chunk
        self.attention_impl = cfg.attention_impl
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.out = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        # E: one vector per head and distance 0 … max_relative_position (a Parameter: saved, trained)
        self.relative_embeddings = nn.Parameter(
            torch.empty(cfg.num_heads, cfg.max_relative_position + 1, cfg.head_dim)
        )
        nn.init.normal_(self.relative_embeddings, std=0.02)
        self.dropout = cfg.dropout

    def distance_embeddings(self, num_keys: int) -> torch.Tensor:
        """(H, Lk, D_h): rows for distances Lk − 1 … 0, clipped at max_relative_position."""
        if num_keys <= self.max_relative_position + 1:  # nothing clipped: the first rows, reversed
            # (a flip's backward is a flip; a gather's is a slower accumulating index_put)
            return self.relative_embeddings[:, :num_keys].flip(1)
        distances = torch.arange(num_keys - 1, -1, -1, device=self.relative_embeddings.device)
        return self.relative_embeddings[:, distances.clamp(max=self.max_relative_position)]

    def impl(self, device: torch.device) -> str:
        """The attention kernel for tensors on `device`: `attention_impl`, with `auto` resolved."""
        if self.attention_impl == "auto":
            return "sdpa" if device.type == "cuda" else "chunked"
        return self.attention_impl

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """q (B, H, Lq, D_h) are the last Lq of the Lk key positions; mask (Lq, Lk) bool, True = blocked
        (causal, and for local attention also the window). Returns (B, H, Lq, D_h)."""
        if q.size(-2) == 1 and not self.training:
            return self._attend_one_query(q, k, v, mask)
        p = self.dropout if self.training else 0.0
        q = q * self.head_dim**-0.5
        impl = self.impl(q.device)
        if impl == "flex":
            return self._attend_flex(q, k, v, mask)
        table = self.distance_embeddings(k.size(-2))
        if impl == "sdpa":
            return sdpa_relative_attention(q, k, v, table, mask, p)
        function = chunked_attention_function(q.device)
        return function.apply(q, k, v, table, mask, self.query_chunk, p, not self.local)

    def _attend_flex(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """FlexAttention: the score_mod adds q_i · E[clip(i − j)], gathered from the (B, H, Lq, R) products
        of each query with the R distance rows it can use (no skew, no (Lq, Lk) relative logits in
        memory); the mask becomes a block mask, so fully blocked (128 × 128) tiles are skipped. q is
        scaled already. No attention-weight dropout on this path (FlexAttention has none)."""
        if self.training and self.dropout > 0:
            _warn_once(
                "flex-dropout",
                "attention_impl='flex' applies no dropout to the attention weights (FlexAttention has "
                "none); residual, feed-forward and embedding dropout still apply",
            )
        if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
            raise ValueError(
                "attention_impl='flex' has no backward on CPU (torch's FlexAttention runs only its "
                "forward there); train on CPU with 'chunked' (or 'sdpa')"
            )
        lk = k.size(-2)
        rows = min(lk, self.max_relative_position + 1)
        table = self.relative_embeddings[:, :rows].to(q.dtype)  # distances 0 … rows − 1, in order
        return flex_relative_attention(q, k, v, table, mask)

    def _attend_one_query(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Incremental decoding, q (B, H, 1, D_h) at the last key position: no skew is needed.
        The query meets the whole distance table head by head (one bmm, no gathered copy of E),
        then the logits of distances Lk − 1 … 0 are picked — (B·H·Lk) numbers instead of
        (H·Lk·D_h) embedding rows per step."""
        b, h, _, d = q.shape
        lk = k.size(-2)
        q = q * self.head_dim**-0.5
        # (H, R, D_h): only the distances this query can have (the whole table once Lk > R)
        table = self.relative_embeddings[:, : min(lk, self.max_relative_position + 1)]
        by_distance = torch.bmm(q.view(b, h, d).transpose(0, 1), table.transpose(1, 2))  # (H, B, R)
        distances = torch.arange(lk - 1, -1, -1, device=q.device).clamp(max=self.max_relative_position)
        s_rel = by_distance.index_select(-1, distances).transpose(0, 1).unsqueeze(2)  # (B, H, 1, Lk)
        scores = torch.matmul(q, k.transpose(-1, -2)).add_(s_rel)
        if self.local:  # the window may start after key 0; global decoding sees every key
            scores = scores.masked_fill_(mask, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1), v)

    def _attend_local_blocks(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 2 for (B, H, n, Lq, D_h) blocks of queries, each against its own (B, H, n, Lk, D_h) keys,
        through autograd (the blocks are short: no chunking needed), or SDPA with the blocks as heads."""
        q = q * self.head_dim**-0.5
        table = self.distance_embeddings(k.size(-2)).unsqueeze(1)  # broadcast over batch and blocks
        p = self.dropout if self.training else 0.0
        if self.impl(q.device) == "sdpa":
            b, h, n, lq, d = q.shape
            y = sdpa_relative_attention(
                q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), table, mask, p, blocks=n
            )
            return y.view(b, h, n, lq, d)
        weights = relative_softmax(q, k, table, mask)
        if p == 0:
            return torch.matmul(weights, v)
        # attention dropout with the 1/(1 − p) rescale moved from the (Lq, Lk) weights to the
        # (Lq, D_h) output — the same value, one pass fewer over the big tensor
        kept = weights * keep_mask(weights, p)
        return torch.matmul(kept, v) * (1.0 / (1.0 - p))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        b, t, dim = x.shape
        # 3 × (B, H, T, D_h), contiguous: every attention matmul then reads them without a copy
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).contiguous()
        if cache is not None:
            k, v = cache.append(layer, k, v)
            past = k.size(-2) - t
            if self.local:  # keys before the earliest query's previous block can never be seen
                start = max(0, (past // self.block - 1) * self.block)
                k, v = k[..., start:, :], v[..., start:, :]
                mask = local_mask(t, past, self.block, x.device)[:, start:]
            elif mask is None:
                mask = causal_mask(t, past, x.device)
            y = self.attend(q, k, v, mask)
        elif self.local and self.impl(x.device) == "flex":  # the block mask skips the far tiles
            y = self.attend(q, k, v, local_mask(t, 0, self.block, x.device))
        elif self.local:
            y = self._local_blocks(q, k, v)
        else:
            y = self.attend(q, k, v, mask if mask is not None else causal_mask(t, 0, x.device))
        return self.out(y.transpose(1, 2).reshape(b, t, dim))

    def _local_blocks(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """§3.5: blocks of `block` queries attend to their own block and the previous one."""
        b, h, t, d = q.shape
        n = math.ceil(t / self.block)
        pad = n * self.block - t
        q, k, v = (F.pad(z, (0, 0, 0, pad)).view(b, h, n, self.block, d) for z in (q, k, v))
        # keys/values of block i: block i − 1 (zeros before the first) followed by block i
        k = torch.cat([F.pad(k, (0, 0, 0, 0, 1, 0))[:, :, :-1], k], dim=3)
        v = torch.cat([F.pad(v, (0, 0, 0, 0, 1, 0))[:, :, :-1], v], dim=3)
        mask = causal_mask(self.block, self.block, q.device).expand(n, -1, -1).clone()
        mask[0, :, : self.block] = True  # the first block has no previous block
        y = self._attend_local_blocks(q, k, v, mask)
        return y.reshape(b, h, n * self.block, d)[:, :, :t]


def causal_mask(num_queries: int, past: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(Lq, past + Lq) bool, True where the key comes after the query (queries are the last Lq)."""
    q_pos = torch.arange(num_queries, device=device).unsqueeze(1) + past
    k_pos = torch.arange(past + num_queries, device=device).unsqueeze(0)
    return k_pos > q_pos


def local_mask(
    num_queries: int, past: int, block: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Causal, and also blocking keys before the block preceding the query's own block."""
    q_pos = torch.arange(num_queries, device=device).unsqueeze(1) + past
    k_pos = torch.arange(past + num_queries, device=device).unsqueeze(0)
    window_start = (q_pos // block - 1) * block
    return (k_pos > q_pos) | (k_pos < window_start)


# ----------------------------------------------------------------------------------------- blocks


class FeedForward(nn.Module):
    """Position-wise feed-forward network (Vaswani et al. 2017, eq. 2), GELU."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        hidden = cfg.ff_dim or 4 * cfg.embed_dim
        self.fc1 = nn.Linear(cfg.embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, cfg.embed_dim)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class DecoderBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + FF(LN(x)) (pre-norm trains deep stacks without warmup
    tricks; Xiong et al. 2020)."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = RelativeMultiheadAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.embed_dim)
        self.ff = FeedForward(cfg)
        self.dropout = Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), mask, cache, layer))
        return x + self.ff(self.norm2(x))


# ------------------------------------------------------------------------------------------ model


class MusicTransformer(nn.Module):
    """Embeddings (K streams summed, + conditions) → N pre-norm relative blocks → LN → K heads."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embeddings = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, cfg.embed_dim) for _ in range(cfg.num_streams)
        )
        self.condition_embeddings = nn.ModuleList(nn.Embedding(n, cfg.embed_dim) for n in cfg.condition_sizes)
        self.dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.heads = nn.ModuleList(
            nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
            for _ in range(0 if cfg.tie_embeddings else cfg.num_streams)
        )
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2: scale residual projections by 1/√(2N)
            for proj in (block.attn.out, block.ff.fc2):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def num_conditions(self) -> int:
        return len(self.cfg.condition_sizes)

    @property
    def num_prefix(self) -> int:
        """Control positions prepended on an uncached (or first cached) call."""
        return self.num_conditions if self.cfg.conditioning in ("tokens", "both") else 0

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.num_layers)

    def drop_conditions(self, conditions: torch.Tensor) -> torch.Tensor:
        """Training only: each label → the null label (0) with its condition's dropout probability,
        with probability `labels_alone_prob` every attribute of the item at once, and with probability
        `unconditional_prob` every condition of the item at once (the guidance row)."""
        cfg = self.cfg
        if not self.training:
            return conditions
        per_condition = cfg.condition_dropouts or (cfg.condition_dropout,) * conditions.size(1)
        if any(p > 0 for p in per_condition):
            p = torch.tensor(per_condition, device=conditions.device).view(1, -1)
            conditions = conditions * (torch.rand(conditions.shape, device=conditions.device) >= p)
        if cfg.labels_alone_prob > 0 and any(cfg.attribute_conditions):
            attributes = torch.tensor(cfg.attribute_conditions, device=conditions.device).view(1, -1)
            chosen = torch.rand(conditions.size(0), 1, device=conditions.device) < cfg.labels_alone_prob
            conditions = conditions.masked_fill(chosen & attributes, 0)
        if cfg.unconditional_prob > 0:
            joint = torch.rand(conditions.size(0), 1, device=conditions.device) < cfg.unconditional_prob
            conditions = conditions.masked_fill(joint, 0)
        return conditions

    def _condition_vectors(
        self, conditions: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor | None:
        """(B, C, D) condition embeddings, or None when the model has no conditions."""
        if not self.num_conditions:
            return None
        if conditions is None:
            conditions = torch.zeros(batch, self.num_conditions, dtype=torch.long, device=device)
        if conditions.shape != (batch, self.num_conditions):
            raise ValueError(
                f"conditions must be (B={batch}, {self.num_conditions}), got {tuple(conditions.shape)}"
            )
        conditions = self.drop_conditions(conditions)
        return torch.stack(
            [table(conditions[:, c]) for c, table in enumerate(self.condition_embeddings)], dim=1
        )

    def forward(
        self, tokens: torch.Tensor, conditions: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """tokens (B, K, T) or (B, T) for K = 1; conditions (B, C) label ids (0 = null) → logits (B, K, T, V)."""
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1)
        b, k, t = tokens.shape
        if k != self.cfg.num_streams:
            raise ValueError(f"expected {self.cfg.num_streams} token streams, got {k}")
        x = sum(table(tokens[:, s]) for s, table in enumerate(self.token_embeddings))  # (B, T, D)
        cond = self._condition_vectors(conditions, b, tokens.device)
        n_prefix = 0
        if cond is not None:
            if self.cfg.conditioning in ("embedding", "both"):
                x = x + cond.sum(dim=1, keepdim=True)
            if self.num_prefix and (cache is None or cache.length == 0):
                x = torch.cat([cond, x], dim=1)
                n_prefix = self.num_prefix
        x = self.dropout(x)

        past = cache.length if cache is not None else 0
        length = x.size(1)
        # one mask for all layers (the local uncached path builds its own block mask)
        mask = None if self.cfg.attention == "local" else causal_mask(length, past, x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i)
        if cache is not None:
            cache.advance(length)
        x = self.norm(x[:, n_prefix:])
        if self.cfg.tie_embeddings:
            logits = [F.linear(x, table.weight) for table in self.token_embeddings]
        else:
            logits = [head(x) for head in self.heads]
        return torch.stack(logits, dim=1)

    # ---------------------------------------------------------------------------- accounting

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward ≈ 3 × forward), counting matmuls only:
        6·N for the weights (PaLM appendix B) plus the attention products Q·Kᵀ, Q·Eᵀ and P·V."""
        cfg = self.cfg
        n = sum(p.numel() for name, p in self.named_parameters() if "embeddings" not in name)
        if cfg.tie_embeddings:  # the heads reuse the token tables, but still multiply
            n += cfg.num_streams * cfg.vocab_size * cfg.embed_dim
        keys = min(seq_len, 2 * cfg.local_block_length) if cfg.attention == "local" else seq_len
        attention = cfg.num_layers * 3 * 2 * keys * cfg.embed_dim  # three (L × L × D) products per layer
        return 6 * n + 3 * attention
