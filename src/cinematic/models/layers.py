"""Building blocks shared by the models: dropout, and the KV cache of the autoregressive decoders.

Dropout (Srivastava et al. 2014): y = x ⊙ m / (1 − p), m ~ Bernoulli(1 − p).

On CPU, `torch.nn.functional.dropout` draws one Mersenne-Twister number per element, which costs
~10× a multiply: in a Music Transformer training step at 2 × 512 tokens it took 16 % of the time
(most of it the attention weights). `dropout_mask` draws 64-bit words from numpy's SFC64 generator
(seeded from torch's) and cuts each into four 16-bit uniforms, so each element costs a quarter of a
draw and one comparison. The keep probability is quantized to 1/65536 (p = 0.1 keeps
58982/65536 = 0.899994). Each mask's seed comes from torch's default generator, so
`torch.manual_seed` and the trainer's saved RNG state make the masks reproducible exactly as with
`F.dropout`. On other devices, and for tensors under 32 768 elements (where launching four small
ops costs more than the draws saved), the stock kernel is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_INT16_VALUES = 1 << 16
_SMALL = 1 << 15
"""Below this many elements the stock kernel wins: our mask takes four small ops, F.dropout one."""


def dropout_mask(
    shape: torch.Size | tuple[int, ...],
    p: float,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """CPU tensor of `shape` and `dtype`: `scale` (keep) with probability 1 − p (to 1/65536), else 0.
    `out`: a contiguous buffer of `dtype` with at least as many elements, whose start receives the mask (a
    loop over masks of different sizes then reuses one buffer instead of a fresh one each time).

    The comparison writes the float mask directly: a bool mask would cost a slow bool → float
    conversion inside every multiply by it (forward and backward), about 4× the multiply itself."""
    numel = 1
    for size in shape:
        numel *= size
    words = -(-numel // 4)  # four 16-bit uniforms per 64-bit draw
    bits = _random_words(words).view(torch.int16)[:numel]
    threshold = round(p * _INT16_VALUES) - _INT16_VALUES // 2  # P(int16 ≥ threshold) = 1 − p
    buffer = torch.empty(numel, dtype=dtype) if out is None else out.view(-1)[:numel]
    mask = torch.ge(bits, threshold, out=buffer).view(shape)
    return mask.mul_(scale) if scale != 1.0 else mask


def _random_words(count: int) -> torch.Tensor:
    """`count` uniformly random 64-bit words (int64). numpy's SFC64 makes them 2.4× faster than
    torch's CPU Mersenne Twister; it is seeded with one draw from torch's default generator, so
    `torch.manual_seed` and the trainer's saved RNG state fix them all the same."""
    seed = int(torch.randint(0, 2**63 - 1, ()))
    return torch.from_numpy(np.random.SFC64(seed).random_raw(count).view(np.int64))


def keep_mask(x: torch.Tensor, p: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """A 0/1 tensor shaped and typed like `x`, each entry 1 (keep) with probability 1 − p: the fast
    draw above on CPU, `bernoulli_` elsewhere. `out`: a contiguous buffer (x's dtype and device, at
    least x.numel() elements) whose start receives the mask."""
    if x.device.type == "cpu":
        return dropout_mask(x.shape, p, dtype=x.dtype, out=out)
    mask = torch.empty_like(x) if out is None else out.view(-1)[: x.numel()].view(x.shape)
    return mask.bernoulli_(1.0 - p)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; the identity when not training or p = 0. (A caller that moves the 1/(1 − p)
    to a smaller tensor downstream multiplies by `keep_mask` instead.)"""
    if not training or p <= 0:
        return x
    if x.device.type != "cpu" or x.numel() < _SMALL:
        return F.dropout(x, p, training=True)
    # the 1/(1 − p) rides in the mask, which the backward multiplies by as well
    return x * dropout_mask(x.shape, p, 1.0 / (1.0 - p), x.dtype)


class Dropout(nn.Module):
    """`nn.Dropout` with the fast CPU mask above (same semantics, same state_dict: none)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class KVCache:
    """Keys and values of every layer of a decoder, for incremental decoding (the Music Transformer,
    the lyrics GPT). `length` counts the positions cached so far; a model's forward appends each
    layer's new keys at `length`, then calls `advance`.

    Each layer's keys and values live in one buffer with spare room, so a step writes its new
    column in place instead of copying the whole cache (`torch.cat` per step made decoding O(L²) in
    memory traffic: half the time of a 6-layer Music Transformer step at 400 frames). With `max_len`
    the buffer holds exactly that many positions and more is an error; without, it doubles when full.
    Buffers take the dtype and device of the first keys stored, so the cache follows autocast."""

    def __init__(self, num_layers: int, max_len: int | None = None) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.max_len = max_len
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H, T, D_h) keys/values after the cached ones; return views of all of them."""
        start, stop = self.length, self.length + k.size(-2)
        if self.max_len is not None and stop > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {stop} requested")
        keys, values = self.keys[layer], self.values[layer]
        if keys is None or values is None or stop > keys.size(-2):
            capacity = self.max_len or max(2 * stop, 64)
            keys, values = _grown(keys, k, capacity, start), _grown(values, v, capacity, start)
            self.keys[layer], self.values[layer] = keys, values
        keys[..., start:stop, :] = k
        values[..., start:stop, :] = v
        return keys[..., :stop, :], values[..., :stop, :]

    def advance(self, steps: int) -> None:
        self.length += steps


def _grown(old: torch.Tensor | None, like: torch.Tensor, capacity: int, used: int) -> torch.Tensor:
    """A (..., capacity, D) buffer shaped and typed like `like`, holding `old`'s first `used` rows."""
    buffer = like.new_empty(*like.shape[:-2], capacity, like.size(-1))
    if old is not None:
        buffer[..., :used, :] = old[..., :used, :]
    return buffer
