"""Patient pages: one self-contained HTML file per patient (predictions, survival curve, modalities,
explanations, similar patients, provenance) and an index, rendered from tables alone.

`write_patient_pages` takes tables and plain values (data in, HTML out); `from_heads` describes a
model's heads for it. fusion-predict's `report=patients` gathers those from a checkpoint
(`fusion.report.patient_pages.from_prediction`).
"""

from fusion.report.patient_pages.heads import HeadInfo, from_heads
from fusion.report.patient_pages.ids import PatientIdError, page_stem
from fusion.report.patient_pages.writer import PAGES, write_patient_pages

__all__ = ["PAGES", "HeadInfo", "PatientIdError", "from_heads", "page_stem", "write_patient_pages"]
