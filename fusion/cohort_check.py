"""Check a cohort against a config without training (what `fusion-validate` runs): every problem, all at
once."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from fusion.data.cohort import Cohort, CohortError, Problem
from fusion.data.demo import ensure_demo_cohort
from fusion.data.item_store import ItemStore
from fusion.data.records import collect_records, without_inputs
from fusion.pipeline import build_heads, build_modalities


@dataclass
class ValidationReport:
    manifest: str
    n_patients: int
    present: dict[str, int] = field(default_factory=dict)  # modality -> patients who have it
    labelled: dict[str, int] = field(default_factory=dict)  # head -> patients with a label
    problems: list[Problem] = field(default_factory=list)
    without_inputs: list[str] = field(default_factory=list)  # left out of training, not an error

    def render(self) -> str:
        lines = [f"cohort {self.manifest}: {self.n_patients} patients"]
        lines += [
            f"  modality {m}: {n} present, {self.n_patients - n} missing" for m, n in self.present.items()
        ]
        lines += [
            f"  head {h}: {n} labelled, {self.n_patients - n} unknown" for h, n in self.labelled.items()
        ]
        if self.without_inputs:
            lines.append(
                f"  note: {len(self.without_inputs)} patient(s) have none of the selected modalities and "
                f"will be left out: {', '.join(self.without_inputs)}"
            )
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def validate_cohort(cfg: DictConfig, deep: bool = True) -> ValidationReport:
    """Cheap checks of paths and labels; with `deep`, also read every input as training would."""
    manifest = ensure_demo_cohort(cfg)
    try:  # lenient: a duplicate or empty id is reported with everything else, not alone
        cohort = Cohort.load(manifest, strict=False)
    except CohortError as err:
        return ValidationReport(str(manifest), 0, problems=err.problems)
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    records, problems = collect_records(cohort, modalities, heads)
    problems = [*cohort.id_problems, *problems]
    if deep:
        flagged = {(p.patient_id, p.column) for p in problems}
        # the run's own cache settings: with data.cache=disk a deep validation fills the cache training reuses
        store = ItemStore(
            modalities, cache=cfg.data.get("cache", "memory"), cache_dir=cfg.data.get("cache_dir")
        )
        readable = [
            r for r in records if all((r.patient_id, modalities[m].column) not in flagged for m in r.refs)
        ]
        try:
            store.load_all(readable)
        except CohortError as err:
            problems.extend(err.problems)
    return ValidationReport(
        str(manifest),
        len(records),
        present={m: sum(r.refs[m] is not None for r in records) for m in modalities},
        labelled={h: sum(r.labels[h] is not None for r in records) for h in heads},
        problems=problems,
        without_inputs=without_inputs(records),
    )
