"""Reading genomic tables as they come: either orientation, MAF mutation calls, gene lists.

Everything here returns a frame indexed by patient_id (str) with one column per gene (str), the
shape `GenomicsModality` expects, and raises a GenomicTableError (a ValueError) naming the file and
the problem (duplicate genes or patients, missing MAF columns, unmappable barcodes) before any training.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.errors import FusionError
from fusion.io.cohort import is_missing, read_table
from fusion.io.tables import absent_column_message, read_header

ORIENTATIONS = ("patients_by_genes", "genes_by_patients")
MAF_REQUIRED = ("Hugo_Symbol", "Tumor_Sample_Barcode")
MAF_CLASS_COLUMN = "Variant_Classification"
#: Protein-changing classes (maftools' default "non-synonymous" set); silent, intronic, UTR... are dropped.
NON_SILENT_CLASSES = (
    "Frame_Shift_Del",
    "Frame_Shift_Ins",
    "Splice_Site",
    "Translation_Start_Site",
    "Nonsense_Mutation",
    "Nonstop_Mutation",
    "In_Frame_Del",
    "In_Frame_Ins",
    "Missense_Mutation",
)


class GenomicTableError(FusionError, ValueError):
    """A genomic table, MAF or gene list that cannot be used as written; names the file and the problem."""


def duplicates(names: Sequence[str]) -> list[str]:
    """Names occurring more than once, sorted."""
    seen = pd.Series([str(n) for n in names])
    return sorted(set(seen[seen.duplicated()]))


def raw_header(path: Path) -> list[str]:
    """The table's column names exactly as written (pandas would rename a duplicate 'g1' to 'g1.1')."""
    return read_header(path)


def read_matrix(path: Path, orientation: str) -> pd.DataFrame:
    """A numeric table as patients x genes, indexed by patient_id.

    ``patients_by_genes``: a `patient_id` column plus one column per gene.
    ``genes_by_patients``: the first column holds gene names, every other column is a patient id;
    transposed on read (how expression matrices usually come out of pipelines).
    """
    if orientation not in ORIENTATIONS:
        raise GenomicTableError(f"orientation must be one of {ORIENTATIONS}, got '{orientation}'")
    header = raw_header(path)
    frame = read_table(path)
    if orientation == "patients_by_genes":
        dup = duplicates(header)
        if dup:
            raise GenomicTableError(f"table '{path}': duplicate gene columns {dup}")
        if "patient_id" not in frame.columns:
            absent = absent_column_message("patient_id", frame.columns)
            raise GenomicTableError(f"table '{path}', column 'patient_id': {absent}")
        ids = frame["patient_id"]
        dup_ids = duplicates([str(v).strip() for v in ids])
        if dup_ids:
            raise GenomicTableError(f"table '{path}': duplicate patient ids {dup_ids}")
        empty = [int(i) + 2 for i, v in ids.items() if is_missing(v)]
        if empty:
            raise GenomicTableError(f"table '{path}': rows {empty} have an empty patient_id")
        frame = frame.assign(patient_id=ids.astype(str).str.strip()).set_index("patient_id")
    else:
        if frame.shape[1] < 2:
            raise GenomicTableError(
                f"table '{path}': genes_by_patients needs a gene column and patient columns"
            )
        dup_ids = duplicates([h.strip() for h in header[1:]])
        if dup_ids:
            raise GenomicTableError(f"table '{path}': duplicate patient columns {dup_ids}")
        genes = frame.iloc[:, 0]
        empty = [int(i) + 2 for i, v in genes.items() if is_missing(v)]
        if empty:
            raise GenomicTableError(f"table '{path}': rows {empty} have an empty gene name (first column)")
        dup = duplicates([str(g).strip() for g in genes])
        if dup:
            raise GenomicTableError(f"table '{path}': duplicate gene rows {dup}")
        frame = frame.iloc[:, 1:].set_axis(genes.astype(str).str.strip().to_list(), axis=0).T
        frame.index = pd.Index([h.strip() for h in header[1:]], name="patient_id")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def barcode_to_patient(barcode: str, pattern: re.Pattern[str] | None, chars: int | None) -> str | None:
    """A sample barcode's patient id: the regex's first group (or whole match), else the first `chars`."""
    barcode = barcode.strip()
    if pattern is not None:
        match = pattern.search(barcode)
        if match is None:
            return None
        return match.group(1) if pattern.groups else match.group(0)
    return barcode if chars is None else barcode[:chars]


def read_maf(
    path: Path,
    variant_classes: Sequence[str] | None = NON_SILENT_CLASSES,
    sample_to_patient: str | None = None,
    barcode_chars: int | None = 12,
) -> tuple[pd.DataFrame, set[str]]:
    """A MAF (tab-separated mutation calls) as a binary patients x genes frame.

    Returns the frame (1.0 = at least one kept call in that gene, 0.0 = none) and the set of every
    patient with any call in the file, so a patient whose calls were all filtered out (only silent
    mutations) counts as sequenced (all zero) rather than missing. `variant_classes` None keeps all.
    """
    wanted = {*MAF_REQUIRED, MAF_CLASS_COLUMN}
    try:
        maf = pd.read_csv(
            path, sep="\t", comment="#", dtype=str, usecols=lambda c: c in wanted, low_memory=False
        )
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as err:
        raise GenomicTableError(f"MAF '{path}': unreadable ({err})") from None
    absent = [c for c in MAF_REQUIRED if c not in maf.columns]
    if absent:
        raise GenomicTableError(
            f"MAF '{path}': required columns {absent} are absent (needs {list(MAF_REQUIRED)})"
        )
    for column in MAF_REQUIRED:
        empty = [int(i) + 2 for i, v in maf[column].items() if is_missing(v)]
        if empty:
            raise GenomicTableError(f"MAF '{path}': column '{column}' is empty on data rows {empty[:10]}")
    pattern = re.compile(sample_to_patient) if sample_to_patient else None
    barcodes = maf["Tumor_Sample_Barcode"].astype(str).str.strip()  # text as written (dtype=str)
    mapping = {b: barcode_to_patient(b, pattern, barcode_chars) for b in barcodes.unique()}
    unmapped = sorted(b for b, p in mapping.items() if p is None)
    if unmapped:
        raise GenomicTableError(
            f"MAF '{path}': sample_to_patient '{sample_to_patient}' matches no patient id in barcodes "
            f"{unmapped[:10]}"
        )
    maf = maf.assign(patient_id=barcodes.map(mapping), gene=maf["Hugo_Symbol"].astype(str).str.strip())
    sequenced = set(maf["patient_id"])
    if variant_classes is not None:
        if MAF_CLASS_COLUMN in maf.columns:
            maf = maf[maf[MAF_CLASS_COLUMN].astype(str).str.strip().isin(set(variant_classes))]
        else:
            warnings.warn(
                f"MAF '{path}' has no '{MAF_CLASS_COLUMN}' column: every call is kept (no class filter)",
                stacklevel=2,
            )
    pairs = maf[["patient_id", "gene"]].drop_duplicates()
    frame = pd.crosstab(pairs["patient_id"], pairs["gene"]).clip(upper=1).astype(np.float64)
    frame = frame.reindex(sorted(sequenced), fill_value=0.0)
    frame.index.name, frame.columns.name = "patient_id", None
    frame.columns = [str(c) for c in frame.columns]
    return frame, sequenced


def read_gene_list(path: Path) -> list[str]:
    """One gene per line; blank lines and '#' comments skipped; a duplicate is an error naming it."""
    if not path.exists():
        raise FileNotFoundError(f"gene list not found: {path}")
    genes = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    genes = [g for g in genes if g]
    if not genes:
        raise GenomicTableError(f"gene list '{path}' names no genes")
    dup = duplicates(genes)
    if dup:
        raise GenomicTableError(f"gene list '{path}': genes listed twice {dup}")
    return genes
