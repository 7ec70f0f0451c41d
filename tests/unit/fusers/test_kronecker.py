import itertools

import pytest
import torch

from fusion.fusers import KroneckerFuser
from fusion.fusers.base import MissingAllModalitiesError


def _inputs(batch=4, dims=(("a", 8), ("b", 5), ("c", 3))):
    torch.manual_seed(0)
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)[:batch]
    out = {}
    for i, (name, d) in enumerate(dims):
        x = torch.randn(batch, 2, d) if name == "a" else torch.randn(batch, d)
        mask = present[:, i].view(-1, *[1] * (x.dim() - 1))
        out[name] = (x * mask, present[:, i])
    return out


def _full_kron(vectors):
    """Reference: torch.kron of the [1, v_m] row by row."""
    rows = []
    for b in range(vectors[0].shape[0]):
        row = torch.ones(1)
        for v in vectors:
            row = torch.kron(row, torch.cat([torch.ones(1), v[b]]))
        rows.append(row)
    return torch.stack(rows)


def test_full_order_is_the_kronecker_product_of_the_one_padded_vectors():
    fuser = KroneckerFuser({"a": 8, "b": 5, "c": 3}, d_model=16, rank=3, max_order=None).eval()
    vectors, _ = fuser.vectors(_inputs())
    ours = fuser.products(vectors)
    assert ours.shape == (4, 4**3) and fuser.n_features == 4**3
    # same entries as the full product (our layout groups them by subset, so compare sorted)
    assert torch.allclose(ours.sort(dim=1).values, _full_kron(vectors).sort(dim=1).values, atol=1e-6)


def test_missing_modality_acts_as_the_neutral_one_vector():
    fuser = KroneckerFuser({"a": 8, "b": 5, "c": 3}, d_model=16, rank=3, max_order=None).eval()
    inputs = _inputs()
    vectors, present = fuser.vectors(inputs)
    assert not present[1, 1] and torch.count_nonzero(vectors[1][1]) == 0  # row 1 lacks b: v_b = 0
    # its product equals the product of the other two: every term with a b factor is 0
    without_b = _full_kron([vectors[0][1:2], vectors[2][1:2]])
    ours = fuser.products(vectors)[1]
    nonzero = ours[ours != 0].sort().values
    assert torch.allclose(nonzero, without_b[without_b != 0].sort().values)
    # whatever sits in the absent slot cannot reach the output
    garbage = inputs["b"][0].clone()
    garbage[1] = 1e3
    out = fuser(inputs)
    out2 = fuser({**inputs, "b": (garbage, inputs["b"][1])})
    assert torch.allclose(out[1], out2[1], atol=1e-5)
    assert not torch.allclose(out[0], fuser({**inputs, "b": (inputs["b"][0] + 1, inputs["b"][1])})[0])


def test_size_is_bounded_by_max_order_and_max_features():
    dims = {m: 16 for m in ("ct", "mri", "pet", "histology", "genomics", "ehr")}
    order2 = KroneckerFuser(dims, rank=8, max_order=2)
    assert order2.n_features == 1 + 6 * 8 + 15 * 64 == 1009
    expected = sum(len(list(itertools.combinations(range(6), k))) * 8**k for k in range(4))
    assert KroneckerFuser(dims, rank=8, max_order=3).n_features == expected
    assert KroneckerFuser(dims, rank=2, max_order=None).n_features == 3**6
    with pytest.raises(ValueError, match=r"531441 features \(> max_features=32768\)"):
        KroneckerFuser(dims, rank=8, max_order=None)


def test_no_modality_is_an_error_and_gradients_reach_every_projection():
    fuser = KroneckerFuser({"a": 8, "b": 5, "c": 3}, d_model=16, rank=3)
    # (a plain .sum() of a LayerNorm output has zero gradient, so weight the outputs)
    (fuser(_inputs()) * torch.randn(4, 16)).sum().backward()
    for name in ("a", "b", "c"):
        assert fuser.project[name].weight.grad.abs().sum() > 0
        assert fuser.gate[name].weight.grad.abs().sum() > 0
    inputs = _inputs()
    inputs["b"] = (inputs["b"][0], torch.tensor([True, False, False, True]))
    with pytest.raises(MissingAllModalitiesError, match=r"rows \[2\]"):
        fuser.eval()(inputs)
