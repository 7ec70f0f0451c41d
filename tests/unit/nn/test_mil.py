"""Gated attention MIL: masking, invariances and the empty-bag error."""

from __future__ import annotations

import pytest
import torch

from fusion.nn.mil import GatedAttentionMIL


@pytest.fixture
def mil() -> GatedAttentionMIL:
    torch.manual_seed(0)
    return GatedAttentionMIL(in_dim=8, attention_dim=6, dropout=0.0).eval()


def test_attention_sums_to_one_over_real_instances_and_is_zero_on_padding(mil: GatedAttentionMIL) -> None:
    h = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    pooled, attention = mil(h, mask)
    assert pooled.shape == (3, 8) and attention.shape == (3, 5)
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(3))
    assert torch.all(attention[~mask] == 0)
    assert torch.all(attention[mask] > 0)
    torch.testing.assert_close(pooled[2], h[2, 0])  # a single-instance bag pools to that instance


def test_padding_content_does_not_change_the_pooled_embedding(mil: GatedAttentionMIL) -> None:
    bag = torch.randn(1, 3, 8)
    alone, attention_alone = mil(bag, torch.ones(1, 3, dtype=torch.bool))
    padded = torch.cat([bag, torch.full((1, 4, 8), 1e6)], dim=1)
    padded[0, -1, 0] = float("nan")  # even garbage padding must not leak in
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    pooled, attention = mil(padded, mask)
    torch.testing.assert_close(pooled, alone)
    torch.testing.assert_close(attention[:, :3], attention_alone)


def test_pooled_embedding_is_permutation_invariant(mil: GatedAttentionMIL) -> None:
    h = torch.randn(2, 6, 8)
    perm = torch.randperm(6)
    pooled, attention = mil(h)
    pooled_perm, attention_perm = mil(h[:, perm])
    torch.testing.assert_close(pooled_perm, pooled)
    torch.testing.assert_close(attention_perm, attention[:, perm])


def test_bag_without_real_instances_raises_a_clear_error(mil: GatedAttentionMIL) -> None:
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match=r"bag\(s\) \[1\] with no real instances"):
        mil(torch.randn(2, 3, 8), mask)


@pytest.mark.parametrize(
    ("h", "mask", "message"),
    [
        (torch.randn(2, 3, 5), None, r"expects h of shape \(n, N, 8\)"),
        (torch.randn(2, 3, 8), torch.ones(2, 4, dtype=torch.bool), "does not match"),
    ],
)
def test_shape_errors(
    mil: GatedAttentionMIL, h: torch.Tensor, mask: torch.Tensor | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mil(h, mask)


def test_gradients_reach_instances_and_attention_parameters() -> None:
    torch.manual_seed(1)
    mil = GatedAttentionMIL(in_dim=4, attention_dim=3, dropout=0.5).train()
    h = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    pooled, _ = mil(h, mask)
    pooled.pow(2).sum().backward()
    assert h.grad is not None and torch.all(h.grad[1, 2:] == 0) and h.grad[mask].abs().sum() > 0
    for name, parameter in mil.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert mil.attention_v.weight.grad.abs().sum() > 0
