"""Genomics and EHR tables of the synthetic cohort (patients missing the modality are absent).

Genomics: log-normal expression of `n_genes` genes named ``GENE001``...; three blocks of genes,
at seeded random columns, load on proliferation, sensitivity and (weakly) spread; the other genes
are noise. EHR: age, sex, stage I-IV (aggressiveness + spread), ECOG 0-2 (spread), smoking
(noise) and LDH (proliferation + spread, ~10% empty cells).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from fusion.data.synthetic.latent import patient_rng

#: (latent, loading) of each gene block; each block has max(1, n_genes // 8) genes
GENE_BLOCKS = (("proliferation", 0.9), ("sensitivity", 0.9), ("spread", 0.5))
STAGES = ("I", "II", "III", "IV")
STAGE_CUTS = (-1.0, 0.0, 1.0)
ECOG_CUTS = (0.3, 1.3)
SMOKING = ("never", "former", "current")
SMOKING_WEIGHTS = (0.45, 0.35, 0.20)
LDH_MISSING_RATE = 0.1


def gene_names(n_genes: int) -> list[str]:
    width = max(3, len(str(n_genes)))
    return [f"GENE{g + 1:0{width}d}" for g in range(n_genes)]


def gene_blocks(n_genes: int, seed: int) -> dict[str, list[str]]:
    """latent -> the genes loading on it (seeded positions among the columns)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"gene-blocks"), n_genes])
    order = rng.permutation(n_genes)
    k = max(1, n_genes // 8)
    names = gene_names(n_genes)
    return {
        latent: [names[g] for g in sorted(order[b * k : (b + 1) * k])]
        for b, (latent, _) in enumerate(GENE_BLOCKS)
    }


def gene_parameters(n_genes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base log-expression (G,), noise sd (G,), loadings (G, blocks)) of the genes: every gene's mean,
    spread and signed loading on each `GENE_BLOCKS` latent (0 off its block; some genes down-regulated)."""
    names = gene_names(n_genes)
    rng = np.random.default_rng([seed, zlib.crc32(b"gene-params"), n_genes])
    base = rng.normal(2.0, 1.0, size=n_genes)
    noise_sd = rng.uniform(0.4, 0.8, size=n_genes)
    loadings = np.zeros((n_genes, len(GENE_BLOCKS)))
    column = {name: g for g, name in enumerate(names)}
    for b, (latent, genes) in enumerate(gene_blocks(n_genes, seed).items()):
        strength = dict(GENE_BLOCKS)[latent]
        for gene in genes:  # some genes are down-regulated
            loadings[column[gene], b] = strength * (1.0 if rng.uniform() < 0.75 else -1.0)
    return base, noise_sd, loadings


def gene_truth(n_genes: int, seed: int) -> pd.DataFrame:
    """``gene, latent, loading``: every signal gene, the latent its block loads on, its signed loading."""
    loadings = gene_parameters(n_genes, seed)[2]
    column = {name: g for g, name in enumerate(gene_names(n_genes))}
    rows = [
        (gene, latent, float(loadings[column[gene], b]))
        for b, (latent, genes) in enumerate(gene_blocks(n_genes, seed).items())
        for gene in genes
    ]
    return pd.DataFrame(rows, columns=["gene", "latent", "loading"])


def genomics_table(patients: pd.DataFrame, n_genes: int, seed: int) -> pd.DataFrame:
    """`patient_id` + expression columns for the patients with `has_genomics`."""
    names = gene_names(n_genes)
    base, noise_sd, loadings = gene_parameters(n_genes, seed)
    rows = patients[patients["has_genomics"]]
    latents = rows[[latent for latent, _ in GENE_BLOCKS]].to_numpy()
    noise = np.array([patient_rng(seed, int(i), "genomics").standard_normal(n_genes) for i in rows.index])
    log_expr = base + latents @ loadings.T + noise.reshape(len(rows), n_genes) * noise_sd
    table = pd.DataFrame(np.round(np.exp(log_expr), 3), columns=names)
    table.insert(0, "patient_id", rows["patient_id"].to_numpy())
    return table


def _ehr_row(seed: int, index: int, patient: pd.Series) -> dict[str, object]:
    rng = patient_rng(seed, index, "ehr")
    z = rng.standard_normal(3)
    a, p, m = patient["aggressiveness"], patient["proliferation"], patient["spread"]
    stage = STAGES[int(np.searchsorted(STAGE_CUTS, 0.7 * a + 0.9 * m + 0.6 * z[0]))]
    ecog = int(np.searchsorted(ECOG_CUTS, 0.8 * m + 0.8 * z[1]))
    smoking = SMOKING[int(np.searchsorted(np.cumsum(SMOKING_WEIGHTS), rng.uniform()))]
    ldh = round(float(190.0 * np.exp(0.09 * p + 0.09 * m + 0.15 * z[2])), 1)
    if rng.uniform() < LDH_MISSING_RATE:
        ldh = np.nan
    return {
        "patient_id": patient["patient_id"],
        "age": int(patient["age"]),
        "sex": patient["sex"],
        "stage": stage,
        "ecog": ecog,
        "smoking": smoking,
        "ldh": ldh,
    }


def ehr_table(patients: pd.DataFrame, seed: int) -> pd.DataFrame:
    """EHR rows for the patients with `has_ehr`."""
    rows = [_ehr_row(seed, int(i), row) for i, row in patients[patients["has_ehr"]].iterrows()]
    columns = ["patient_id", "age", "sex", "stage", "ecog", "smoking", "ldh"]
    return pd.DataFrame(rows, columns=columns)
