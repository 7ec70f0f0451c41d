"""SNN (self-normalising MLP) and FeatureTokenizer: shapes, init properties, missing values, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fusion.nn.snn import SNN
from fusion.nn.tokenizer import FeatureTokenizer


# ----------------------------------------------------------------------------- SNN
def test_snn_is_self_normalising_at_init():
    """Standardised input keeps mean ~0 / variance ~1 through three SELU layers (LeCun-normal init)."""
    torch.manual_seed(0)
    snn = SNN(256, hidden=(256, 256), out_dim=128, dropout=0.1).eval()
    x = torch.randn(2000, 256)
    with torch.no_grad():
        y = snn(x)
    assert abs(y.mean().item()) < 0.1
    assert 0.8 < y.var().item() < 1.2
    # The same stack with PyTorch's default init is not self-normalising: the check has teeth.
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Linear(256, 256), nn.SELU(), nn.Linear(256, 256), nn.SELU(), nn.Linear(256, 128), nn.SELU()
    )
    with torch.no_grad():
        assert not 0.8 < plain(x).var().item() < 1.2


def test_snn_layers_init_and_dropout():
    snn = SNN(64, hidden=(32,), out_dim=8, dropout=0.2)
    linears = [m for m in snn.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 8)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    assert abs(linears[0].weight.std().item() - 64**-0.5) < 0.02
    assert sum(isinstance(m, nn.SELU) for m in snn.modules()) == 2
    assert sum(isinstance(m, nn.AlphaDropout) for m in snn.modules()) == 2


def test_snn_shape_backward_and_eval_determinism():
    torch.manual_seed(1)
    snn = SNN(10, hidden=(16, 16), out_dim=4, dropout=0.5)
    x = torch.randn(6, 10)
    out = snn(x)
    assert out.shape == (6, 4)
    out.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in snn.parameters())
    assert not torch.equal(snn(x), snn(x))  # AlphaDropout is active in training
    snn.eval()
    assert torch.equal(snn(x), snn(x))


def test_snn_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\(n, 10\)"):
        SNN(10, out_dim=4)(torch.randn(3, 9))


# ----------------------------------------------------------------------------- FeatureTokenizer
def test_tokenizer_shapes_and_numeric_tokens():
    tok = FeatureTokenizer(n_num=3, cat_cardinalities=[4, 2], d_token=8)
    num = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    missing = torch.zeros(2, 3, dtype=torch.bool)
    cat = torch.tensor([[1, 0], [3, 1]])
    out = tok(num, missing, cat)
    assert out.shape == (2, 5, 8) and tok.n_tokens == 5
    expected = num.unsqueeze(-1) * tok.num_weight + tok.num_bias
    torch.testing.assert_close(out[:, :3], expected)


def test_tokenizer_missing_numeric_uses_learned_token_and_keeps_gradients_finite():
    tok = FeatureTokenizer(n_num=2, cat_cardinalities=[], d_token=4)
    num = torch.tensor([[float("nan"), 1.0], [5.0, 2.0]])  # NaN counts as missing too
    missing = torch.tensor([[True, False], [False, True]])
    out = tok(num, missing)
    torch.testing.assert_close(out[0, 0], tok.num_missing[0])
    torch.testing.assert_close(out[1, 1], tok.num_missing[1])
    torch.testing.assert_close(out[1, 0], 5.0 * tok.num_weight[0] + tok.num_bias[0])
    out.sum().backward()
    for p in (tok.num_weight, tok.num_bias, tok.num_missing):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert tok.num_missing.grad.abs().sum() > 0


def test_tokenizer_categorical_tables_are_per_column():
    tok = FeatureTokenizer(n_num=0, cat_cardinalities=[3, 3], d_token=6)
    out = tok(cat=torch.tensor([[2, 2]]))
    assert out.shape == (1, 2, 6)
    assert not torch.allclose(out[0, 0], out[0, 1])  # same index, different columns
    torch.testing.assert_close(out[0, 1], tok.cat_embedding.weight[3 + 2] + tok.cat_bias[1])
    out.sum().backward()
    assert tok.cat_embedding.weight.grad[[2, 5]].abs().sum() > 0
    assert tok.cat_embedding.weight.grad[[0, 1, 3, 4]].abs().sum() == 0


def test_tokenizer_errors():
    tok = FeatureTokenizer(n_num=1, cat_cardinalities=[2], d_token=4)
    with pytest.raises(ValueError, match="out of range"):
        tok(torch.zeros(1, 1), None, torch.tensor([[2]]))
    with pytest.raises(ValueError, match=r"num of shape \(n, 1\)"):
        tok(torch.zeros(1, 3), None, torch.tensor([[1]]))
    with pytest.raises(ValueError, match="at least one"):
        FeatureTokenizer(n_num=0, cat_cardinalities=[], d_token=4)
