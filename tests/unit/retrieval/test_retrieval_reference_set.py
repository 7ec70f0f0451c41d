"""The reference set: built from a model and labelled records, saved as plain values beside the checkpoint
(not with fewer than min_group patients), loaded with weights_only, refused for other weights."""

from __future__ import annotations

import logging

import pytest
import torch

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.retrieval.embeddings import state_dict_digest
from fusion.retrieval.reference_set import FILENAME, ReferenceSet, build_reference_set, stored_reference_set
from fusion.version import __version__
from tests.unit.retrieval.tiny import batch, tiny_model

IDS = ["P1", "P2", "P3", "P4"]
PRESENT = {"a": [True, True, False, False], "b": [True, False, True, False]}
LABELS = [
    {"grade": 1, "survival": (12.5, 1.0), "response": 0.0},
    {"grade": 0, "survival": None, "response": 1.0},
    {"grade": None, "survival": (30.0, 0.0), "response": None},
    {"grade": 0, "survival": (3.0, 1.0), "response": 1.0},
]


def records() -> list[PatientRecord]:
    return [PatientRecord(p, labels=labels) for p, labels in zip(IDS, LABELS, strict=True)]


def built(model=None) -> ReferenceSet:
    model = model or tiny_model()
    heads = dict(model.heads.items())
    return build_reference_set(model, heads, records(), [batch(IDS, PRESENT)], "abc123", "best-epoch003.ckpt")


def test_labels_are_kept_as_the_manifest_writes_them_and_patients_without_inputs_left_out():
    reference = built()
    assert reference.patient_ids == ["P1", "P2", "P3"]  # P4 has no modality: no embedding
    assert reference.embeddings.shape == (3, 16)
    assert reference.labels == {
        "grade": ["G2", "G1", None],
        "survival_time": [12.5, None, 30],
        "survival_event": [1, None, 0],
        "response": [0, 1, None],
    }


def test_saved_as_plain_values_and_loaded_with_weights_only(tmp_path):
    reference = built()
    path = reference.save(tmp_path, min_group=3)
    assert path == tmp_path / FILENAME
    stored = torch.load(path, weights_only=True)
    assert set(stored) == {
        "patient_ids",
        "embeddings",
        "labels",
        "weights_sha256",
        "checkpoint",
        "fusion_version",
    }
    loaded = ReferenceSet.load(path)
    assert loaded.patient_ids == reference.patient_ids and loaded.labels == reference.labels
    torch.testing.assert_close(loaded.embeddings, reference.embeddings)
    assert (loaded.weights_sha256, loaded.checkpoint, loaded.fusion_version) == (
        "abc123",
        "best-epoch003.ckpt",
        __version__,
    )


def test_fewer_patients_than_min_group_are_not_written(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fusion.retrieval.reference_set"):
        assert built().save(tmp_path, min_group=4) is None
    assert not (tmp_path / FILENAME).exists()
    assert "3 patients, fewer than privacy.min_group=4" in caplog.text


def test_other_weights_are_refused_with_the_checkpoint_it_was_built_with():
    reference = built()
    reference.check_weights("abc123", "run/best.ckpt", "run/reference_set.pt")  # the same weights: fine
    with pytest.raises(ConfigError) as err:
        reference.check_weights("fff999", "run/last.ckpt", "run/reference_set.pt")
    message = str(err.value)
    assert "\n" not in message
    for text in ("best-epoch003.ckpt", "run/last.ckpt", "reference=MANIFEST", "ckpt_path="):
        assert text in message


def test_a_file_that_is_not_a_reference_set_is_a_config_error(tmp_path):
    torch.save({"patient_ids": ["P1"]}, tmp_path / FILENAME)
    with pytest.raises(ConfigError, match="not a fusion reference set"):
        ReferenceSet.load(tmp_path / FILENAME)


def test_the_set_beside_a_checkpoint_is_found_and_checked_against_its_weights(tmp_path):
    model = tiny_model()
    checkpoint = {"state_dict": model.state_dict()}
    with pytest.raises(
        ConfigError, match="no reference set .* retrain, or run fusion-similar with reference="
    ):
        stored_reference_set(tmp_path / "best.ckpt", checkpoint)
    reference = built(model)
    reference.weights_sha256 = state_dict_digest(checkpoint["state_dict"])
    reference.save(tmp_path, min_group=1)
    assert stored_reference_set(tmp_path / "best.ckpt", checkpoint).patient_ids == reference.patient_ids
    other = {"state_dict": {k: v + 1 for k, v in checkpoint["state_dict"].items()}}
    with pytest.raises(ConfigError, match="was built with checkpoint best-epoch003.ckpt"):
        stored_reference_set(tmp_path / "last.ckpt", other)
