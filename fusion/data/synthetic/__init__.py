"""Synthetic demo cohort: real file formats (DICOM, NIfTI, PNG, CSV) and a known ground truth.

`write_demo_cohort(out)` writes the folder; `oracle_metrics(out)` gives the best metrics any
model can reach on it (the Bayes-optimal predictions scored against the observed labels).
"""

from fusion.data.synthetic.oracle import oracle_metrics
from fusion.data.synthetic.writer import write_demo_cohort

__all__ = ["oracle_metrics", "write_demo_cohort"]
