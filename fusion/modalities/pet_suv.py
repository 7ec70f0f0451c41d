"""Body-weight SUV for DICOM PET: the factor from the header, and the conversion with a clear fallback.

PET scanners store activity concentration (Units ``BQML``, Bq/mL, after RescaleSlope/Intercept).
Body-weight SUV divides it by the injected dose per gram of patient, the dose decayed to the time
the images are decay-corrected to::

    SUV = value * PatientWeight [g] / (RadionuclideTotalDose [Bq] * 2 ** (-elapsed / RadionuclideHalfLife))

with ``elapsed`` = scan reference time - RadiopharmaceuticalStartDateTime (or ...StartTime).

Reference time: with DecayCorrection ``START`` the scanner corrects every image to the start of the
acquisition, which a PET series records as SeriesDate/SeriesTime -- so SeriesTime is used, as the
QIBA/UPICT SUV recipe does. Post-processing may rewrite SeriesTime to a later time; when it lies after
the earliest AcquisitionDate/Time of the slices, or is missing, the earliest AcquisitionTime is used
instead. DecayCorrection ``ADMIN`` (corrected to the injection time) needs no decay term; ``NONE``
(each slice at its own time) is not converted. Units ``GML`` are SUV already (factor 1).

Times without dates: when the injection time is later in the day than the scan, the injection is
taken to be the day before (the scan crossed midnight). With full dates an injection after the scan
is refused. NIfTI PET carries no such header: `read_volume` takes it to hold SUV already.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import torch
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

_DAY = dt.timedelta(days=1)
_NO_DATE = dt.date(2000, 1, 1)  # stands in when a header has times but no dates


class SUVWarning(UserWarning):
    """PET values left as stored because the DICOM header lacks what SUV conversion needs."""


@overload
def _parse(kind: type[DA], value: object) -> dt.date | None: ...
@overload
def _parse(kind: type[TM], value: object) -> dt.time | None: ...
@overload
def _parse(kind: type[DT], value: object) -> dt.datetime | None: ...
def _parse(kind: type, value: object) -> dt.date | dt.time | dt.datetime | None:
    text = str(value or "").strip()
    if kind is TM:
        text = text.replace(":", "")  # ACR-NEMA style 09:30:00
    if not text:
        return None
    try:
        parsed = kind(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=None) if isinstance(parsed, dt.datetime) else parsed


def _moment(date: dt.date | None, time: dt.time | None, fallback_date: dt.date | None) -> dt.datetime | None:
    if time is None:
        return None
    return dt.datetime.combine(date or fallback_date or _NO_DATE, time)


def _positive(ds: Dataset, keyword: str, problems: list[str]) -> float | None:
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        problems.append(keyword)
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{keyword} is unreadable ({value!r})")
        return None
    if not number > 0:
        problems.append(f"{keyword} is {number:g}")
        return None
    return number


def _scan_start(ds: Dataset, slices: Sequence[Dataset]) -> tuple[dt.datetime | None, bool]:
    """(reference time, whether it has a real date): SeriesTime, unless missing or after the first slice."""
    scan_date = _parse(DA, ds.get("SeriesDate")) or _parse(DA, ds.get("AcquisitionDate"))
    scan_date = scan_date or _parse(DA, ds.get("StudyDate"))
    series = _moment(_parse(DA, ds.get("SeriesDate")), _parse(TM, ds.get("SeriesTime")), scan_date)
    acquired = []
    for s in slices or [ds]:
        moment = _parse(DT, s.get("AcquisitionDateTime")) or _moment(
            _parse(DA, s.get("AcquisitionDate")), _parse(TM, s.get("AcquisitionTime")), scan_date
        )
        if moment is not None:
            acquired.append(moment)
    earliest = min(acquired) if acquired else None
    if series is not None and (earliest is None or series <= earliest):
        return series, scan_date is not None
    return earliest, scan_date is not None or any("AcquisitionDateTime" in s for s in slices)


def body_weight_suv(ds: Dataset, slices: Sequence[Dataset] = ()) -> tuple[float | None, list[str]]:
    """(factor turning stored PET values into body-weight SUV, or None; the fields missing or wrong).

    `ds` is a PET slice (or the multi-frame image); `slices` all slices of the series, for the
    earliest AcquisitionTime (defaults to `ds` alone).
    """
    units = str(ds.get("Units", "") or "").strip().upper()
    if units == "GML":
        return 1.0, []
    problems: list[str] = []
    if units != "BQML":
        problems.append(f"Units is '{units}', not BQML" if units else "Units")
    weight = _positive(ds, "PatientWeight", problems)
    drugs = ds.get("RadiopharmaceuticalInformationSequence")
    if not drugs:
        return None, [*problems, "RadiopharmaceuticalInformationSequence"]
    drug = drugs[0]
    dose = _positive(drug, "RadionuclideTotalDose", problems)
    half_life = _positive(drug, "RadionuclideHalfLife", problems)
    correction = str(ds.get("DecayCorrection", "") or "").strip().upper()
    decay: float | None = 1.0
    if correction == "START":
        decay = _decay(ds, slices, drug, half_life, problems)
    elif correction != "ADMIN":
        problems.append(
            f"DecayCorrection is '{correction}', not START or ADMIN" if correction else "DecayCorrection"
        )
    if problems or weight is None or dose is None or decay is None:
        return None, problems
    return weight * 1000.0 / (dose * decay), []


def _decay(
    ds: Dataset, slices: Sequence[Dataset], drug: Dataset, half_life: float | None, problems: list[str]
) -> float | None:
    """2 ** (-elapsed / half_life) from injection to the scan reference time, or None (problems noted)."""
    start, start_dated = _scan_start(ds, slices)
    injected = _parse(DT, drug.get("RadiopharmaceuticalStartDateTime"))
    injected_dated = injected is not None
    if injected is None:
        day = start.date() if start is not None else None
        injected = _moment(None, _parse(TM, drug.get("RadiopharmaceuticalStartTime")), day)
    if start is None:
        problems.append("SeriesTime/AcquisitionTime")
    if injected is None:
        problems.append("RadiopharmaceuticalStartTime/RadiopharmaceuticalStartDateTime")
    if start is None or injected is None or half_life is None:
        return None
    if injected_dated and not start_dated:
        start = dt.datetime.combine(injected.date(), start.time())  # scan times only: the injection's day
    elapsed = start - injected
    if elapsed < dt.timedelta(0):
        if start_dated and injected_dated:
            problems.append(
                f"injection ({injected:%Y-%m-%d %H:%M:%S}) after the scan start ({start:%Y-%m-%d %H:%M:%S})"
            )
            return None
        elapsed += _DAY  # times only: the scan crossed midnight after an evening injection
    return 2.0 ** (-elapsed.total_seconds() / half_life)


def suv_factor(ds: Dataset, slices: Sequence[Dataset] = ()) -> float | None:
    """Body-weight SUV factor of a PET DICOM header (1 for Units GML), or None when fields are missing."""
    return body_weight_suv(ds, slices)[0]


def to_suv(image: torch.Tensor, datasets: Sequence[Dataset], where: Path) -> torch.Tensor:
    """`image` (stored PET values of the series `datasets`) as body-weight SUV.

    When the header cannot give SUV, warns once (`SUVWarning`) naming `where` and what is missing,
    and returns the values as they are: `ImagingModality` then scales them by `pet_suv_max` as if
    they were SUV, so the warning is the user's cue that PET intensities are off.
    """
    factor, problems = body_weight_suv(datasets[0], datasets)
    if factor is None:
        warnings.warn(
            f"'{where}': PET not converted to SUV, values used as stored; header lacks or has unusable: "
            + ", ".join(problems),
            SUVWarning,
            stacklevel=3,
        )
        return image
    return image * factor
