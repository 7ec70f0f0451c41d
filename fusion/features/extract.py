"""Run a frozen tile encoder once over every tile of a cohort: one feature file per patient.

For each patient of a manifest, the histology cell (a slide, a folder of tiles, or already a feature
file) becomes ``<out>/<patient_id>.safetensors`` holding features (N, D) and level-0 coords (N, 2).
Tiles stream through a DataLoader (workers read, the main process encodes under inference mode,
bf16 autocast on CUDA). Runs resume: a patient whose output exists is skipped, and writes are
atomic, so an existing file is always complete. Finally a derived manifest points the histology
column at the feature files, so training reads features instead of pixels.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from fusion.errors import ConfigError, ExtractionError
from fusion.features.sources import MultiSource, TileSource, make_source
from fusion.io.cohort import CohortError, Problem, is_missing, read_table
from fusion.io.feature_files import is_feature_file, write_features
from fusion.io.tables import absent_column_message
from fusion.nn.tile_encoders import TileEncoder

log = logging.getLogger("fusion")
ON_ERROR = ("raise", "skip")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
SIDE_TABLES = ("genomics", "ehr")  # tables the cohort reads beside its manifest by default


@dataclass
class ExtractionReport:
    extracted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # output already there: skipped
    given: list[str] = field(default_factory=list)  # the cell was already a feature file
    failed: dict[str, str] = field(default_factory=dict)
    tiles: int = 0
    seconds: float = 0.0
    manifest: Path | None = None

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds > 0 else 0.0


class _Chunks(Dataset):
    """Item k = tiles [k * chunk, (k + 1) * chunk) of one source; errors come back as values so the
    main process can name the patient without a worker traceback in the message."""

    def __init__(self, source: TileSource, chunk: int):
        self.source, self.chunk = source, chunk

    def __len__(self) -> int:
        return math.ceil(len(self.source) / self.chunk)

    def __getitem__(self, k: int) -> dict[str, Any]:
        start = k * self.chunk
        stop = min(start + self.chunk, len(self.source))
        try:
            return {"tiles": torch.from_numpy(self.source.read(start, stop)), "start": start}
        except Exception as err:  # reported with the patient id by the caller
            return {"error": str(err), "start": start}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """`auto`: bf16 on CUDA, fp32 elsewhere; `bf16` / `fp16` / `fp32` force it."""
    table = {
        "bf16": torch.bfloat16,
        "bf16-mixed": torch.bfloat16,
        "fp16": torch.float16,
        "16-mixed": torch.float16,
    }
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision in ("fp32", "32", "32-true"):
        return None
    if precision not in table:
        raise ConfigError(f"precision must be auto, bf16, fp16 or fp32; got '{precision}'")
    return table[precision]


@torch.inference_mode()
def encode_source(
    source: TileSource,
    encoder: TileEncoder,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    precision: str = "auto",
) -> torch.Tensor:
    """Features (N, D) float32 of every tile of `source`, in coords order; ValueError on a bad tile."""
    loader = DataLoader(
        _Chunks(source, batch_size),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if num_workers > 0 else None,
    )
    dtype = autocast_dtype(precision, device)
    out = torch.empty((len(source), encoder.feature_dim), dtype=torch.float32)
    for item in loader:
        if "error" in item:
            raise ValueError(item["error"])
        tiles = item["tiles"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            feats = encoder(tiles)
        out[item["start"] : item["start"] + len(tiles)] = feats.float().cpu()
    return out


def safe_name(patient_id: str) -> str:
    """A file name for a patient id: characters other than letters, digits, `.`, `_`, `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", patient_id).lstrip(".") or "_"


def extract_cohort(
    manifest: str | Path,
    out: str | Path,
    encoder: TileEncoder,
    *,
    column: str = "histology",
    spec: Any | None = None,
    tile_size: int = 224,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    precision: str = "auto",
    on_error: str = "raise",
    manifest_out: str | Path | None = None,
    suffix: str = ".safetensors",
    progress: bool = True,
) -> ExtractionReport:
    """Extract every patient of `manifest` into `out`, then write the derived manifest (see module doc)."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got '{on_error}'")
    manifest, out = Path(manifest), Path(out)
    frame = read_table(manifest)
    absent = [c for c in ("patient_id", column) if c not in frame.columns]
    if absent:
        problems = [Problem(None, c, absent_column_message(c, frame.columns), str(manifest)) for c in absent]
        raise CohortError(problems, f"manifest '{manifest}'")
    ids = frame["patient_id"].astype(str).tolist()
    names = [safe_name(pid) for pid in ids]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        message = f"patient ids map to the same feature file name: {clashes}"
        raise CohortError([Problem(None, "patient_id", message, str(manifest))], f"manifest '{manifest}'")
    out.mkdir(parents=True, exist_ok=True)
    torch_device = resolve_device(device)
    encoder = encoder.to(torch_device).eval()
    report, results = ExtractionReport(), {}
    job = {
        "column": column,
        "spec": spec,
        "tile_size": tile_size,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "device": torch_device,
        "precision": precision,
        "on_error": on_error,
        "suffix": suffix,
    }
    rows = list(zip(ids, names, frame[column].tolist(), strict=True))
    bar = _progress(len(rows), progress)
    for pid, name, cell in rows:
        bar.set_postfix_str(pid)
        results[pid] = _one_patient(pid, name, cell, manifest.parent, out, encoder, report, job)
        bar.update(1)
    bar.close()
    report.manifest = write_derived_manifest(
        frame, manifest, column, results, manifest_out or out / "manifest.csv"
    )
    if report.failed:
        log.warning("feature extraction failed for %d patient(s): %s", len(report.failed), report.failed)
    log.info(
        "features: %d extracted (%d tiles, %.1f tiles/s), %d resumed, %d given, %d failed; manifest %s",
        len(report.extracted),
        report.tiles,
        report.tiles_per_second,
        len(report.resumed),
        len(report.given),
        len(report.failed),
        report.manifest,
    )
    return report


def _one_patient(
    pid: str,
    name: str,
    cell: object,
    root: Path,
    out: Path,
    encoder: TileEncoder,
    report: ExtractionReport,
    job: dict[str, Any],
) -> Path | None:
    """Extract (or find) one patient's feature file; None when the cell is empty or the patient failed."""
    if is_missing(cell):
        return None
    # several slides of one patient: paths separated by ';' in the cell, read as one bag
    srcs = [Path(part.strip()) for part in str(cell).split(";") if part.strip()]
    srcs = [p if p.is_absolute() else root / p for p in srcs]
    src = srcs[0]
    if len(srcs) == 1 and is_feature_file(src):
        report.given.append(pid)
        return src
    target = out / f"{name}{job['suffix']}"
    if is_feature_file(target):
        report.resumed.append(pid)
        return target
    start = time.perf_counter()
    try:
        parts = [make_source(p, job["tile_size"], job["spec"]) for p in srcs]
        source = parts[0] if len(parts) == 1 else MultiSource(parts)
        features = encode_source(
            source,
            encoder,
            job["device"],
            batch_size=job["batch_size"],
            num_workers=job["num_workers"],
            precision=job["precision"],
        )
    except (ValueError, OSError) as err:
        message = f"patient '{pid}' ({job['column']}: '{';'.join(map(str, srcs))}'): {err}"
        if job["on_error"] == "raise":
            raise ExtractionError(message) from err
        log.error("skipping %s", message)
        report.failed[pid] = message
        return None
    metadata = {
        "patient_id": pid,
        "encoder": encoder.name,
        "weights": encoder.weights_name,
        "tile_size": int(source.tile_size),
        "feature_dim": int(encoder.feature_dim),
        "n_tiles": len(source),
        **source.metadata(),
    }
    extra = {"slide_index": torch.from_numpy(source.slide_index)} if isinstance(source, MultiSource) else None
    write_features(target, features, torch.from_numpy(source.coords), metadata, extra)
    seconds = time.perf_counter() - start
    report.extracted.append(pid)
    report.tiles += len(source)
    report.seconds += seconds
    log.info(
        "patient %s: %d tiles in %.1f s (%.1f tiles/s) -> %s",
        pid,
        len(source),
        seconds,
        len(source) / max(seconds, 1e-9),
        target,
    )
    return target


def write_derived_manifest(
    frame: pd.DataFrame, manifest: Path, column: str, results: dict[str, Path | None], path: str | Path
) -> Path:
    """The input manifest with `column` pointing at feature files, relative to the new manifest's folder.

    When the new manifest lives elsewhere, other cells that are paths relative to the old manifest
    (CT, MRI, ... files) are re-based so they still resolve, and the genomics/EHR tables the cohort
    reads beside its manifest are copied along; labels and everything else are left as they are.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old_root, new_root = manifest.parent.resolve(), path.parent.resolve()
    derived = frame.copy()
    if old_root != new_root:
        for col in derived.columns:
            if col not in ("patient_id", column) and derived[col].dtype == object:
                derived[col] = [_rebase(v, old_root, new_root) for v in derived[col]]
        for table in SIDE_TABLES:
            for suffix in TABLE_SUFFIXES:
                src, dst = old_root / f"{table}{suffix}", new_root / f"{table}{suffix}"
                if src.is_file() and not dst.exists():
                    shutil.copy2(src, dst)
    cells = [results.get(pid) for pid in derived["patient_id"].astype(str)]
    derived[column] = [os.path.relpath(p.resolve(), new_root) if p is not None else "" for p in cells]
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        derived.to_parquet(tmp, index=False)
    else:
        derived.to_csv(tmp, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    os.replace(tmp, path)
    return path


def _rebase(value: object, old_root: Path, new_root: Path) -> object:
    if is_missing(value) or not isinstance(value, str) or Path(value).is_absolute():
        return value
    candidate = old_root / value
    return os.path.relpath(candidate, new_root) if candidate.exists() else value


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with lightning; without it, the per-patient log lines remain

        class _Quiet:
            def set_postfix_str(self, _: str) -> None: ...
            def update(self, _: int) -> None: ...
            def close(self) -> None: ...

        return _Quiet()
    return tqdm(total=total, desc="patients", unit="patient", disable=not enabled)
