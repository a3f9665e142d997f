"""Shared building blocks: the fast CPU dropout keeps nn.Dropout's semantics."""

from __future__ import annotations

import pytest
import torch

from cinematic.models.layers import Dropout, dropout, dropout_mask, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask_keeps_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = dropout_mask((1000, 1001), p)  # an odd count: the last 64-bit draw is only partly used
    assert keep.dtype == torch.float32 and keep.shape == (1000, 1001)
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    keep = keep.bool()
    # binomial standard error at 1e6 draws is < 5e-4; 3e-3 is a > 6-sigma bound
    assert abs(keep.float().mean().item() - (1 - p)) < 3e-3
    # neighbours come from the same 64-bit draw: they must still be independent
    pairs = keep.flatten()[:-1:2] & keep.flatten()[1::2]
    assert abs(pairs.float().mean().item() - (1 - p) ** 2) < 3e-3


@pytest.mark.parametrize("shape", [(64, 33), (256, 129)])  # the stock kernel's size, then our mask's
def test_dropout_zeroes_or_rescales_every_element_and_gradients_follow_the_mask(shape):
    torch.manual_seed(1)
    x = torch.randn(*shape, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.float() / 0.75)
    unscaled = x.detach() * keep_mask(x.detach(), 0.25)  # the unscaled mask, for a rescale downstream
    assert set(
        torch.unique(unscaled[unscaled != 0] / x.detach()[unscaled != 0]).round(decimals=5).tolist()
    ) == {1.0}


def test_dropout_is_reproducible_from_the_seed_and_identity_in_eval():
    x = torch.randn(200, 200)
    torch.manual_seed(7)
    a = dropout(x, 0.3, training=True)
    torch.manual_seed(7)
    b = dropout(x, 0.3, training=True)
    assert torch.equal(a, b)
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert dropout(x, 0.0, training=True) is x
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
