"""The provenance record: its keys, digests that change with the config, manifest and input files, and
no patient id or path in it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest

from fusion import provenance as prov
from fusion.version import __version__


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, list[Path]]:
    (tmp_path / "ct" / "P0001").mkdir(parents=True)
    (tmp_path / "ct" / "P0001" / "slice1.dcm").write_bytes(b"x" * 10)
    (tmp_path / "pet").mkdir()
    (tmp_path / "pet" / "P0002.nii.gz").write_bytes(b"y" * 20)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("patient_id,ct,pet\nP0001,ct/P0001,\nP0002,,pet/P0002.nii.gz\n")
    return manifest, [tmp_path / "ct" / "P0001", tmp_path / "pet" / "P0002.nii.gz"]


CFG = {
    "seed": 1,
    "head": {"survival": {"name": "survival", "time_unit": "months"}, "grade": {"name": "grade"}},
}


def test_record_has_every_key_and_is_plain_json_without_patient_ids(cohort):
    manifest, files = cohort
    record = prov.run_provenance(CFG, manifest, files, {"train": 26, "val": 6}, model_id="abc")
    assert set(record) == {
        "fusion_version",
        "git_commit",
        "python",
        "torch",
        "lightning",
        "monai",
        "config_sha256",
        "manifest_sha256",
        "input_files",
        "n_patients",
        "time_units",
        "created",
        "model_id",
    }
    assert record["fusion_version"] == __version__ and record["torch"]
    assert record["input_files"]["n_files"] == 2 and record["input_files"]["method"] == "path+size+mtime"
    assert record["n_patients"] == {"train": 26, "val": 6} and record["time_units"] == {"survival": "months"}
    assert record["created"].endswith("+00:00")
    text = json.dumps(record)
    assert "P0001" not in text and "P0002" not in text and str(manifest.parent) not in text
    assert record["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()


def test_digests_change_with_config_manifest_and_inputs(cohort):
    manifest, files = cohort
    before = prov.run_provenance(CFG, manifest, files)
    assert (
        prov.run_provenance({**CFG, "seed": 2}, manifest, files)["config_sha256"] != before["config_sha256"]
    )
    # the same config in another key order is the same config
    assert prov.config_sha256(dict(reversed(list(CFG.items())))) == before["config_sha256"]
    manifest.write_text(manifest.read_text() + "P0003,,\n")
    assert prov.run_provenance(CFG, manifest, files)["manifest_sha256"] != before["manifest_sha256"]
    inputs = before["input_files"]["sha256"]
    assert prov.files_fingerprint(files, manifest.parent)["sha256"] == inputs  # stable
    pet = files[1]
    os.utime(pet, ns=(pet.stat().st_atime_ns, pet.stat().st_mtime_ns + 10**9))  # touched
    assert prov.files_fingerprint(files, manifest.parent)["sha256"] != inputs
    (files[0] / "slice2.dcm").write_bytes(b"z")  # a file added to a series folder
    assert prov.files_fingerprint(files, manifest.parent)["n_files"] == 3


def test_missing_manifest_and_files_do_not_fail(tmp_path):
    record = prov.run_provenance(None, tmp_path / "gone.csv", [tmp_path / "gone.nii.gz"])
    assert record["manifest_sha256"] is None and record["config_sha256"] is None
    assert record["input_files"]["n_files"] == 1


def test_referenced_files_walks_references_but_not_strings(tmp_path):
    @dataclasses.dataclass
    class Ref:
        image: Path
        mask: Path | None

    refs = [{"ct": Ref(tmp_path / "a", tmp_path / "b"), "ehr": "P0001", "pet": None}, [tmp_path / "c"]]
    assert sorted(p.name for p in prov.referenced_files(refs)) == ["a", "b", "c"]


def test_git_commit_outside_a_checkout_is_none_and_read_from_files_otherwise(tmp_path):
    assert prov.git_commit(tmp_path) is None
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert prov._head_from_files(git) == "a" * 40


def test_file_sha256_is_the_content_digest(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(os.urandom(3 << 20))
    assert prov.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
