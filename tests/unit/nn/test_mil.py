"""Gated attention MIL: masking, invariances and the empty-bag error."""

from __future__ import annotations

import copy

import pytest
import torch

from fusion.nn.bag_encoder import FeatureBagEncoder, make_aggregator
from fusion.nn.bags import pad_feature_bags
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


# ----------------------------------------------------------------------------- feature bags
def feature_bags(dims: tuple[int, ...] = (3, 7), d: int = 12) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    return [{"features": torch.randn(n, d), "coords": torch.randint(0, 9999, (n, 2))} for n in dims]


def test_pad_feature_bags_pads_features_and_coords_and_masks() -> None:
    bags = feature_bags()
    batch = pad_feature_bags(bags)
    assert batch["features"].shape == (2, 7, 12) and batch["coords"].shape == (2, 7, 2)
    assert batch["coords"].dtype == torch.int64 and batch["mask"].sum(dim=1).tolist() == [3, 7]
    assert torch.equal(batch["features"][0, :3], bags[0]["features"])
    assert torch.equal(batch["coords"][0, :3], bags[0]["coords"])
    assert torch.all(batch["features"][0, 3:] == 0) and torch.all(batch["coords"][0, 3:] == 0)
    half = pad_feature_bags([{**bags[0], "features": bags[0]["features"].half()}])
    assert half["features"].dtype == torch.float16  # kept: halves the memory of big bags
    mixed = pad_feature_bags([{**bags[0], "features": bags[0]["features"].half()}, bags[1]])
    assert mixed["features"].dtype == torch.float32
    with pytest.raises(ValueError, match=r"different dimensions in one batch: \[5, 12\]"):
        pad_feature_bags([bags[0], {"features": torch.zeros(2, 5), "coords": torch.zeros(2, 2)}])


@pytest.mark.parametrize("aggregator", ["abmil", "transmil"])
def test_feature_encoder_shapes_padding_and_chunking(aggregator: str) -> None:
    torch.manual_seed(0)
    encoder = FeatureBagEncoder(12, hidden_dim=8, out_dim=5, aggregator=aggregator, dropout=0.0, chunk=2)
    encoder.eval()
    bags = feature_bags()
    with torch.no_grad():
        batched = encoder(pad_feature_bags(bags))
        attention = encoder.last_attention
        alone = encoder(pad_feature_bags(bags[:1]))
        unchunked = FeatureBagEncoder(12, hidden_dim=8, out_dim=5, aggregator=aggregator, chunk=10_000).eval()
        unchunked.load_state_dict(encoder.state_dict())
        reference = unchunked(pad_feature_bags(bags))
        half = encoder(pad_feature_bags([{**b, "features": b["features"].half()} for b in bags]))
    assert batched.shape == (2, 5) and attention is not None and attention.shape == (2, 7)
    assert torch.all(attention[0, 3:] == 0)
    torch.testing.assert_close(batched[:1], alone, atol=1e-4, rtol=1e-3)
    tolerance = 1e-5 if aggregator == "abmil" else 1e-3  # Nystrom's pinv amplifies float32 rounding
    torch.testing.assert_close(batched, reference, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(half, batched, atol=2e-2, rtol=2e-2)  # float16 storage, float32 compute
    with pytest.raises(ValueError, match=r"expects features \(n, N, 12\)"):
        encoder({"features": torch.zeros(1, 3, 10), "mask": torch.ones(1, 3, dtype=torch.bool)})


def test_feature_encoder_trains_end_to_end() -> None:
    encoder = FeatureBagEncoder(12, hidden_dim=8, out_dim=5, aggregator="transmil", heads=2, landmarks=4)
    encoder(pad_feature_bags(feature_bags())).sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert isinstance(make_aggregator("abmil", 8), GatedAttentionMIL)
    with pytest.raises(ValueError, match="aggregator must be one of"):
        make_aggregator("maxpool", 8)


@pytest.mark.parametrize("aggregator", ["abmil", "transmil"])
def test_feature_encoder_runs_under_bf16_autocast(aggregator: str) -> None:
    """`trainer.precision=bf16-mixed` wraps the forward pass in autocast: the chunked projection's bf16
    output must go into the float32 buffer (it once failed in `masked_scatter` on the first GPU step)."""
    torch.manual_seed(0)
    encoder = FeatureBagEncoder(12, hidden_dim=8, out_dim=5, aggregator=aggregator, dropout=0.0, chunk=2)
    batch = pad_feature_bags([{**b, "features": b["features"].half()} for b in feature_bags()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(batch)
    out.float().sum().backward()
    assert out.shape == (2, 5) and torch.isfinite(out.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in encoder.parameters())
    with torch.no_grad():
        full = encoder.eval()(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = encoder(batch)
    torch.testing.assert_close(mixed.float(), full, atol=0.1, rtol=0.1)  # bf16 keeps ~3 significant digits


@pytest.mark.parametrize(
    "aggregator",
    [
        "abmil",
        pytest.param(
            "transmil",
            marks=pytest.mark.xfail(
                strict=True,
                reason="fusion.nn.transmil: on bags shorter than a few hundred instances the backward pass "
                "through pinv(kernel 2) is ill-conditioned at initialisation (gradients ~1e3-1e6 times those "
                "of the exact attention it equals in the forward pass), so bf16 rounding of qkv flips them",
            ),
        ),
    ],
)
def test_feature_encoder_bf16_gradients_match_float32(aggregator: str) -> None:
    """Under bf16 autocast every parameter gets a finite gradient close to the float32 one: per tensor
    within 8% in norm (bf16 keeps ~3 significant digits; measured <= 3.3% for abmil, on a bias whose
    gradient sums cancelling terms), except the attention logits' bias, whose gradient is zero in exact
    arithmetic (softmax ignores a shift)."""
    torch.manual_seed(0)
    encoder = FeatureBagEncoder(12, hidden_dim=8, out_dim=5, aggregator=aggregator, dropout=0.0, chunk=2)
    batch = pad_feature_bags([{**b, "features": b["features"].half()} for b in feature_bags()])
    weights = torch.randn(2, 5)
    full, mixed = copy.deepcopy(encoder), copy.deepcopy(encoder)
    (full(batch) * weights).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mixed(batch)
    (out.float() * weights).sum().backward()
    total = torch.cat([p.grad.flatten() for p in full.parameters()]).norm()
    for (name, ref), low in zip(full.named_parameters(), mixed.parameters(), strict=True):
        assert low.grad is not None and torch.isfinite(low.grad).all(), name
        if ref.grad.norm() < 1e-5 * total:  # zero up to float32 rounding
            assert low.grad.norm() < 1e-3 * total, name
            continue
        assert low.grad.abs().sum() > 0, name
        assert (low.grad - ref.grad).norm() < 0.08 * ref.grad.norm(), name
