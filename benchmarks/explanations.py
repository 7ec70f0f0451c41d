"""Are fusion-explain's explanations right? Checked against the demo generator's truth, quickstart model.

The demo cohort's generator knows what carries each label (`truth/genes.csv`, `truth/tiles.csv`, the CT lesion
masks), so each explanation is scored against it, each figure printed beside its chance level:

- genes: precision@k of the cohort gene ranking (top_features.csv) for response against the sensitivity block
  and for grade against the proliferation block (k = block size; chance = k / number of genes). Beside it, the
  same precision for a logistic / linear model fitted on the genes alone (training split): what the genes
  themselves support, whatever the fusion model learnt.
- tiles: AUROC of attention, and of attribution, for tumour vs stroma tiles (per patient, then averaged).
- imaging: pointing game: share of patients whose saliency peak lies inside the lesion mask, against the
  mask's share of the volume (chance).
- faithfulness: removing each patient's top modality (largest |Shapley value|) changes the prediction more
  than removing a random present one: ratio of the mean absolute changes (1 = no better than random); a
  random present one may be the top one itself (1 in the number present), a random *other* one may not.
- cost: seconds per patient for all heads and modalities (maps included).

    python benchmarks/explanations.py                        # writes the cohort, trains the quickstart model
    python benchmarks/explanations.py --ckpt RUN/checkpoints/best-*.ckpt --manifest COHORT/manifest.csv
    python benchmarks/explanations.py --work DIR --set modality.genomics.input_noise=1   # another model

Targets (issue 18): gene precision@k >= 0.8 for both labels, tile AUROC >= 0.8, pointing game >= 0.8,
faithfulness ratio >= 2, under 2 s per patient on CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

import fusion
from fusion.attribution.imaging_png import saliency_peak
from fusion.explanations.runner import explain_manifest
from fusion.explanations.session import ExplainSession, open_session
from fusion.training import run_training

IMAGING = ("ct", "mri", "pet")


def quickstart_run(work: Path, manifest: Path, overrides: list[str]) -> Path:
    """The best checkpoint of a quickstart model (plus `overrides`) trained into `work`/train on `manifest`
    (the demo cohort, written there first when absent); an earlier one found there is reused."""
    run = work / "train"
    found = sorted((run / "checkpoints").glob("best-*.ckpt")) if run.exists() else []
    if found:
        return found[-1]
    cfg = fusion.compose(["experiment=quickstart", f"data.manifest={manifest}", "logger=[csv]", *overrides])
    result = run_training(cfg, run)
    assert result.best_checkpoint is not None
    return result.best_checkpoint


def test_patients(checkpoint: Path) -> list[str]:
    frame = pd.read_csv(checkpoint.parent.parent / "predictions_test.csv", dtype={"patient_id": str})
    return frame["patient_id"].tolist()


# ------------------------------------------------------------------ genes
def gene_precision(top: pd.DataFrame, truth: pd.DataFrame, head: str, latent: str) -> tuple[float, int, int]:
    """(precision@k, k, n_genes) of the genomics ranking of `head` against the genes loading on `latent`."""
    block = set(truth.loc[truth["latent"] == latent, "gene"])
    ranked = top[(top["head"] == head) & (top["modality"] == "genomics")].sort_values("rank")
    k = len(block)
    return len(set(ranked["feature"].head(k)) & block) / k, k, len(ranked)


def genes_only_precision(cohort: Path, train_ids: set[str], truth: pd.DataFrame) -> dict[str, float]:
    """Precision@k of |coefficient| rankings of models of the genes alone, fitted on the training patients:
    logistic regression for response, linear regression of the grade (1-3) for grade."""
    genes = pd.read_csv(cohort / "genomics.csv", dtype={"patient_id": str}).set_index("patient_id")
    x = np.log1p(genes)
    x = (x - x.mean()) / x.std()
    labels = pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    out = {}
    for head, latent in (("response", "sensitivity"), ("grade", "proliferation")):
        y = labels[head].dropna()
        ids = [p for p in y.index if p in x.index and p in train_ids]
        model = LogisticRegression(max_iter=2000) if head == "response" else LinearRegression()
        model.fit(x.loc[ids].to_numpy(), y.loc[ids].to_numpy())
        weights = pd.Series(np.abs(np.ravel(model.coef_)), index=x.columns).sort_values(ascending=False)
        block = set(truth.loc[truth["latent"] == latent, "gene"])
        out[head] = len(set(weights.index[: len(block)]) & block) / len(block)
    return out


# ------------------------------------------------------------------ tiles
def tile_aurocs(out: Path, cohort: Path, targets: dict[str, str]) -> dict[str, tuple[float, int]]:
    """Mean per-patient AUROC (tumour vs stroma) of attention and of each head's primary attribution."""
    truth = pd.read_csv(cohort / "truth" / "tiles.csv", dtype={"patient_id": str})
    scores: dict[str, list[float]] = {}
    for path in sorted((out / "tiles").glob("*.csv")):
        frame = pd.read_csv(path)
        pid = path.stem
        tumour = truth[truth["patient_id"] == pid].set_index("tile")["tumour"]
        tiles = frame.drop_duplicates("tile").set_index("tile")
        y = tumour.reindex(tiles.index)
        if y.isna().any() or y.nunique() < 2:
            continue
        scores.setdefault("attention", []).append(roc_auc_score(y, tiles["attention"]))
        for head, target in targets.items():
            rows = frame[(frame["head"] == head) & (frame["target"] == target)].set_index("tile")[
                "attribution"
            ]
            rows = rows.reindex(tiles.index)
            scores.setdefault(f"|attribution| {target}", []).append(roc_auc_score(y, rows.abs()))
            scores.setdefault(f"attribution {target}", []).append(roc_auc_score(y, rows))
    return {name: (float(np.mean(v)), len(v)) for name, v in scores.items()}


# ------------------------------------------------------------------ imaging
def pointing_game(out: Path, cohort: Path, head: str) -> dict[str, tuple[float, float, int]]:
    """modality -> (share of patients whose saliency peak is in the lesion, mean mask share of the volume, n).

    The peak is taken in the saliency map as written (the scan's own geometry); its world position is looked
    up in the CT lesion mask (`ct_mask/<pid>.nii.gz`, CT world geometry: the same lesion for every scan)."""
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    result = {}
    for modality in IMAGING:
        hits, shares = [], []
        for path in sorted((out / "imaging").glob(f"*_{modality}_{head}.nii.gz")):
            pid = path.name[: -len(f"_{modality}_{head}.nii.gz")]
            mask_file = manifest.loc[pid, "ct_mask"] if pid in manifest.index else ""
            if not mask_file:
                continue
            saliency = nib.load(path)
            mask = nib.load(cohort / mask_file)
            values = np.asarray(saliency.get_fdata())
            if values.ndim > 3:
                values = values[..., 0]
            inside = _in_mask(saliency.affine, values.shape, mask)
            peak = saliency_peak(values)  # the largest |saliency|, as the PNG shows it
            hits.append(bool(inside[peak]))
            shares.append(float(inside.mean()))
        if hits:
            result[modality] = (float(np.mean(hits)), float(np.mean(shares)), len(hits))
    return result


def _in_mask(affine: np.ndarray, shape: tuple[int, ...], mask: nib.Nifti1Image) -> np.ndarray:
    """For every voxel of a grid (`affine`, `shape`): whether its centre's world point is inside `mask`."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape[:3]], indexing="ij"), axis=-1).reshape(-1, 3)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    to_mask = np.linalg.inv(mask.affine)
    voxel = np.rint(world @ to_mask[:3, :3].T + to_mask[:3, 3]).astype(int)
    data = np.asarray(mask.get_fdata()) > 0
    ok = ((voxel >= 0) & (voxel < np.array(data.shape[:3]))).all(axis=1)
    inside = np.zeros(len(voxel), dtype=bool)
    inside[ok] = data[voxel[ok, 0], voxel[ok, 1], voxel[ok, 2]]
    return inside.reshape(shape[:3])


# ------------------------------------------------------------------ faithfulness
def faithfulness(session: ExplainSession, contributions: pd.DataFrame) -> dict:
    """Per head (primary target): mean |change| of the prediction when the top-|contribution| modality is
    removed; when a random present one is (the expectation over all present ones, the top one included); when
    a random other one is (the top one excluded). Patients with one modality are skipped (nothing is left)."""
    primary = {h: head.primary_target for h, head in session.heads.items()}
    changes: dict[str, list[tuple[float, float, float]]] = {h: [] for h in primary}
    names = list(session.model.encoders)
    for ctx in session.contexts():
        present = ctx.present
        if len(present) < 2:
            continue
        keep = torch.ones(len(present) + 1, len(names), dtype=torch.bool)
        for row, modality in enumerate(present, start=1):
            keep[row, names.index(modality)] = False  # row 0: everything; row i: all but the i-th present
        with torch.no_grad():
            values = ctx.targets(ctx.with_present(keep))
        rows = contributions[contributions["patient_id"] == ctx.patient_id]
        for head, target in primary.items():
            v = values[(head, target)].double().cpu().numpy()
            change = np.abs(v[0] - v[1:])
            mine = rows[rows["target"] == target].set_index("modality")["contribution"].reindex(present)
            top = int(np.argmax(mine.abs().to_numpy()))
            others = np.delete(change, top)
            changes[head].append((float(change[top]), float(change.mean()), float(others.mean())))
    return {head: tuple(np.mean(np.array(v), axis=0)) + (len(v),) for head, v in changes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("outputs/benchmarks/explanations"))
    parser.add_argument("--ckpt", type=Path, default=None, help="a quickstart run's best checkpoint")
    parser.add_argument(
        "--manifest", type=Path, default=None, help="the demo cohort (default: written in --work)"
    )
    parser.add_argument("--set", nargs="*", default=[], help="overrides of the quickstart model trained here")
    args = parser.parse_args()
    manifest = (args.manifest or args.work / "cohort" / "manifest.csv").resolve()
    checkpoint = args.ckpt or quickstart_run(args.work, manifest, args.set)
    cohort = manifest.parent
    if not (cohort / "truth" / "genes.csv").exists():
        raise SystemExit(f"{cohort} has no truth/ folder: it was written by an older fusion-demo-data")
    patients = test_patients(checkpoint)
    out = args.work / "explained"
    start = time.perf_counter()
    result = explain_manifest(checkpoint, manifest, out, patients=patients)
    wall = time.perf_counter() - start
    print(f"checkpoint {checkpoint}; {len(patients)} test patients; torch threads {torch.get_num_threads()}")

    truth = pd.read_csv(cohort / "truth" / "genes.csv")
    print("\n== genes: precision@k of the cohort ranking (top_features.csv) ==")
    train_ids = set(pd.read_csv(cohort / "manifest.csv", dtype={"patient_id": str})["patient_id"]) - set(
        patients
    )
    alone = genes_only_precision(cohort, train_ids, truth)
    for head, latent in (("response", "sensitivity"), ("grade", "proliferation")):
        precision, k, n = gene_precision(result.top_features, truth, head, latent)
        print(
            f"{head:9s} vs {latent} block: precision@{k} = {precision:.3f}  (chance {k / n:.3f}; a model of "
            f"the genes alone, fitted on the training split: {alone[head]:.3f})"
        )

    session = open_session(checkpoint, manifest, patients)  # the same patients, for the faithfulness check
    targets = {h: head.primary_target for h, head in session.heads.items()}
    print("\n== tiles: AUROC tumour vs stroma (mean over patients; chance 0.5) ==")
    for name, (auroc, n) in tile_aurocs(out, cohort, targets).items():
        print(f"{name:38s} {auroc:.3f}  (n = {n} patients)")

    print("\n== imaging: pointing game (peak inside the lesion) ==")
    for head in targets:
        for modality, (share, chance, n) in pointing_game(out, cohort, head).items():
            print(
                f"{head:9s} {modality:4s} {share:.3f}  (chance: mask share of volume {chance:.3f}; n = {n})"
            )

    print("\n== faithfulness: mean |change| removing the top modality vs a random present one ==")
    for head, (top, rand, other, n) in faithfulness(session, result.contributions).items():
        print(
            f"{head:9s} top {top:.4f}  random present {rand:.4f} (ratio {top / rand:.2f})  random other "
            f"{other:.4f} (ratio {top / other:.2f})  (chance 1.0; n = {n})"
        )

    print("\n== cost: seconds per patient, all heads and modalities, maps included ==")
    cpu = f"CPU, {torch.get_num_threads()} threads"
    print(f"{result.seconds_per_patient:.2f} s on {cpu} ({wall:.0f} s for {len(patients)} patients)")
    if torch.cuda.is_available():
        on_gpu = explain_manifest(
            checkpoint, manifest, args.work / "explained_gpu", patients, accelerator="gpu"
        )
        print(f"{on_gpu.seconds_per_patient:.2f} s on {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
