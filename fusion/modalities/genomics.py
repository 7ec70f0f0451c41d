"""Genomics: one numeric vector per patient (expression, mutations, copy number) from a table.

gather  the table (either orientation) or a MAF, as patients x genes; a gene list narrows the genes
load    the genes as float32, NaN kept (a missing measurement is not an error)
fit     on the training patients only: the gene selection (top-k variance, MAF genes mutated in
        training) and per-gene mean / std (log1p first for expression; none for binary), each from at
        least `min_group` training values (`privacy.py`): a gene with fewer is treated as missing (0)
encode  a self-normalising MLP (SNN), as in PathomicFusion's genomic branch; its input size is
        the fitted selection's
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusion.io import genomic
from fusion.io.cohort import is_missing
from fusion.io.gmt import read_gmt
from fusion.modalities.privacy import MIN_GROUP, checked_min_group
from fusion.modalities.table import TableModality, group_mean_std, select_table_columns, to_number
from fusion.nn.pathways import PathwayEncoder
from fusion.nn.snn import SNN

if TYPE_CHECKING:
    from fusion.io.cohort import Cohort

FORMATS = ("matrix", "maf")
VALUE_TYPES = ("expression", "binary", "cnv")
MISSING_GENES = ("raise", "drop", "zero")
WITHOUT_CALLS = ("missing", "zero")


class GenomicsModality(TableModality):
    """Per-patient gene vector -> (n, embed_dim).

    Args:
        name: modality key; also the default table name (`<name>.csv|.tsv|.parquet`, or `.maf`).
        table: table path (relative to the manifest folder).
        on_error: ``raise`` or ``drop_modality`` for a broken row.
        genes: genes to use, in this order; None = every gene of the table.
        log1p: ``log(1 + x)`` before z-scoring; None = on for ``expression`` only.
        embed_dim / hidden / dropout: SNN output size, hidden widths, AlphaDropout rate.
        input_noise: sd of the Gaussian noise added to the z-scored genes in training (`fusion.nn.noise`),
            ridge-like shrinkage for a genomics-only model on a small cohort; 0 = none (the default: inside
            fusion it did not help, experiments/ablation/README.md). Not for binary calls.
        format: ``matrix`` (a numeric table) or ``maf`` (mutation calls -> binary matrix).
        orientation: ``patients_by_genes`` or ``genes_by_patients`` (first column gene names).
        value_type: ``expression`` (log1p + z-score), ``binary`` (no normalisation), ``cnv``
            (z-score, no log); None = ``binary`` for a MAF, else ``expression``.
        gene_list: file with one gene per line (relative to the manifest folder), instead of `genes`.
        missing_genes: listed genes absent from the table: ``raise``, ``drop`` (warn), ``zero`` (MAF only:
            a gene without calls is all zero).
        top_k_variance: keep the k most variable genes of the training patients (after the list).
        variant_classes: MAF classes kept; None = the non-silent ones.
        sample_to_patient: regex mapping a MAF barcode to patient_id (first group, else the match).
        barcode_chars: without a regex, the first N barcode characters (12 = TCGA); None = whole barcode.
        maf_patients_without_calls: manifest patients absent from the MAF: ``missing`` or ``zero``.
        gene_sets: a GMT file (relative to the manifest folder): one token per gene set
            (`fusion.nn.pathways.PathwayEncoder`) instead of one SNN embedding; None = the SNN.
        other_token: with `gene_sets`, one more token over the selected genes that are in no set.
        min_group: the fewest training values behind a stored per-gene mean / std (`privacy.py`).
    """

    needs_fit = True

    def __init__(
        self,
        name: str = "genomics",
        table: str | Path | None = None,
        on_error: str = "raise",
        genes: Sequence[str] | None = None,
        log1p: bool | None = None,
        embed_dim: int = 64,
        hidden: int | Sequence[int] = (128,),
        dropout: float = 0.1,
        input_noise: float = 0.0,
        format: str = "matrix",  # noqa: A002 - the config key users write
        orientation: str = "patients_by_genes",
        value_type: str | None = None,
        gene_list: str | Path | None = None,
        missing_genes: str = "raise",
        top_k_variance: int | None = None,
        variant_classes: Sequence[str] | None = None,
        sample_to_patient: str | None = None,
        barcode_chars: int | None = 12,
        maf_patients_without_calls: str = "missing",
        gene_sets: str | Path | None = None,
        other_token: bool = False,
        min_group: int = MIN_GROUP,
    ):
        super().__init__(name=name, table=table, on_error=on_error)
        where = f"modality '{name}'"
        for key, value, allowed in (
            ("format", format, FORMATS),
            ("orientation", orientation, genomic.ORIENTATIONS),
            ("value_type", value_type or "binary", VALUE_TYPES),
            ("missing_genes", missing_genes, MISSING_GENES),
            ("maf_patients_without_calls", maf_patients_without_calls, WITHOUT_CALLS),
        ):
            if value not in allowed:
                raise ValueError(f"{where}: {key} must be one of {allowed}, got '{value}'")
        self.format, self.orientation = format, orientation
        self.value_type = value_type or ("binary" if format == "maf" else "expression")
        if format == "maf" and self.value_type != "binary":
            raise ValueError(f"{where}: format=maf gives a binary matrix; value_type must be binary")
        if missing_genes == "zero" and format != "maf":
            raise ValueError(f"{where}: missing_genes=zero is for format=maf (absent from a MAF = no call)")
        self.log1p = self.value_type == "expression" if log1p is None else bool(log1p)
        if self.log1p and self.value_type != "expression":
            raise ValueError(f"{where}: log1p is for expression values, not value_type={self.value_type}")
        if genes is not None and gene_list is not None:
            raise ValueError(f"{where}: give genes or gene_list, not both")
        self.genes: list[str] | None = None if genes is None else [str(g) for g in genes]
        if self.genes is not None and genomic.duplicates(self.genes):
            raise ValueError(f"{where}: genes listed twice: {genomic.duplicates(self.genes)}")
        if self.genes is not None and not self.genes:
            raise ValueError(f"{where}: genes is an empty list (use null for all columns)")
        if top_k_variance is not None and int(top_k_variance) < 1:
            raise ValueError(f"{where}: top_k_variance must be a positive integer or null")
        self.gene_list, self.missing_genes = gene_list, missing_genes
        self.top_k_variance = None if top_k_variance is None else int(top_k_variance)
        self.variant_classes = None if variant_classes is None else [str(c) for c in variant_classes]
        self.sample_to_patient, self.barcode_chars = sample_to_patient, barcode_chars
        self.maf_patients_without_calls = maf_patients_without_calls
        self.embed_dim = int(embed_dim)
        self.hidden = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.input_noise = float(input_noise)
        self.min_group = checked_min_group(min_group, where)
        if not self.input_noise >= 0.0:
            raise ValueError(f"{where}: input_noise must be >= 0 (an sd in z-score units), got {input_noise}")
        if self.input_noise > 0 and self.value_type == "binary":
            raise ValueError(f"{where}: input_noise is for continuous values; a 0/1 call would drown in it")
        self._requested = None if self.genes is None else list(self.genes)  # what the user asked for
        self._restored = False  # genes fixed by load_state_dict: the checkpoint's selection
        self.selected: list[str] | None = None
        self.gene_sets, self.other_token = gene_sets, bool(other_token)
        self._gene_sets_path: Path | None = None
        self.pathways: dict[str, list[str]] | None = None  # the GMT restricted to the selected genes
        self._keep: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.usable: np.ndarray | None = None  # genes with min_group training values (others: 0)

    # ----------------------------------------------------------------- cohort side
    def gather(self, cohort: Cohort) -> dict[str, Any]:
        """patient_id -> the patient's row (pd.Series named by patient_id), None when missing."""
        path = cohort.find_table(self.name, self.table)
        if path is None and self.format == "maf":
            path = next(
                (p for s in (".maf", ".maf.gz") if (p := cohort.root / f"{self.name}{s}").exists()), None
            )
        if path is None:
            return dict.fromkeys(cohort.patient_ids)
        if not path.exists():
            raise FileNotFoundError(f"modality '{self.name}': table not found: {path}")
        self.table_path = path
        if self.gene_sets is not None:
            self._gene_sets_path = cohort.resolve(self.gene_sets)
        if self.gene_list is not None and not self._restored and self._requested is None:
            self._requested = genomic.read_gene_list(cohort.resolve(self.gene_list))
            self.genes = list(self._requested)
        sequenced: set[str] = set()
        if self.format == "maf":
            classes = genomic.NON_SILENT_CLASSES if self.variant_classes is None else self.variant_classes
            frame, sequenced = genomic.read_maf(path, classes, self.sample_to_patient, self.barcode_chars)
        elif self.orientation == "genes_by_patients":
            frame = genomic.read_matrix(path, self.orientation)
        else:
            dup = genomic.duplicates(genomic.raw_header(path))
            if dup:
                raise ValueError(f"table '{path}': duplicate gene columns {dup}")
            frame = cohort.table(path)  # its ids checked against the manifest's there
        if self.format == "maf" or self.orientation == "genes_by_patients":
            cohort.check_joined_ids(frame.index, path)
        frame = self.select_columns(frame)
        zero = self.format == "maf" and self.maf_patients_without_calls == "zero"
        refs: dict[str, Any] = {}
        for pid in cohort.patient_ids:
            if pid in frame.index:
                refs[pid] = frame.loc[pid]
            elif zero or pid in sequenced:
                refs[pid] = pd.Series(0.0, index=frame.columns, name=pid)
            else:
                refs[pid] = None
        return refs

    def select_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The configured genes (all when none are); absent ones per `missing_genes`; kept for load."""
        if self.genes is None:
            self.genes = [str(c) for c in frame.columns]
        absent = [g for g in self.genes if g not in frame.columns]
        if absent and self.format == "maf" and (self._restored or self.missing_genes == "zero"):
            return frame.reindex(columns=self.genes, fill_value=0.0)  # no call in the MAF = not mutated
        if absent and self.missing_genes == "drop" and not self._restored:
            warnings.warn(
                f"modality '{self.name}': genes {absent} not found in table '{self.table_path}'; dropped",
                stacklevel=2,
            )
            self.genes = [g for g in self.genes if g in frame.columns]
            if not self.genes:
                raise ValueError(
                    f"modality '{self.name}': none of the listed genes is in '{self.table_path}'"
                )
        return select_table_columns(frame, self.genes, f"modality '{self.name}': genes", self.table_path)

    def check(self, ref: Any) -> list[str]:
        """Every non-numeric, infinite, (log1p) negative or (binary) non-0/1 cell, naming its column."""
        return [] if ref is None else self._parse(ref)[1]

    # ----------------------------------------------------------------- data side
    def load(self, ref: pd.Series) -> np.ndarray:
        """The row's genes as a float32 vector; empty cells become NaN."""
        values, problems = self._parse(ref)
        if problems:
            raise ValueError("; ".join(problems))
        return values

    def fit(self, items: list[Any]) -> None:
        """Gene selection and per-gene mean/std from the training items only."""
        if not items:
            raise ValueError(f"modality '{self.name}': fit() got no training items")
        matrix = np.stack([self._scale(item) for item in items])
        keep = np.arange(matrix.shape[1])
        if self.format == "maf" and self._requested is None:  # genes mutated in some training patient
            keep = keep[np.nansum(matrix, axis=0) > 0]
        if self.top_k_variance is not None and len(keep) > self.top_k_variance:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN gene
                var = np.nan_to_num(np.nanvar(matrix[:, keep], axis=0), nan=-1.0)
            keep = np.sort(keep[np.argsort(-var, kind="stable")[: self.top_k_variance]])
        if len(keep) == 0:
            raise ValueError(f"modality '{self.name}': no gene left after selection on the training patients")
        genes = self._genes()
        self.selected, self._keep = [genes[i] for i in keep], keep
        if self._gene_sets_path is not None:  # gene names only, no patient values: nothing can leak
            self.pathways = read_gmt(self._gene_sets_path, genes=self.selected)
        if self.value_type == "binary":
            self.mean, self.std, self.usable = np.zeros(len(keep)), np.ones(len(keep)), None
        else:
            self.mean, self.std, self.usable = group_mean_std(
                matrix[:, keep], self.selected, self.min_group, self.name
            )

    def transform(self, item: Any, train: bool) -> torch.Tensor:
        """Selected genes, log1p + z-score with the fitted state; missing values become 0."""
        if self.mean is None or self.std is None or self._keep is None:
            raise RuntimeError(
                f"modality '{self.name}': transform() called before fit(); fit on the training items "
                "or load_state_dict() from a checkpoint first"
            )
        x = self._scale(item)
        if x.shape[0] != len(self._genes()):
            raise ValueError(
                f"modality '{self.name}': item has {x.shape[0]} genes, fitted on {len(self._genes())}"
            )
        z = np.nan_to_num((x[self._keep] - self.mean) / self.std, nan=0.0)
        if self.usable is not None:
            z = np.where(self.usable, z, 0.0)
        return torch.from_numpy(z.astype(np.float32))

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> nn.Module:
        if self.mean is None:
            raise RuntimeError(
                f"modality '{self.name}': build_encoder() needs fit() or load_state_dict() first"
            )
        assert self.selected is not None  # fit() and load_state_dict() set it with the mean
        if self.pathways:
            return PathwayEncoder(
                self.selected,
                self.pathways,
                d_token=self.embed_dim,
                hidden=self.hidden[0],
                dropout=self.dropout,
                other_token=self.other_token,
                input_noise=self.input_noise,
            )
        return SNN(len(self.mean), self.hidden, self.embed_dim, self.dropout, self.input_noise)

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        if self.mean is None or self.std is None:
            return {}
        return {
            "genes": list(self.selected or []),
            "log1p": self.log1p,
            "value_type": self.value_type,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            **({} if self.usable is None else {"usable": [bool(v) for v in self.usable]}),
            "pathways": self.pathways,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the fitted selection: later gathers read exactly these genes (no list, no top-k)."""
        if not state:
            return
        self.genes = list(state["genes"])
        self.selected, self._keep, self._restored = list(self.genes), np.arange(len(self.genes)), True
        self.log1p = bool(state["log1p"])
        self.value_type = str(state.get("value_type", self.value_type))
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)
        usable = state.get("usable")  # absent: binary calls, or a checkpoint from before min_group
        self.usable = None if usable is None else np.asarray(usable, dtype=bool)
        self.pathways = state.get("pathways")

    # ----------------------------------------------------------------- helpers
    def _genes(self) -> list[str]:
        if self.genes is None:
            raise RuntimeError(f"modality '{self.name}': genes unknown; call gather() on a cohort first")
        return self.genes

    def _parse(self, row: pd.Series) -> tuple[np.ndarray, list[str]]:
        """The genes as float32 (NaN = empty) and the problems, each naming patient, column and file."""
        genes = self.genes if self.genes is not None else [str(c) for c in row.index]
        where = f"patient '{row.name}', " if row.name is not None else ""
        where += f"table '{self.table_path}', " if self.table_path is not None else ""
        absent = [g for g in genes if g not in row.index]
        if absent:
            return np.full(len(genes), np.nan, np.float32), [f"{where}gene columns {absent} are absent"]
        cells, problems = row[genes], []
        if pd.api.types.is_numeric_dtype(cells.dtype) and not pd.api.types.is_bool_dtype(cells.dtype):
            values = cells.to_numpy(dtype=np.float64, na_value=np.nan)  # fast path: numeric table
        else:
            values = pd.to_numeric(cells.astype(object), errors="coerce").to_numpy(
                np.float64, na_value=np.nan
            )
            for i in np.flatnonzero(np.isnan(values)):  # coerced: empty, or text to check one by one
                if not is_missing(cells.iloc[i]):
                    try:
                        values[i] = to_number(cells.iloc[i])
                    except ValueError as err:
                        problems.append(f"{where}gene column '{genes[i]}': {err}")
        for i in np.flatnonzero(np.isinf(values)):
            problems.append(f"{where}gene column '{genes[i]}': infinite value {values[i]}")
        if self.log1p:
            for i in np.flatnonzero(values < 0):
                problems.append(
                    f"{where}gene column '{genes[i]}': negative value {values[i]} cannot be "
                    "log1p-transformed (set log1p=false for data that is already log-scaled or centred)"
                )
        if self.value_type == "binary":
            for i in np.flatnonzero(~np.isnan(values) & (values != 0) & (values != 1)):
                problems.append(f"{where}gene column '{genes[i]}': value {values[i]} is not 0/1 (binary)")
        return values.astype(np.float32), problems

    def _scale(self, item: Any) -> np.ndarray:
        x = np.asarray(item, dtype=np.float64)
        return np.log1p(x) if self.log1p else x
