"""fused_embeddings: the fuser's output under the prediction's own presence mask, one modality alone with
`only`, and no embedding for a patient with nothing to embed; the weights digest."""

from __future__ import annotations

import pytest
import torch

from fusion.retrieval.embeddings import fused_embeddings, state_dict_digest
from tests.unit.retrieval.tiny import batch, tiny_model

IDS = ["P1", "P2", "P3", "P4"]
PRESENT = {"a": [True, True, False, False], "b": [True, False, True, False]}


def test_each_patient_gets_the_embedding_its_prediction_reads():
    model = tiny_model()
    one = batch(IDS, PRESENT)
    ids, z, has_any = fused_embeddings(model, [one])
    assert ids == IDS and z.dtype == torch.float32 and z.shape == (4, 16)
    assert has_any.tolist() == [True, True, True, False]
    # patients 1-3 alone, through the model's own embed: the same vectors
    rows = torch.tensor([True, True, True, False])
    inputs = {n: {"present": e["present"][rows], "data": e["data"]} for n, e in one["inputs"].items()}
    with torch.no_grad():
        torch.testing.assert_close(z[:3], model.embed(inputs))
    assert torch.equal(z[3], torch.zeros(16))  # nothing to embed: a zero row, never searched


def test_only_one_modality_marks_every_other_absent():
    model = tiny_model()
    one = batch(IDS, PRESENT)
    _, z_a, has_a = fused_embeddings(model, [one], only="a")
    assert has_a.tolist() == [True, True, False, False]
    # patient 2 has only "a": its fused and its a-only embeddings are the same
    _, z, _ = fused_embeddings(model, [one])
    torch.testing.assert_close(z_a[1], z[1])
    assert not torch.allclose(z_a[0], z[0])  # patient 1 loses "b"
    with pytest.raises(ValueError, match="not one of the model's modalities"):
        fused_embeddings(model, [one], only="c")


def test_the_model_is_left_in_the_mode_it_was_in():
    model = tiny_model().train()
    fused_embeddings(model, [batch(IDS, PRESENT)])
    assert model.training


def test_the_digest_names_the_weights_not_the_dict():
    model = tiny_model()
    state = model.state_dict()
    same = {k: v.clone() for k, v in reversed(list(state.items()))}
    assert state_dict_digest(state) == state_dict_digest(same)
    changed = dict(same)
    name = next(iter(changed))
    changed[name] = changed[name] + 1e-3
    assert state_dict_digest(changed) != state_dict_digest(state)
    assert state_dict_digest({"scalar": torch.tensor(1.0)}) != state_dict_digest(
        {"scalar": torch.tensor(2.0)}
    )
