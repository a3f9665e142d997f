"""The built-in aligner: MAS against a plain dynamic programme, the prior, and alignment learned from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cinematic.models.aligner import (
    AlignmentEncoder,
    ForwardSumLoss,
    beta_binomial_prior,
    binarization_loss,
    hard_alignment,
    maximum_alignment_path,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_mas(log_p: np.ndarray) -> np.ndarray:
    """Textbook monotonic alignment search: best path from (0, 0) to (T-1, N-1), each frame stays or moves by one."""
    n_mel, n_text = log_p.shape
    best = np.full((n_mel, n_text), -np.inf)
    best[0, 0] = log_p[0, 0]
    for t in range(1, n_mel):
        for n in range(n_text):
            stay = best[t - 1, n]
            move = best[t - 1, n - 1] if n > 0 else -np.inf
            best[t, n] = max(stay, move) + log_p[t, n]
    path = np.zeros_like(log_p, dtype=np.int64)
    n = n_text - 1
    for t in range(n_mel - 1, -1, -1):
        path[t, n] = 1
        if t > 0 and n > 0 and best[t - 1, n - 1] > best[t - 1, n]:
            n -= 1
    return path


def test_mas_equals_dynamic_programming_reference_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n_text = int(rng.integers(1, 9))
        n_mel = int(rng.integers(n_text, 30))
        log_p = rng.normal(size=(1, n_mel + 3, n_text + 2))  # padding beyond the lengths is ignored
        got = maximum_alignment_path(log_p, np.array([n_text]), np.array([n_mel]))[0]
        want = reference_mas(log_p[0, :n_mel, :n_text])
        np.testing.assert_array_equal(got[:n_mel, :n_text], want)
        assert got.sum() == n_mel and got[n_mel:].sum() == 0 and got[:, n_text:].sum() == 0


def test_mas_refuses_fewer_frames_than_symbols():
    with pytest.raises(ValueError, match="frames"):
        maximum_alignment_path(np.zeros((1, 3, 5)), np.array([5]), np.array([3]))


def test_beta_binomial_prior_is_a_distribution_moving_along_the_diagonal():
    log_prior = beta_binomial_prior(torch.tensor([6]), torch.tensor([30]), max_text=8, max_mel=30)[0]
    probs = log_prior.exp()
    torch.testing.assert_close(probs.sum(-1), torch.ones(30))
    assert probs[:, 6:].sum() == 0  # padding symbols get nothing
    peaks = probs.argmax(-1)
    assert peaks[0] == 0 and peaks[-1] == 5 and bool((peaks[1:] >= peaks[:-1]).all())


def _synthetic_batch(rng: np.random.Generator, patterns: np.ndarray, batch: int, noise: float = 0.3):
    """Random symbol sequences (no symbol twice in a row), each symbol a fixed "vowel" spectrum held for a
    known number of frames, plus noise."""
    tokens, durations, mels = [], [], []
    for _ in range(batch):
        length = int(rng.integers(4, 8))
        seq = [int(rng.integers(1, len(patterns)))]
        while len(seq) < length:
            nxt = int(rng.integers(1, len(patterns)))
            if nxt != seq[-1]:
                seq.append(nxt)
        dur = rng.integers(2, 8, size=length)
        mel = np.repeat(patterns[seq], dur, axis=0) + noise * rng.normal(
            size=(int(dur.sum()), patterns.shape[1])
        )
        tokens.append(seq), durations.append(dur), mels.append(mel)
    n_text, n_mel = max(map(len, tokens)), max(len(m) for m in mels)
    tok = torch.zeros(batch, n_text, dtype=torch.long)
    mel = torch.zeros(batch, n_mel, patterns.shape[1])
    for b in range(batch):
        tok[b, : len(tokens[b])] = torch.tensor(tokens[b])
        mel[b, : len(mels[b])] = torch.from_numpy(mels[b]).float()
    text_lengths = torch.tensor([len(t) for t in tokens])
    mel_lengths = torch.tensor([len(m) for m in mels])
    return tok, mel, text_lengths, mel_lengths, durations


def test_learned_alignment_recovers_true_durations():
    """Forward-sum training from scratch; measured with the prior off: monotonic, sums to the mel length,
    and within ±1 frame of the true duration for ≥ 90 % of the symbols."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_mels, dim = 16, 16
    patterns = rng.normal(size=(9, n_mels)) * 2.0
    embedding = nn.Embedding(9, dim, padding_idx=0)
    aligner = AlignmentEncoder(n_mels, dim, att_dim=16, temperature=0.1)
    loss_fn = ForwardSumLoss()
    optimizer = torch.optim.Adam([*embedding.parameters(), *aligner.parameters()], lr=1e-2)
    for _ in range(40):
        tok, mel, tl, ml, _ = _synthetic_batch(rng, patterns, 8)
        mask = tok == 0
        prior = beta_binomial_prior(tl, ml, tok.shape[1], mel.shape[1])
        _, logprob = aligner(mel.transpose(1, 2), embedding(tok).transpose(1, 2), mask, prior)
        loss = loss_fn(logprob, tl, ml)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    tok, mel, tl, ml, true = _synthetic_batch(rng, patterns, 32)
    with torch.no_grad():
        soft, _ = aligner(mel.transpose(1, 2), embedding(tok).transpose(1, 2), tok == 0, None)
    hard, durations = hard_alignment(soft, tl, ml)
    errors = []
    for b in range(32):
        n, t = int(tl[b]), int(ml[b])
        frames = hard[b, :t, :n].argmax(-1)
        assert bool((frames[1:] >= frames[:-1]).all())  # monotonic
        assert int(durations[b, :n].sum()) == t and bool((durations[b, :n] >= 1).all())
        errors.extend(np.abs(durations[b, :n].numpy() - true[b]))
    assert np.mean(np.array(errors) <= 1) >= 0.9, f"mean abs error {np.mean(errors):.2f} frames"
    assert binarization_loss(hard, soft) < 1.0  # the soft alignment agrees with the hard path


def test_forward_sum_loss_prefers_the_true_alignment():
    loss_fn = ForwardSumLoss()
    good = torch.full((1, 6, 3), -10.0)
    good[0, :2, 0] = good[0, 2:4, 1] = good[0, 4:, 2] = 0.0  # a clean monotonic path exists
    bad = torch.full((1, 6, 3), -10.0)
    bad[0, :, 2] = 0.0  # only the last symbol is ever likely
    lengths = (torch.tensor([3]), torch.tensor([6]))
    assert loss_fn(good, *lengths) < loss_fn(bad, *lengths)
