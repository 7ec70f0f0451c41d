"""GaussianNoise and the genomic encoders' `input_noise`: on in training only, no parameters, the right sd."""

from __future__ import annotations

import math

import pytest
import torch

from fusion.nn.noise import GaussianNoise
from fusion.nn.pathways import PathwayEncoder
from fusion.nn.snn import SNN


def test_noise_has_the_configured_sd_in_training_and_is_the_identity_in_eval():
    torch.manual_seed(0)
    noise = GaussianNoise(0.7).train()
    x = torch.full((20000, 5), 3.0)
    delta = noise(x) - x
    assert abs(delta.mean().item()) < 0.02
    assert abs(delta.std().item() - 0.7) < 0.02
    assert not torch.equal(noise(x), noise(x))  # fresh noise on every call
    assert torch.equal(noise.eval()(x), x)
    assert torch.equal(GaussianNoise(0.0).train()(x), x)
    assert list(noise.parameters()) == [] and "sd=0.7" in repr(noise)


@pytest.mark.parametrize("sd", [-0.1, math.nan])
def test_noise_rejects_a_negative_or_nan_sd(sd):
    with pytest.raises(ValueError, match="sd must be >= 0"):
        GaussianNoise(sd)


def test_snn_input_noise_changes_training_only_and_keeps_checkpoint_keys():
    torch.manual_seed(0)
    plain = SNN(8, hidden=(6,), out_dim=4, dropout=0.0)
    noisy = SNN(8, hidden=(6,), out_dim=4, dropout=0.0, input_noise=1.0)
    assert noisy.state_dict().keys() == plain.state_dict().keys()  # old checkpoints still load
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(10, 8)
    assert torch.equal(noisy.eval()(x), plain.eval()(x))
    noisy.train(), plain.train()
    assert torch.equal(plain(x), plain(x)) and not torch.allclose(noisy(x), plain(x))


def test_pathway_encoder_input_noise_changes_training_only_and_keeps_checkpoint_keys():
    genes, sets = ["G0", "G1", "G2"], {"A": ["G0", "G1"], "B": ["G2"]}
    torch.manual_seed(0)
    plain = PathwayEncoder(genes, sets, d_token=4, hidden=3, dropout=0.0)
    noisy = PathwayEncoder(genes, sets, d_token=4, hidden=3, dropout=0.0, input_noise=0.5)
    assert noisy.state_dict().keys() == plain.state_dict().keys()
    noisy.load_state_dict(plain.state_dict())
    x = torch.randn(7, 3)
    assert torch.equal(noisy.eval()(x), plain.eval()(x))
    assert not torch.allclose(noisy.train()(x), plain.train()(x))
