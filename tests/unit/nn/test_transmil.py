"""TransMIL with Nystrom attention: shapes, key-padding masking, exactness on short bags, chunking."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fusion.nn.transmil import NystromAttention, TransMIL


def model(**kwargs) -> TransMIL:
    torch.manual_seed(0)
    args = {"in_dim": 16, "layers": 2, "heads": 2, "landmarks": 8, "dropout": 0.0, "chunk": 5}
    return TransMIL(**(args | kwargs)).eval()


def test_output_shapes_and_attention_is_zero_on_padding() -> None:
    mil = model()
    h = torch.randn(3, 20, 16)
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[0, :20], mask[1, :7], mask[2, :1] = True, True, True
    pooled, attention = mil(h, mask)
    assert pooled.shape == (3, 16) and attention.shape == (3, 20)
    assert torch.isfinite(pooled).all() and torch.all(attention[~mask] == 0)
    assert torch.all(attention.sum(dim=1) > 0.5) and torch.all(attention.sum(dim=1) <= 1.0 + 1e-4)


@pytest.mark.parametrize("n_real", [3, 8, 13, 40])  # below, at and above the landmark count
def test_padding_does_not_change_the_output(n_real: int) -> None:
    mil = model()
    bag = torch.randn(1, n_real, 16)
    with torch.no_grad():
        alone, attention_alone = mil(bag)
        padded = torch.cat([bag, torch.full((1, 9, 16), 1e6)], dim=1)
        padded[0, -1, 0] = float("nan")  # garbage padding must not leak in
        mask = torch.arange(n_real + 9).unsqueeze(0) < n_real
        other = torch.randn(1, n_real + 9, 16)  # and neither must the other bag of the batch
        pooled, attention = mil(torch.cat([padded, other]), torch.cat([mask, torch.ones_like(mask)]))
    torch.testing.assert_close(pooled[:1], alone, atol=1e-4, rtol=1e-3)  # batched pinv: float noise
    torch.testing.assert_close(attention[:1, :n_real], attention_alone, atol=1e-5, rtol=1e-3)
    assert torch.all(attention[0, n_real:] == 0)


def test_masked_out_instances_matter_only_when_real() -> None:
    """The mask really removes instances: changing a masked one is a no-op, a real one is not."""
    mil = model()
    h = torch.randn(1, 12, 16)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 4] = False
    changed = h.clone()
    changed[0, 4] += 5.0
    with torch.no_grad():
        reference, _ = mil(h, mask)
        torch.testing.assert_close(mil(changed, mask)[0], reference)
        assert not torch.allclose(mil(changed, torch.ones_like(mask))[0], reference, atol=1e-4)


def test_nystrom_is_exact_softmax_attention_for_bags_up_to_the_landmark_count() -> None:
    torch.manual_seed(0)
    attention = NystromAttention(16, heads=2, landmarks=8, chunk=3).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        out, _ = attention(x, torch.ones(2, 7, dtype=torch.bool))
        q, k, v = (attention._split(t) for t in attention.qkv(x).chunk(3, dim=-1))
        exact = torch.softmax(q @ k.transpose(-1, -2) * attention.scale, dim=-1) @ v
        exact = attention.out(exact.transpose(1, 2).flatten(2))
    torch.testing.assert_close(out, exact, atol=1e-4, rtol=1e-3)


def test_chunk_size_does_not_change_the_result() -> None:
    h = torch.randn(2, 300, 16)
    mask = torch.ones(2, 300, dtype=torch.bool)
    mask[1, 170:] = False
    with torch.no_grad():
        small, att_small = model(chunk=7)(h, mask)
        big, att_big = model(chunk=10_000)(h, mask)
    torch.testing.assert_close(small, big, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(att_small, att_big, atol=1e-5, rtol=1e-3)


def test_instance_order_matters_for_long_bags() -> None:
    """Not permutation invariant beyond `landmarks` instances (landmarks are segment means in bag
    order), as in TransMIL; documented, and pinned here so a change is noticed."""
    mil = model()
    h = torch.randn(1, 64, 16)
    with torch.no_grad():
        reference, _ = mil(h)
        shuffled, _ = mil(h[:, torch.randperm(64)])
    assert torch.isfinite(shuffled).all() and not torch.allclose(shuffled, reference, atol=1e-6)
    short = h[:, :7]  # CLS + 7 = 8 tokens = landmarks: exact attention, so order does not matter
    with torch.no_grad():
        torch.testing.assert_close(mil(short[:, torch.randperm(7)])[0], mil(short)[0], atol=1e-4, rtol=1e-3)


def test_gradients_reach_every_parameter_and_only_real_instances() -> None:
    mil = model(dropout=0.1).train()
    h = torch.randn(2, 30, 16, requires_grad=True)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 11:] = False
    pooled, _ = mil(h, mask)
    pooled.pow(2).sum().backward()
    assert h.grad is not None and torch.all(h.grad[1, 11:] == 0) and h.grad[mask].abs().sum() > 0
    for name, parameter in mil.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


class _RecordShapes(TorchDispatchMode):
    """The shape of every tensor an ATen operation returns while active, and the softmax outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []
        self.softmax: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.shapes.append((str(func), tuple(t.shape)))
        if func.overloadpacket is torch.ops.aten._softmax:
            self.softmax.append(tuple(out.shape))
        return out


def test_long_bag_never_builds_an_n_by_n_attention_matrix() -> None:
    """Memory, not time: on a 50,000-instance bag (an N^2 attention matrix of one head would hold 2.5e9
    numbers, 10 GB) no intermediate holds more than a few (N, in_dim) tensors, none has two axes longer
    than the key chunk, and every attention matrix is (rows <= chunk) x landmarks."""
    n, dim, heads, landmarks, chunk = 50_000, 32, 4, 32, 4096
    mil = model(in_dim=dim, heads=heads, landmarks=landmarks, chunk=chunk)
    h = torch.randn(1, n, dim)
    with torch.no_grad(), _RecordShapes() as record:
        pooled, attention = mil(h)
    assert pooled.shape == (1, dim) and attention.shape == (1, n) and torch.isfinite(attention).all()
    largest = max(record.shapes, key=lambda s: math.prod(s[1]))
    # the largest is the qkv projection of the N + 1 tokens (3 N dim), smaller than the whole (heads, N,
    # landmarks) kernel the module promises never to hold (and 1/500 of one head's N x N matrix)
    assert math.prod(largest[1]) < heads * n * landmarks, largest
    assert [s for s in record.shapes if sum(axis > chunk for axis in s[1]) > 1] == []
    assert record.softmax, "no softmax recorded"
    assert all(s[-1] == landmarks and s[-2] <= chunk for s in record.softmax), record.softmax


def test_errors_name_the_problem() -> None:
    mil = model()
    with pytest.raises(ValueError, match=r"bag\(s\) \[1\] with no real instances"):
        mil(torch.randn(2, 3, 16), torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expects h of shape \(n, N, 16\)"):
        mil(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match="does not match"):
        mil(torch.randn(2, 3, 16), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="not divisible by heads"):
        TransMIL(10, heads=4)
