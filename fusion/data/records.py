"""From a cohort to per-patient records, with every problem found before any training.

`collect_records` is the one place that asks each modality for its references and each head
for its labels; `fusion-validate` and the data module both go through it, so what validation
reports is exactly what training would trip over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusion.heads.base import Head
from fusion.io.cohort import Cohort, CohortError, Problem
from fusion.modalities.base import Modality


@dataclass
class PatientRecord:
    patient_id: str
    site: str | None = None
    refs: dict[str, Any] = field(default_factory=dict)  # modality -> reference, None when missing
    labels: dict[str, Any] = field(default_factory=dict)  # head -> parsed label, None when unknown

    def has_any_modality(self) -> bool:
        return any(ref is not None for ref in self.refs.values())


def collect_records(
    cohort: Cohort, modalities: dict[str, Modality], heads: dict[str, Head]
) -> tuple[list[PatientRecord], list[Problem]]:
    """Gather references and labels for every patient; check them cheaply; return all problems."""
    problems: list[Problem] = []
    refs: dict[str, dict[str, Any]] = {}
    for name, modality in modalities.items():
        try:
            refs[name] = modality.gather(cohort)
        except CohortError as err:  # a table's own problems (duplicate ids, ids matching no patient)
            problems.extend(err.problems)
            refs[name] = dict.fromkeys(cohort.patient_ids)
        except (OSError, ValueError) as err:
            problems.append(Problem(None, modality.column, f"modality '{name}': {err}"))
            refs[name] = dict.fromkeys(cohort.patient_ids)
    labels: dict[str, dict[str, Any]] = {}
    for name, head in heads.items():
        labels[name], head_problems = head.parse(cohort)
        problems.extend(head_problems)

    sites = cohort.site()
    records = []
    for pid in cohort.patient_ids:
        record = PatientRecord(
            pid, sites[pid], {m: refs[m][pid] for m in modalities}, {h: labels[h][pid] for h in heads}
        )
        for name, ref in record.refs.items():
            if ref is None:
                continue
            for message in modalities[name].check(ref):
                problems.append(Problem(pid, modalities[name].column, message, reference_file(ref)))
        records.append(record)
    return records, problems


def without_inputs(records: list[PatientRecord]) -> list[str]:
    """Patients with none of the selected modalities: nothing to predict from, so they are left out
    (with a warning naming them), not an error — missing data is normal, and a run restricted to
    e.g. genomics + EHR must not fail because a few patients have neither."""
    return [r.patient_id for r in records if not r.has_any_modality()]


def reference_file(ref: Any) -> str | None:
    """The path a reference names (for error messages), or None for table rows."""
    return str(ref) if isinstance(ref, str | bytes) or hasattr(ref, "__fspath__") else None
