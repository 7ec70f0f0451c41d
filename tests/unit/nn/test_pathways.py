"""GMT gene-set files and PathwayEncoder: parsing and its errors, token shapes, per-set masking, gradients."""

from __future__ import annotations

import warnings

import pytest
import torch

from fusion.io.gmt import read_gmt, restrict_gene_sets
from fusion.nn.pathways import PathwayEncoder
from tests.op_count import CountOps

GENES = [f"G{i}" for i in range(12)]
SETS = {"A": ["G0", "G1", "G2"], "B": ["G2", "G3", "G4", "G5", "G6"], "C": ["G7"]}  # G8..G11 in no set


def write(tmp_path, text: str):
    path = tmp_path / "sets.gmt"
    path.write_bytes(text.encode())
    return path


def encoder(**kwargs) -> PathwayEncoder:
    torch.manual_seed(0)
    return PathwayEncoder(GENES, SETS, d_token=6, hidden=5, dropout=0.0, **kwargs).eval()


def test_read_gmt_parses_names_descriptions_and_blank_lines(tmp_path):
    text = "HALLMARK_A\thttp://x\tTP53\tEGFR\tTP53\r\n\n   \nHALLMARK_B\t\tMYC\t\n"
    sets = read_gmt(write(tmp_path, text))
    assert sets == {"HALLMARK_A": ["TP53", "EGFR"], "HALLMARK_B": ["MYC"]}  # duplicate gene kept once


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("A\td\tX\n\nB\td\tY\nA\td\tZ\n", r"line 4: duplicate set name 'A' \(first on line 1\)"),
        ("A\td\tX\nB\td\n", r"line 2: set 'B' lists no genes"),
        ("A\td\tX\nB X Y\n", r"line 2: set 'B X Y' has no tab-separated description"),
        ("\td\tX\n", r"line 1: empty set name"),
        ("\n\n", "no gene sets found"),
    ],
)
def test_read_gmt_errors_name_the_file_and_line(tmp_path, text, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        read_gmt(write(tmp_path, text))
    assert "sets.gmt" in str(err.value)


def test_sets_without_table_genes_are_dropped_with_one_warning(tmp_path):
    path = write(tmp_path, "A\td\tG0\tNOPE\nB\td\tX1\tX2\nC\td\tG3\nD\td\tX3\n")
    with pytest.warns(UserWarning, match=r"2 set\(s\).*\['B', 'D'\]") as record:
        sets = read_gmt(path, genes=GENES)
    assert len([w for w in record if "share no gene" in str(w.message)]) == 1
    assert sets == {"A": ["G0"], "C": ["G3"]}  # genes outside the table removed from kept sets
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert restrict_gene_sets(SETS, GENES) == SETS  # nothing dropped, no warning
    with pytest.raises(ValueError, match="none of the 2 sets shares a gene"):
        read_gmt(write(tmp_path, "B\td\tX1\nD\td\tX3\n"), genes=GENES)


def test_token_shapes_and_other_token():
    x = torch.randn(4, len(GENES))
    enc = encoder()
    assert enc(x).shape == (4, 3, 6) and enc.n_tokens == 3 and enc.set_sizes == [3, 5, 1]
    other = encoder(other_token=True)
    assert other(x).shape == (4, 4, 6) and other.set_names[-1] == "other_genes"
    assert other.set_sizes[-1] == 4  # G8..G11
    covered = PathwayEncoder(["G0", "G1"], {"A": ["G0", "G1"]}, d_token=3, other_token=True)
    assert covered.n_tokens == 1  # every gene in a set: no empty "other" token
    with pytest.raises(ValueError, match=r"shape \(n, 12\)"):
        enc(torch.randn(4, 11))
    with pytest.raises(ValueError, match=r"twice: \['G0'\]"):
        PathwayEncoder(["G0", "G0"], SETS, d_token=3)


def test_a_gene_outside_set_k_never_changes_token_k():
    enc, other = encoder(), encoder(other_token=True)
    x = torch.randn(3, len(GENES))
    base, base_other = enc(x), other(x)
    for g, gene in enumerate(GENES):
        y = x.clone()
        y[:, g] += 3.0
        out, out_other = enc(y), other(y)
        for k, members in enumerate(SETS.values()):
            changed = not torch.allclose(out[:, k], base[:, k])
            assert changed == (gene in members), (gene, k)
        in_a_set = any(gene in m for m in SETS.values())
        assert torch.allclose(out_other[:, 3], base_other[:, 3]) == in_a_set  # "other" token: G8..G11 only


def test_matches_a_per_set_reference_loop():
    enc = encoder()
    x = torch.randn(5, len(GENES))
    act = torch.nn.SELU()
    for k, members in enumerate(SETS.values()):
        idx = [GENES.index(g) for g in members]
        h = act(x[:, idx] @ enc.w1[k, : len(idx)] + enc.b1[k])
        expected = act(h @ enc.w2[k] + enc.b2[k])
        torch.testing.assert_close(enc(x)[:, k], expected)


def test_gradients_reach_every_set_and_skip_padding():
    enc = PathwayEncoder(GENES, SETS, d_token=6, hidden=5, dropout=0.1, other_token=True).train()
    x = torch.randn(8, len(GENES), requires_grad=True)
    enc(x).pow(2).mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert (enc.w1.grad[~enc.mask] == 0).all()  # padded weights are never used
    assert (enc.w1.grad[enc.mask].abs().sum(-1) > 0).all()
    assert (x.grad.abs().sum(0) > 0).all()  # every gene reaches a token (other_token=True)


def _ops_for_forward_and_backward(n_sets: int) -> tuple[int, tuple[int, ...]]:
    genes = [f"g{i}" for i in range(4000)]
    gen = torch.Generator().manual_seed(0)
    sets = {
        f"S{k}": [genes[i] for i in torch.randperm(4000, generator=gen)[:100].tolist()] for k in range(n_sets)
    }
    torch.manual_seed(0)
    enc = PathwayEncoder(genes, sets, d_token=16, hidden=8, dropout=0.0)
    x = torch.randn(16, 4000)
    with CountOps() as counter:
        out = enc(x)
        out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    return counter.ops, tuple(out.shape)


def test_many_sets_are_vectorised():
    """No Python loop over sets: the number of tensor operations of a forward and backward pass does not grow
    with the number of sets (a loop would run at least one per set). Counted, not timed."""
    ops, shape = _ops_for_forward_and_backward(1000)
    assert shape == (16, 1000, 16)
    assert ops < 100, ops  # 37 with torch 2.13: gather, mask, two bmm layers and their backward
    assert _ops_for_forward_and_backward(10) == (ops, (16, 10, 16))
