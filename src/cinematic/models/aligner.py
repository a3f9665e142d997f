"""Unsupervised text-to-speech alignment (Badlani et al. 2022, "One TTS Alignment To Rule Them All",
arXiv:2108.10447), as used by FastPitch and RAD-TTS. Learned jointly with the acoustic model, so no
external forced aligner is needed.

- `AlignmentEncoder` (§2.1): 1-D conv encoders for text and mel; the soft alignment is a softmax over text
  positions of the negative squared L2 distance between them (Eq. 2–3), times a static prior.
- `beta_binomial_prior` (§2.3): a diagonal prior that makes early training converge. It is added to the
  log-softmaxed attention scores (and renormalised) BEFORE anything else sees them: the soft alignment, the
  forward-sum loss and MAS all use that one prior-shaped distribution, as in RAD-TTS, FastPitch and NeMo.
  The forward-sum loss is what trains the encoders, so that is where the prior has to be for it to pull
  early alignments towards the diagonal; applied after the loss it would only decorate the output.
- `ForwardSumLoss` (§2.2, Eq. 4): the likelihood of all monotonic alignments, computed with PyTorch's CTC
  loss on the prior-shaped log-probabilities (each text token is a "label", a blank column that is never
  a target is prepended).
- `maximum_alignment_path` (§2.2, Eq. 6): monotonic alignment search (Viterbi) for the hard alignment;
  numba-compiled, no Python loop in the hot path. Hard durations are its column sums.
- `binarization_loss` (§2.2, Eq. 5): KL between the hard and soft alignments, switched on after a warm-up.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class AlignmentEncoder(nn.Module):
    """Text and mel encoders and the soft alignment A_soft ∝ softmax_text(−T·‖q_t − k_n‖²) · prior (Eq. 2–3)."""

    def __init__(self, n_mels: int, text_dim: int, att_dim: int = 80, temperature: float = 0.0005):
        super().__init__()
        self.temperature = temperature
        self.key_proj = nn.Sequential(
            nn.Conv1d(text_dim, text_dim * 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(text_dim * 2, att_dim, 1),
        )
        self.query_proj = nn.Sequential(
            nn.Conv1d(n_mels, n_mels * 2, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(n_mels * 2, n_mels, 1),
            nn.ReLU(),
            nn.Conv1d(n_mels, att_dim, 1),
        )

    def forward(
        self, mels: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, log_prior: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mels (B, n_mels, T_mel), text (B, D, T_text), text_mask (B, T_text) True at padding,
        log_prior (B, T_mel, T_text) or None → (soft attention, its log), both (B, T_mel, T_text).

        The prior enters once, in the log domain, right after the log-softmax over text positions:
        log A_soft = log_softmax_text(log_softmax_text(−T·‖q − k‖²) + log_prior), as in RAD-TTS, FastPitch and
        NeMo. Both outputs are that one prior-shaped distribution: the soft attention feeds the binarization
        loss and MAS (`hard_alignment` takes its log), the log feeds the forward-sum loss, so the prior
        steers the encoders' gradients towards the diagonal from the first step (a forward-sum over the
        log-probabilities before the prior would train blind to it). Padding tokens are −inf."""
        keys = self.key_proj(text)  # (B, A, T_text)
        queries = self.query_proj(mels)  # (B, A, T_mel)
        # ‖q − k‖² = ‖q‖² + ‖k‖² − 2 q·k: one batched matmul instead of a (B, A, T_mel, T_text) difference tensor.
        cross = torch.bmm(queries.transpose(1, 2), keys)  # (B, T_mel, T_text)
        distance = queries.pow(2).sum(1).unsqueeze(-1) + keys.pow(2).sum(1).unsqueeze(1) - 2 * cross
        distance = distance.clamp(min=0)
        # The paper's temperature 0.0005 assumes raw log-mel scale distances; it keeps early softmaxes soft.
        logits = -self.temperature * distance
        logits = logits.masked_fill(text_mask.unsqueeze(1), -float("inf"))
        log_probs = F.log_softmax(logits, dim=-1)
        if log_prior is not None:
            # Renormalised over text positions, so the forward-sum's blank keeps the same odds with or without it.
            log_probs = F.log_softmax(
                (log_probs + log_prior).masked_fill(text_mask.unsqueeze(1), -float("inf")), -1
            )
        return log_probs.exp(), log_probs


def beta_binomial_prior(
    text_lengths: torch.Tensor, mel_lengths: torch.Tensor, max_text: int, max_mel: int, scaling: float = 1.0
) -> torch.Tensor:
    """log P(n | t) of the beta-binomial prior (§2.3): for frame t = 1..T of a T-frame mel and N tokens,
    n ~ BetaBinomial(N − 1, α = λt, β = λ(T − t + 1)). (B, max_mel, max_text); −inf at padding tokens."""
    device = text_lengths.device
    n_total = (text_lengths - 1).float().view(-1, 1, 1)  # N − 1
    frames = torch.arange(1, max_mel + 1, device=device).float().view(1, -1, 1)
    t_total = mel_lengths.float().view(-1, 1, 1)
    k = torch.arange(max_text, device=device).float().view(1, 1, -1)
    alpha = scaling * frames
    beta = scaling * (t_total - frames + 1).clamp(min=scaling)
    # log C(n, k) + log B(k + α, n − k + β) − log B(α, β), with log B(x, y) = lgamma x + lgamma y − lgamma(x+y)
    lgamma = torch.lgamma
    log_choose = lgamma(n_total + 1) - lgamma(k + 1) - lgamma((n_total - k).clamp(min=0) + 1)
    log_beta_num = (
        lgamma(k + alpha) + lgamma((n_total - k).clamp(min=0) + beta) - lgamma(n_total + alpha + beta)
    )
    log_beta_den = lgamma(alpha) + lgamma(beta) - lgamma(alpha + beta)
    log_prior = log_choose + log_beta_num - log_beta_den
    invalid = k > n_total
    return log_prior.masked_fill(invalid, -float("inf"))


class ForwardSumLoss(nn.Module):
    """−log Σ over monotonic alignments of Π P(token | frame) (Eq. 4), by the CTC forward algorithm."""

    def __init__(self, blank_logprob: float = -1.0):
        super().__init__()
        self.blank_logprob = blank_logprob

    def forward(
        self, attn_logprob: torch.Tensor, text_lengths: torch.Tensor, mel_lengths: torch.Tensor
    ) -> torch.Tensor:
        """attn_logprob (B, T_mel, T_text) → mean over the batch of the per-item loss / text length."""
        padded = F.pad(attn_logprob, (1, 0), value=self.blank_logprob)  # blank is column 0
        # Padding tokens were −inf; CTC needs finite log-probs there, they are never targeted anyway.
        padded = padded.masked_fill(~torch.isfinite(padded), -1e4)
        log_probs = F.log_softmax(padded, dim=-1).transpose(0, 1)  # (T_mel, B, 1 + T_text)
        targets = torch.arange(1, attn_logprob.shape[-1] + 1, device=attn_logprob.device)
        targets = targets.unsqueeze(0).expand(attn_logprob.shape[0], -1)
        loss = F.ctc_loss(
            log_probs,
            targets,
            input_lengths=mel_lengths,
            target_lengths=text_lengths,
            blank=0,
            reduction="none",
            zero_infinity=True,
        )
        return (loss / text_lengths.float()).mean()


def binarization_loss(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """−Σ log A_soft where A_hard = 1, over the number of aligned frames (Eq. 5)."""
    selected = torch.log(soft.clamp(min=1e-12)) * hard
    return -selected.sum() / hard.sum().clamp(min=1)


@numba.njit(cache=True)
def _mas_single(log_p: np.ndarray, n_mel: int, n_text: int) -> np.ndarray:  # pragma: no cover - compiled
    """Viterbi over a (n_mel, n_text) log-probability matrix: each frame moves to the same token or the next.
    Returns the 0/1 path with path[0, 0] = path[n_mel-1, n_text-1] = 1."""
    neg = -1e30
    value = np.full((n_mel, n_text), neg, dtype=np.float64)
    from_prev = np.zeros((n_mel, n_text), dtype=np.bool_)
    value[0, 0] = log_p[0, 0]
    for t in range(1, n_mel):
        # token n is reachable at frame t only when n <= t and n_text-1-n <= n_mel-1-t
        low = max(0, n_text - (n_mel - t))
        high = min(n_text - 1, t)
        for n in range(low, high + 1):
            stay = value[t - 1, n]
            move = value[t - 1, n - 1] if n > 0 else neg
            if move > stay:
                value[t, n] = move + log_p[t, n]
                from_prev[t, n] = True
            else:
                value[t, n] = stay + log_p[t, n]
    path = np.zeros((n_mel, n_text), dtype=np.int64)
    n = n_text - 1
    for t in range(n_mel - 1, -1, -1):
        path[t, n] = 1
        if t > 0 and from_prev[t, n]:
            n -= 1
    return path


def maximum_alignment_path(
    log_p: np.ndarray, text_lengths: np.ndarray, mel_lengths: np.ndarray
) -> np.ndarray:
    """Monotonic alignment search for a batch: log_p (B, T_mel, T_text) → hard alignment, same shape, 0/1.
    Needs mel_length ≥ text_length for every item (each token gets at least one frame)."""
    out = np.zeros(log_p.shape, dtype=np.int64)
    for b in range(log_p.shape[0]):  # over the batch only; the DP itself is compiled
        n_mel, n_text = int(mel_lengths[b]), int(text_lengths[b])
        if n_mel < n_text:
            raise ValueError(
                f"item {b}: {n_mel} frames cannot align {n_text} symbols (need frames ≥ symbols)"
            )
        out[b, :n_mel, :n_text] = _mas_single(
            np.ascontiguousarray(log_p[b, :n_mel, :n_text], dtype=np.float64), n_mel, n_text
        )
    return out


def hard_alignment(soft: torch.Tensor, text_lengths: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
    """MAS on log(soft attention) → (hard alignment (B, T_mel, T_text) float, durations (B, T_text) long)."""
    log_p = torch.log(soft.detach().float().clamp(min=1e-12)).cpu().numpy()
    path = maximum_alignment_path(log_p, text_lengths.cpu().numpy(), mel_lengths.cpu().numpy())
    hard = torch.from_numpy(path).to(soft.device)
    return hard.float(), hard.sum(1)
