"""One training run: fit on train, select on val, evaluate and predict on test, write the outputs.

Writes into `output_dir`: `metrics.json` (the README's metric keys, more test metrics and their
bootstrap "ci95", the run's "provenance"), `predictions_test.csv` (with the survival probabilities and
the `model_id` of the best checkpoint, written after its last change) and its `.provenance.json`
sidecar, `report/` (figures + report.md, see fusion.report), `checkpoints/` (best on the monitored val
metric, plus last; both hold the provenance), and the loggers' folders.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from fusion.attribution.base_value import as_nested, mean_targets
from fusion.callbacks import InterruptCheckpoint, StartEpoch
from fusion.checkpoint import (
    PROVENANCE_KEY,
    TRAINING_PATIENTS_KEY,
    store_explain_base,
    stored_references,
    training_patient_hashes,
)
from fusion.data.cohort import Cohort
from fusion.data.demo import ensure_demo_cohort
from fusion.errors import TrainingInterrupted
from fusion.evaluation import EvaluationSettings
from fusion.fail_soft import optional_step
from fusion.lit import LitFusion
from fusion.modalities.base import Modality
from fusion.modalities.privacy import MIN_GROUP
from fusion.optim import optim_kwargs
from fusion.pipeline import (
    build_datamodule,
    build_heads,
    build_modalities,
    build_model,
    modality_states,
    record_modalities,
    unimodal_weight,
)
from fusion.prediction_table import add_survival_columns, predict_frame, write_predictions
from fusion.provenance import file_sha256
from fusion.report.wandb import log_embeddings, wandb_runs
from fusion.resume import (
    is_resuming,
    keep_csv_logs,
    remember_wandb_run,
    resume_command,
    wandb_resume_kwargs,
    warn_other_folder,
)
from fusion.retrieval.embeddings import state_dict_digest
from fusion.retrieval.reference_set import ReferenceSet, build_reference_set
from fusion.retrieval.split_metrics import split_retrieval_metrics
from fusion.scoring import evaluate_training_run, labels_frame, records_provenance, write_metrics

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run leaves: its metrics (as in `metrics.json`) and where its files are.

    best_checkpoint: the checkpoint selected on the monitored validation metric, the one the test
    metrics were computed with and the one to predict with (None when nothing was checkpointed);
    last_checkpoint: the end of training (for resuming).
    """

    metrics: dict[str, Any]
    output_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None


def run_training(
    cfg: DictConfig,
    output_dir: str | Path,
    splits: dict[str, list[str]] | None = None,
    modalities: dict[str, Modality] | None = None,
) -> TrainResult:
    """Train and evaluate one model; return its metrics (those written to `metrics.json`) and checkpoints.

    `modalities`: instances to use instead of the config's modality selection; their own configs
    (`Modality.init_config`) replace `cfg.modality` in the checkpoint, so it predicts without them.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.copy()  # this run's folder: loggers and checkpoints of CV folds must not share one
    cfg.paths.output_dir = str(output_dir)
    L.seed_everything(cfg.seed, workers=True)
    if modalities is not None:
        record_modalities(cfg, modalities)
    manifest = ensure_demo_cohort(cfg)
    cohort = Cohort.load(manifest)
    modalities = modalities or build_modalities(cfg)
    heads = build_heads(cfg)
    settings = EvaluationSettings.from_config(cfg.get("evaluation"))  # a bad setting fails before training
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits=splits)
    datamodule.setup("fit")  # every cohort problem surfaces here, before any training

    model = build_model(cfg, modalities, heads)
    # to_container of a DictConfig is a dict; its stubs give the return type for any config or value
    resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    extras = {"config": resolved, "modality_state": modality_states(modalities)}
    # where this model came from (versions, config and input digests, split sizes): no patient value or id
    extras[PROVENANCE_KEY] = records_provenance(resolved, manifest, datamodule.records, modalities)
    # salted hashes, never the ids: fusion-predict flags a manifest's patients that the model trained on
    extras[TRAINING_PATIENTS_KEY] = training_patient_hashes(datamodule.split_ids().get("train", []))
    lit = LitFusion(
        model,
        checkpoint_extras=extras,
        unimodal_weight=unimodal_weight(cfg),
        **optim_kwargs(cfg.optim),
    )
    warn_other_folder(cfg.get("ckpt_path"), output_dir)
    interrupt = InterruptCheckpoint(output_dir / "checkpoints" / "interrupted.ckpt")
    start = StartEpoch()
    trainer = _build_trainer(cfg, output_dir, resolved, [interrupt, start])
    try:
        return _fit_and_evaluate(cfg, trainer, lit, datamodule, heads, settings, manifest, output_dir, start)
    except SIGTERMException:
        _finish_loggers(trainer)
        raise _interrupted(trainer, interrupt.saved, output_dir) from None


def _fit_and_evaluate(
    cfg: DictConfig,
    trainer: L.Trainer,
    lit: LitFusion,
    datamodule: Any,
    heads: dict[str, Any],
    settings: EvaluationSettings,
    manifest: Path,
    output_dir: Path,
    start: StartEpoch,
) -> TrainResult:
    trainer.fit(lit, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    resumed_from = trainer.ckpt_path  # the checkpoint fit restored (ckpt_path, or a SLURM requeue's)
    # typed as the Checkpoint base class; the configs' one (and Lightning's default) is a ModelCheckpoint
    checkpoint = cast(ModelCheckpoint | None, trainer.checkpoint_callback)
    best = checkpoint.best_model_path if checkpoint else ""
    ckpt = best or None
    metrics: dict[str, Any] = {}
    for stage, run in (("val", trainer.validate), ("test", trainer.test)):
        if datamodule.records.get(stage):
            run(lit, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            metrics.update({k: v for k, v in lit.last_metrics.items() if k.startswith(f"{stage}/")})
    ci95: dict[str, list[float]] = {}
    test_frame = None
    if datamodule.records.get("test"):
        test_frame = predict_frame(trainer, lit, datamodule.test_dataloader(), ckpt)
        evaluation = evaluate_training_run(
            trainer, lit, datamodule, heads, settings, test_frame, ckpt, output_dir
        )
        if evaluation is not None:
            # the same metric functions as the logged epoch values (`Head.evaluate`), so the test keys the
            # LightningModule logged are unchanged here; the evaluation adds the others and every CI
            metrics.update(evaluation.metrics)
            ci95 = evaluation.ci95
    if ckpt and trainer.is_global_zero:
        with optional_step("explanation base values (mean outputs over the training split)"):
            _store_explain_base(cfg, lit, datamodule, heads, ckpt)
        with optional_step("reference set of similar patients (the training split's fused embeddings)"):
            reference = _store_reference_set(cfg, lit, datamodule, heads, ckpt)
            if datamodule.records.get("test"):
                with optional_step("retrieval metrics of the test split"):
                    quality, intervals = _retrieval_quality(
                        cfg, trainer, lit, datamodule, heads, settings, reference
                    )
                    metrics.update(quality)
                    ci95.update(intervals)
    # the best checkpoint is final from here on (references and base values stored): its hash is the model id
    provenance = {**lit.checkpoint_extras[PROVENANCE_KEY], "model_id": None}
    if ckpt and trainer.is_global_zero:  # rank 0 wrote it; only rank 0 writes the files that name it
        provenance["model_id"] = file_sha256(ckpt)
    if test_frame is not None and trainer.is_global_zero:
        _write_test_predictions(output_dir, test_frame, heads, settings, ckpt, provenance)
    info: dict[str, Any] = {
        "best_checkpoint": best,
        "epochs": trainer.current_epoch,
        "n_patients": {k: len(v) for k, v in datamodule.split_ids().items()},
    }
    if resumed_from:
        info["resumed"] = {"checkpoint": str(resumed_from), "epoch": start.epoch}
    metrics = _json_safe(metrics)
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics, ci95, info, provenance)
        with optional_step("oracle metrics (truth.csv)"):  # the run's own metrics are written first
            oracle = _oracle(manifest, datamodule.split_ids().get("test", []))
            if oracle:
                metrics = _json_safe({**metrics, **oracle})
                write_metrics(output_dir / "metrics.json", metrics, ci95, info, provenance)
    _finish_loggers(trainer)
    log.debug("metrics: %s", json.dumps(metrics, indent=1))  # in metrics.json; fusion-train prints a summary
    last = getattr(trainer.checkpoint_callback, "last_model_path", "") if trainer.checkpoint_callback else ""
    return TrainResult(metrics, output_dir, Path(best) if best else None, Path(last) if last else None)


def _write_test_predictions(
    output_dir: Path,
    frame: Any,
    heads: dict[str, Any],
    settings: EvaluationSettings,
    ckpt: str | None,
    provenance: dict[str, Any],
) -> None:
    """predictions_test.csv: the test predictions with the survival probabilities of the references stored
    in the best checkpoint, its `model_id`, and the provenance sidecar."""
    references = stored_references(torch.load(ckpt, map_location="cpu", weights_only=True)) if ckpt else {}
    frame = add_survival_columns(frame, heads, references, settings.horizons)
    write_predictions(output_dir / "predictions_test.csv", frame, provenance)


def _store_explain_base(
    cfg: DictConfig, lit: LitFusion, datamodule: Any, heads: dict[str, Any], ckpt: str
) -> None:
    """Each target's mean over the training split, with the selected weights, into the best checkpoint: the
    base value of fusion-explain's modality contributions (`fusion.attribution.base_value`). Skipped with
    fewer than ``privacy.min_group`` training patients (the mean of fewer is not stored)."""
    train = datamodule.records.get("train", [])
    if len(train) < int(cfg.get("privacy", {}).get("min_group", MIN_GROUP)):
        return
    lit.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    base = mean_targets(lit.model, heads, datamodule.loader("train", train=False))
    store_explain_base(ckpt, as_nested(base))


def _store_reference_set(
    cfg: DictConfig, lit: LitFusion, datamodule: Any, heads: dict[str, Any], ckpt: str
) -> ReferenceSet:
    """The training split's fused embeddings and labels, with the selected weights, as reference_set.pt beside
    the best checkpoint: what fusion-similar searches (`fusion.retrieval.reference_set`). Not written with
    fewer than ``privacy.min_group`` training patients. Returned (written or not), and `lit` keeps the
    selected weights, for the retrieval metrics."""
    train = datamodule.records.get("train", [])
    state_dict = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    lit.load_state_dict(state_dict)
    reference = build_reference_set(
        lit.model,
        heads,
        train,
        datamodule.loader("train", train=False),
        state_dict_digest(state_dict),
        Path(ckpt).name,
    )
    reference.save(Path(ckpt).parent, int(cfg.get("privacy", {}).get("min_group", MIN_GROUP)))
    return reference


def _retrieval_quality(
    cfg: DictConfig,
    trainer: L.Trainer,
    lit: LitFusion,
    datamodule: Any,
    heads: dict[str, Any],
    settings: EvaluationSettings,
    reference: ReferenceSet,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The test patients' similar-patient search among the training patients, with the selected weights:
    ``test/retrieval_*`` metrics (`fusion.retrieval.split_metrics`; off with ``retrieval.metrics=false``).
    With a W&B logger and ``evaluation.wandb_table=true`` (per-patient tables are sent only on request, as
    the predictions table), also the test patients' fused embeddings and labels as the table
    ``test_embeddings`` (W&B's projector view)."""
    scored = bool((cfg.get("retrieval") or {}).get("metrics", True))
    table = bool((cfg.get("evaluation") or {}).get("wandb_table", False)) and bool(
        wandb_runs(trainer.loggers)
    )
    if not (scored or table):
        return {}, {}
    records = datamodule.records
    quality, intervals, embeddings = split_retrieval_metrics(
        lit.model,
        heads,
        records.get("train", []),
        reference,
        records["test"],
        datamodule.loader("test", train=False),
        settings.n_bootstrap,
        settings.seed,
        settings.level,
    )
    if table:
        log_embeddings(
            trainer.loggers, labels_frame(records["test"], heads).merge(embeddings, on="patient_id")
        )
    if not scored:
        return {}, {}
    return {f"test/{k}": v for k, v in quality.items()}, {f"test/{k}": v for k, v in intervals.items()}


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN (a metric undefined on this split) as None, which JSON has."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def _build_trainer(
    cfg: DictConfig, output_dir: Path, resolved: dict[str, Any], own_callbacks: list[Any]
) -> L.Trainer:
    resuming = is_resuming(cfg.get("ckpt_path"), output_dir)
    loggers = [
        instantiate(node, **wandb_resume_kwargs(node, output_dir, resuming))
        for node in (cfg.get("logger") or {}).values()
    ]
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    if resuming:
        rank_zero_only(keep_csv_logs)(loggers)  # one rank moves the folder
    for lg in loggers:  # the resolved config beside the metrics (paths and settings only, no patient data)
        lg.log_hyperparams(resolved)
    rank_zero_only(remember_wandb_run)(loggers, output_dir)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    return instantiate(
        cfg.trainer, logger=loggers, callbacks=[*callbacks, *own_callbacks], default_root_dir=str(output_dir)
    )


def _interrupted(trainer: L.Trainer, saved: Path | None, output_dir: Path) -> TrainingInterrupted:
    """The one-line error of a SIGTERM: where training stopped, the checkpoint, the resume command."""
    last = output_dir / "checkpoints" / "last.ckpt"
    ckpt = saved if saved and saved.exists() else (last if last.exists() else None)
    stopped = f"training stopped by SIGTERM at epoch {trainer.current_epoch}, step {trainer.global_step}"
    if ckpt is None:
        return TrainingInterrupted(f"{stopped}, before any checkpoint was saved; run the command again")
    command = resume_command(ckpt, output_dir)
    how = f"resume with: {command}" if command else f"resume with ckpt_path={ckpt} in the same output folder"
    return TrainingInterrupted(f"{stopped}; checkpoint saved to {ckpt}; {how}")


def _finish_loggers(trainer: L.Trainer) -> None:
    for lg in trainer.loggers:
        experiment = getattr(lg, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


def _oracle(manifest: Path, test_ids: list[str]) -> dict[str, float]:
    """Best achievable metrics on the test patients when the cohort is synthetic (it ships truth.csv)."""
    if not test_ids or not (manifest.parent / "truth.csv").exists():
        return {}
    from fusion.data.synthetic import oracle_metrics

    return oracle_metrics(manifest.parent, test_ids)
