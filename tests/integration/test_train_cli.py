"""fusion-train through Hydra on a tiny generated cohort, and the files it writes (README: Commands)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines.utils import concordance_index
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from fusion import compose
from fusion.data.cohort import Cohort
from fusion.lit import LitFusion
from fusion.pipeline import build_datamodule, build_heads, build_modalities, build_model, unimodal_weight
from fusion.training import run_training
from tests.integration.conftest import TINY, run_module, tiny_overrides

EXPECTED_KEYS = {
    f"{stage}/{metric}"
    for stage in ("val", "test")
    for metric in ("grade_auroc", "grade_balanced_accuracy", "survival_cindex", "response_auroc")
}


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train_run")
    overrides = [o if o != "logger=[csv]" else "logger=[csv,wandb]" for o in TINY]
    result = run_module(
        "fusion.cli.train", f"data.manifest={tiny_cohort}", f"hydra.run.dir={run_dir}", *overrides
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def _reference_test_metrics(predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """The README's test metric keys recomputed from predictions_test.csv and the manifest's labels with
    scikit-learn and lifelines, not with the package's own metric code."""
    table = predictions.merge(manifest, on="patient_id", how="left", validate="one_to_one")
    probs = table[["grade_prob_1", "grade_prob_2", "grade_prob_3"]].to_numpy()
    grade = table["grade"].map({1: 0, 2: 1, 3: 2})
    known = grade.notna().to_numpy()
    y = grade[known].astype(int).to_numpy()
    survival = table.dropna(subset=["survival_time", "survival_event"])
    response = table.dropna(subset=["response"])
    return {
        "test/grade_auroc": float(np.mean([roc_auc_score(y == k, probs[known, k]) for k in range(3)])),
        "test/grade_balanced_accuracy": balanced_accuracy_score(y, probs[known].argmax(axis=1)),
        "test/survival_cindex": concordance_index(
            survival["survival_time"], -survival["risk"], survival["survival_event"]
        ),
        "test/response_auroc": roc_auc_score(response["response"].astype(int), response["response_prob"]),
    }


def test_train_writes_metrics_predictions_and_checkpoints(trained, tiny_cohort):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics) >= EXPECTED_KEYS
    # The seeded 26/6/8 split of the 40-patient cohort puts all three grades, both response classes and
    # comparable survival pairs in val and in test: every README metric is defined, none may be None.
    for key in sorted(EXPECTED_KEYS):
        value = metrics[key]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
    predictions = pd.read_csv(trained / "predictions_test.csv")
    reference = _reference_test_metrics(predictions, pd.read_csv(tiny_cohort))
    assert set(reference) == {k for k in EXPECTED_KEYS if k.startswith("test/")}
    for key, expected in reference.items():
        # the logged value (float32, Lightning) is the metric of the written predictions
        assert metrics[key] == pytest.approx(expected, abs=1e-5), key
        low, high = metrics["ci95"][key]  # the bootstrap interval brackets its point estimate
        assert 0.0 <= low <= metrics[key] + 1e-6 and metrics[key] - 1e-6 <= high <= 1.0, (key, low, high)
        assert low < high, key  # 8 patients: resampling them moves every metric
    assert {"oracle/grade_auroc", "oracle/survival_cindex", "oracle/response_auroc"} <= set(metrics)
    # S(h | x) at the training event-time quartiles and the median, beside the risk they come from
    survival = [c for c in predictions.columns if c.startswith("survival_prob_")]
    assert len(survival) == 3
    assert list(predictions.columns) == [
        "patient_id",
        "grade_prob_1",
        "grade_prob_2",
        "grade_prob_3",
        "risk",
        *survival,
        "survival_median",
        "response_prob",
        "model_id",
    ]
    assert len(predictions) == metrics["info"]["n_patients"]["test"]
    assert predictions[["grade_prob_1", "grade_prob_2", "grade_prob_3"]].sum(axis=1).round(5).eq(1).all()
    manifest_ids = set(pd.read_csv(tiny_cohort)["patient_id"])
    assert set(predictions["patient_id"]) <= manifest_ids
    assert (trained / "checkpoints" / "last.ckpt").exists()
    assert (trained / "csv" / "metrics.csv").exists()


def test_wandb_offline_run_holds_the_metrics(trained):
    runs = list((trained / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, list((trained / "wandb").rglob("*"))
    data = runs[0].read_bytes()
    for key in ("train/loss", "val/score", "test/survival_cindex", "test/grade_auroc"):
        assert key.encode() in data


def test_checkpoint_holds_config_and_fitted_state_but_no_dicom_fields(trained):
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(ckpt["fusion"]["modality_state"]) == {"ct", "mri", "pet", "histology", "genomics", "ehr"}
    raw = (trained / "checkpoints" / "last.ckpt").read_bytes()
    for fake in (b"FAKE^PATIENT", b"MRN-FAKE", b"ACC-FAKE", b"Fake General Hospital"):
        assert fake not in raw


def test_no_output_contains_dicom_patient_fields(trained):
    for path in trained.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for fake in (b"FAKE^PATIENT", b"MRN-FAKE", b"ACC-FAKE", b"Fake General Hospital", b"FAKE^DOCTOR"):
                assert fake not in data, f"{fake!r} found in {path}"


def test_predict_with_a_modality_column_emptied_predicts_every_patient(trained, cohort_copy, tmp_path):
    manifest = pd.read_csv(cohort_copy)
    manifest["ct"] = None
    manifest.to_csv(cohort_copy, index=False)
    out = tmp_path / "pred"
    result = run_module(
        "fusion.cli.predict",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    predictions = pd.read_csv(out / "predictions.csv")
    assert sorted(predictions["patient_id"]) == sorted(manifest["patient_id"])
    assert predictions.drop(columns="patient_id").notna().all().all()


def test_resume_from_last_checkpoint(trained, tiny_cohort, tmp_path):
    cfg = compose(
        [
            f"data.manifest={tiny_cohort}",
            *tiny_overrides("trainer.max_epochs=3"),
            f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    metrics = run_training(cfg, tmp_path / "resumed").metrics
    info = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["info"]
    assert info["epochs"] == 3 and "test/survival_cindex" in metrics


@pytest.mark.parametrize("selection", [["modality=[genomics,ehr]"], ["head=[survival]"]])
def test_modality_and_head_selection_without_code_changes(tiny_cohort, tmp_path, selection):
    cfg = compose([f"data.manifest={tiny_cohort}", *tiny_overrides(*selection)])
    metrics = run_training(cfg, tmp_path / "run").metrics
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    if selection == ["head=[survival]"]:
        assert "test/survival_cindex" in metrics
        assert not any(k.startswith(("test/grade", "test/response")) for k in metrics)
        survival = [c for c in predictions.columns if c.startswith("survival_prob_")]
        assert list(predictions.columns) == ["patient_id", "risk", *survival, "survival_median", "model_id"]
    else:
        assert {"test/grade_auroc", "test/survival_cindex", "test/response_auroc"} <= set(metrics)
        ckpt = torch.load(
            tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        )
        assert set(ckpt["fusion"]["modality_state"]) == {"genomics", "ehr"}


def test_bf16_mixed_precision_trains_every_encoder(tiny_cohort, tmp_path):
    """`trainer.precision=bf16-mixed` (the GPU configs' default) runs every encoder under autocast; on a CPU
    Lightning autocasts to bf16 too, so dtype mismatches show up here and not first on a GPU node."""
    bf16 = tiny_overrides("trainer.precision=bf16-mixed", "trainer.max_epochs=1")
    cfg = compose([f"data.manifest={tiny_cohort}", *bf16])
    metrics = run_training(cfg, tmp_path / "run").metrics
    assert {"test/grade_auroc", "test/survival_cindex", "test/response_auroc"} <= set(metrics)
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    assert predictions.drop(columns="patient_id").notna().all().all()


def _gradients(lit: LitFusion, batch: dict, weight: float, bf16: bool) -> dict[str, torch.Tensor | None]:
    """One training loss (fused + weight x one-modality losses, as `LitFusion.training_step`) and its
    backward, under CPU bf16 autocast (what Lightning's `bf16-mixed` wraps the step in) or in float32."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        outputs, unimodal = lit.model.forward_with_unimodal(batch["inputs"])
        total, parts, _ = lit.global_loss(outputs, batch["labels"])
        total = total + weight * lit.unimodal_loss(unimodal, batch["labels"])
    assert set(parts) == {"grade", "survival", "response"} and torch.isfinite(total)
    total.backward()
    return {name: p.grad for name, p in lit.named_parameters() if p.requires_grad}


def _component(name: str) -> str:
    """The part a parameter belongs to: encoders.ct, fuser, heads.grade, ..."""
    parts = name.split(".")
    return ".".join(parts[1:3]) if parts[1] in ("encoders", "heads") else parts[1]


def test_bf16_autocast_gradients_are_finite_and_match_float32(tiny_cohort):
    """Every encoder, the fuser and every head get finite, non-zero gradients under bf16 autocast, close
    to the float32 ones (same weights, same batch, no dropout). Tolerances for bf16 (8-bit mantissa), per
    part: the convolutional encoders' batch-norm / PReLU gradients sum thousands of voxels or pixels and
    come out up to ~15% off in norm (cosine >= 0.988; bound 30%, 0.97); the fuser within 8% (bound 12%),
    the MLP / tokenizer encoders and the heads within 2% (bound 12%, cosine 0.995)."""
    no_dropout = [f"modality.{m}.dropout=0" for m in ("histology", "genomics", "ehr")]
    no_dropout += ["fuser.dropout=0", "fuser.modality_dropout=0"]
    cfg = compose([f"data.manifest={tiny_cohort}", *tiny_overrides(*no_dropout)])
    torch.manual_seed(0)
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    datamodule = build_datamodule(cfg, Cohort.load(cfg.data.manifest), modalities, heads)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    model = build_model(cfg, modalities, heads).train()
    weight = unimodal_weight(cfg)
    assert weight > 0  # the one-modality passes are part of the training loss, and of this test
    full = _gradients(LitFusion(copy.deepcopy(model)), batch, weight, bf16=False)
    mixed = _gradients(LitFusion(copy.deepcopy(model)), batch, weight, bf16=True)

    took_part = sorted(name for name, grad in full.items() if grad is not None)
    assert took_part == sorted(full)  # the batch has every modality and label: every parameter takes part
    assert sorted(name for name, grad in mixed.items() if grad is not None) == took_part
    components = {_component(name) for name in took_part}
    expected = {f"encoders.{m}" for m in modalities} | {"fuser"} | {f"heads.{h}" for h in heads}
    assert components == expected
    convolutional = {
        f"encoders.{name}"
        for name, encoder in model.encoders.items()
        if any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in encoder.modules())
    }
    assert convolutional == {"encoders.ct", "encoders.mri", "encoders.pet", "encoders.histology"}
    for component in sorted(components):
        names = [n for n in took_part if _component(n) == component]
        ref = torch.cat([full[n].flatten() for n in names])
        low = torch.cat([mixed[n].flatten() for n in names])
        assert low.dtype == torch.float32 and torch.isfinite(low).all(), component  # fp32 master weights
        cosine = float(torch.nn.functional.cosine_similarity(ref, low, dim=0))
        error = float((low - ref).norm() / ref.norm())
        if component in convolutional:
            assert cosine > 0.97 and error < 0.3, (component, cosine, error)
        else:
            assert cosine > 0.995 and error < 0.12, (component, cosine, error)
        for name in names:
            if full[name].norm() < 1e-5 * ref.norm():
                # zero in exact arithmetic (a conv bias before batch norm, a shift of the Cox log-hazards or
                # of attention logits, an embedding no patient of the batch used): float32 leaves rounding
                # noise, bf16 must not make it a real gradient
                assert mixed[name].norm() < 5e-2 * ref.norm(), name
                continue
            assert mixed[name].abs().sum() > 0, name
            if full[name].numel() > 1:
                tensor_cosine = torch.nn.functional.cosine_similarity(
                    full[name].flatten(), mixed[name].flatten(), dim=0
                )
                assert tensor_cosine > 0.8, (name, float(tensor_cosine))
