"""Genomic inputs as they come: orientation, MAF calls, gene lists, top-k selection, the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate

import fusion
from fusion.data.cohort import Cohort
from fusion.modalities.genomics import GenomicsModality

GENES = [f"G{i}" for i in range(8)]
PIDS = [f"TCGA-AA-{i:04d}" for i in range(10)]
TRAIN, TEST = PIDS[:7], PIDS[7:]
MAF_HEADER = "#version 2.4\nHugo_Symbol\tTumor_Sample_Barcode\tVariant_Classification\tChromosome\n"


def matrix(seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed).lognormal(1.0, 1.0, size=(len(PIDS), len(GENES)))
    values[:, 3] *= 50  # a clearly more variable gene
    return pd.DataFrame(values, index=pd.Index(PIDS, name="patient_id"), columns=GENES)


def cohort(root: Path, tables: dict[str, str | pd.DataFrame], extra: tuple[str, ...] = ()) -> Cohort:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": [*PIDS, *extra]}).to_csv(root / "manifest.csv", index=False)
    for name, content in tables.items():
        if isinstance(content, str):
            (root / name).write_text(content)
        else:
            content.to_csv(root / name, sep="\t" if name.endswith(".tsv") else ",")
    return Cohort.load(root / "manifest.csv")


def loaded(mod: GenomicsModality, c: Cohort) -> dict[str, np.ndarray]:
    return {pid: mod.load(ref) for pid, ref in mod.gather(c).items() if ref is not None}


def maf(rows: list[tuple[str, str, str]]) -> str:
    return MAF_HEADER + "".join(f"{g}\t{b}\t{v}\t1\n" for g, b, v in rows)


# ------------------------------------------------------------------ orientation
def test_genes_by_patients_is_transposed_to_the_same_items(tmp_path):
    frame = matrix()
    a = loaded(GenomicsModality(name="rna"), cohort(tmp_path / "a", {"rna.csv": frame}))
    transposed = frame.T.rename_axis("gene")
    mod = GenomicsModality(name="rna", orientation="genes_by_patients")
    b = loaded(mod, cohort(tmp_path / "b", {"rna.tsv": transposed}))
    assert mod.genes == GENES and sorted(b) == sorted(PIDS)
    for pid in PIDS:
        np.testing.assert_array_equal(a[pid], b[pid])


def test_genes_by_patients_bad_cell_names_patient_gene_and_file(tmp_path):
    transposed = matrix().T.rename_axis("gene").astype(object)
    transposed.loc["G2", PIDS[4]] = "abc"
    mod = GenomicsModality(name="rna", orientation="genes_by_patients")
    refs = mod.gather(cohort(tmp_path, {"rna.csv": transposed}))
    (problem,) = mod.check(refs[PIDS[4]])
    assert PIDS[4] in problem and "'G2'" in problem and "rna.csv" in problem and "'abc'" in problem
    assert mod.check(refs[PIDS[0]]) == []


@pytest.mark.parametrize("orientation", ["patients_by_genes", "genes_by_patients"])
def test_duplicate_genes_in_a_table_are_named(tmp_path, orientation):
    frame = matrix().rename(columns={"G5": "G1"})
    table = frame if orientation == "patients_by_genes" else frame.T.rename_axis("gene")
    mod = GenomicsModality(name="rna", orientation=orientation)
    with pytest.raises(ValueError, match=r"rna\.csv.*duplicate gene.*\['G1'\]"):
        mod.gather(cohort(tmp_path, {"rna.csv": table}))


def test_duplicate_patient_columns_are_named(tmp_path):
    table = matrix().T.rename_axis("gene").rename(columns={PIDS[2]: PIDS[1]})
    with pytest.raises(ValueError, match=rf"duplicate patient columns \['{PIDS[1]}'\]"):
        GenomicsModality(orientation="genes_by_patients").gather(cohort(tmp_path, {"genomics.csv": table}))


# ------------------------------------------------------------------ MAF
def test_maf_to_binary_with_class_filter_and_barcode_mapping(tmp_path):
    rows = [
        ("TP53", f"{PIDS[0]}-01A-11D-A000-08", "Missense_Mutation"),
        ("TP53", f"{PIDS[0]}-06A-11D-A000-08", "Nonsense_Mutation"),  # a second sample, same patient
        ("KRAS", f"{PIDS[1]}-01A-11D-A000-08", "Silent"),  # filtered out: patient sequenced, all zero
        ("EGFR", f"{PIDS[2]}-01A-11D-A000-08", "Frame_Shift_Del"),
        ("KRAS", "TCGA-ZZ-9999-01A", "Missense_Mutation"),  # not in the manifest: ignored
    ]
    c = cohort(tmp_path, {"mutations.maf": maf(rows)})
    mod = GenomicsModality(name="mutations", format="maf")
    assert mod.value_type == "binary" and not mod.log1p
    refs = mod.gather(c)
    assert mod.table_path == tmp_path / "mutations.maf" and mod.genes == ["EGFR", "KRAS", "TP53"]
    items = {pid: mod.load(ref) for pid, ref in refs.items() if ref is not None}
    assert sorted(items) == PIDS[:3]  # the others have no call: missing by default
    assert items[PIDS[0]].tolist() == [0, 0, 1] and items[PIDS[1]].tolist() == [0, 0, 0]
    assert items[PIDS[2]].tolist() == [1, 0, 0]
    mod.fit(list(items.values()))
    assert mod.selected == ["EGFR", "TP53"]  # KRAS is mutated in no training patient
    assert mod.transform(items[PIDS[0]], train=False).tolist() == [0.0, 1.0]  # no normalisation
    everyone = GenomicsModality(
        name="mutations", format="maf", maf_patients_without_calls="zero", variant_classes=["Silent"]
    )
    refs = everyone.gather(c)
    assert all(refs[pid] is not None for pid in PIDS)
    assert everyone.load(refs[PIDS[1]]).tolist() == [1.0] and everyone.load(refs[PIDS[9]]).tolist() == [0.0]


def test_maf_regex_and_whole_barcode(tmp_path):
    rows = [("TP53", "S-p1-tumour", "Missense_Mutation"), ("BRAF", "S-p2-tumour", "Missense_Mutation")]
    root = tmp_path / "r"
    root.mkdir()
    pd.DataFrame({"patient_id": ["p1", "p2", "S-p1-tumour"]}).to_csv(root / "manifest.csv", index=False)
    (root / "calls.tsv").write_text(maf(rows))
    c = Cohort.load(root / "manifest.csv")
    refs = GenomicsModality(name="m", table="calls.tsv", format="maf", sample_to_patient=r"S-(p\d+)-").gather(
        c
    )
    assert refs["p1"]["TP53"] == 1 and refs["p2"]["BRAF"] == 1 and refs["S-p1-tumour"] is None
    refs = GenomicsModality(name="m", table="calls.tsv", format="maf", barcode_chars=None).gather(c)
    assert refs["p1"] is None and refs["S-p1-tumour"]["TP53"] == 1
    with pytest.raises(ValueError, match=r"calls\.tsv.*\['S-p1-tumour', 'S-p2-tumour'\]"):
        GenomicsModality(name="m", table="calls.tsv", format="maf", sample_to_patient=r"^X(\d)").gather(c)


def test_maf_without_required_columns_names_file_and_columns(tmp_path):
    c = cohort(tmp_path, {"mutations.maf": "Gene\tSample\nTP53\tx\n"})
    with pytest.raises(ValueError, match=r"mutations\.maf.*\['Hugo_Symbol', 'Tumor_Sample_Barcode'\]"):
        GenomicsModality(name="mutations", format="maf").gather(c)


def test_maf_genes_come_from_training_patients_only(tmp_path):
    base = [("TP53", p, "Missense_Mutation") for p in TRAIN[:4]] + [("EGFR", TRAIN[5], "Nonsense_Mutation")]
    states = []
    for k, test_rows in enumerate(
        ([], [("NOVEL1", TEST[0], "Missense_Mutation"), ("TP53", TEST[1], "Silent")])
    ):
        mod = GenomicsModality(name="mutations", format="maf", maf_patients_without_calls="zero")
        items = loaded(mod, cohort(tmp_path / str(k), {"mutations.maf": maf(base + test_rows)}))
        mod.fit([items[p] for p in TRAIN])
        states.append(mod.state_dict())
        assert mod.build_encoder().net[0].in_features == 2
    assert states[0] == states[1] and states[0]["genes"] == ["EGFR", "TP53"]


# ------------------------------------------------------------------ gene selection
def test_gene_list_file_and_absent_genes(tmp_path):
    c = cohort(tmp_path, {"rna.csv": matrix()})
    (tmp_path / "panel.txt").write_text("# panel\nG6\n\nG2\n")
    mod = GenomicsModality(name="rna", gene_list="panel.txt")
    assert mod.load(mod.gather(c)[PIDS[0]]).shape == (2,) and mod.genes == ["G6", "G2"]
    (tmp_path / "bad.txt").write_text("G1\nBRCA1\nTP53\n")
    with pytest.raises(ValueError, match=r"\['BRCA1', 'TP53'\].*rna\.csv"):
        GenomicsModality(name="rna", gene_list="bad.txt").gather(c)
    drop = GenomicsModality(name="rna", gene_list="bad.txt", missing_genes="drop")
    with pytest.warns(UserWarning, match=r"\['BRCA1', 'TP53'\].*dropped"):
        refs = drop.gather(c)
    assert drop.genes == ["G1"] and drop.load(refs[PIDS[0]]).shape == (1,)
    (tmp_path / "dup.txt").write_text("G1\nG2\nG1\n")
    with pytest.raises(ValueError, match=r"dup\.txt.*\['G1'\]"):
        GenomicsModality(name="rna", gene_list="dup.txt").gather(c)


def test_top_k_variance_is_fitted_on_training_patients_only(tmp_path):
    frame = matrix()
    train = np.log1p(frame.loc[TRAIN].to_numpy())
    expected = [GENES[i] for i in sorted(np.argsort(-train.var(axis=0), kind="stable")[:3])]
    low = next(g for g in GENES if g not in expected)
    perturbed = frame.assign(**{low: np.where(frame.index.isin(TEST), 1e6, frame[low])})
    states = []
    for k, table in enumerate((frame, perturbed)):
        mod = GenomicsModality(name="rna", top_k_variance=3, embed_dim=8, hidden=(4,))
        items = loaded(mod, cohort(tmp_path / str(k), {"rna.csv": table}))
        mod.fit([items[p] for p in TRAIN])
        states.append(mod.state_dict())
    assert states[0] == states[1] and states[0]["genes"] == expected
    assert mod.build_encoder().net[0].in_features == 3
    leaky = GenomicsModality(name="rna", top_k_variance=3)
    leaky.gather(Cohort.load(tmp_path / "1" / "manifest.csv"))
    leaky.fit(list(items.values()))  # fitting on everyone would pick the perturbed test values
    assert low in leaky.selected
    assert mod.transform(items[TEST[0]], train=False).shape == (3,)
    # restore in a fresh modality: the next cohort is read with the fitted selection only
    restored = GenomicsModality(name="rna", top_k_variance=1)
    restored.load_state_dict(json.loads(json.dumps(states[0])))
    ref = restored.gather(cohort(tmp_path / "new", {"rna.csv": table[expected]}))[TEST[0]]
    torch.testing.assert_close(
        restored.transform(restored.load(ref), False), mod.transform(items[TEST[0]], False)
    )


def test_value_types_cnv_and_binary_checks(tmp_path):
    cnv = matrix() - 3.0  # negative values are fine without log
    mod = GenomicsModality(name="cnv", value_type="cnv", min_group=1)
    assert not mod.log1p
    items = loaded(mod, cohort(tmp_path / "c", {"cnv.csv": cnv}))
    mod.fit([items[p] for p in TRAIN])
    np.testing.assert_allclose(mod.mean, cnv.loc[TRAIN].mean().to_numpy(), rtol=1e-5)
    binary = GenomicsModality(name="mut", value_type="binary")
    refs = binary.gather(cohort(tmp_path / "b", {"mut.csv": (matrix() > 3).astype(float).assign(G4=2.0)}))
    assert any("'G4'" in p and "not 0/1" in p and PIDS[0] in p for p in binary.check(refs[PIDS[0]]))
    with pytest.raises(ValueError, match="log1p"):
        GenomicsModality(value_type="cnv", log1p=True)
    with pytest.raises(ValueError, match="binary"):
        GenomicsModality(format="maf", value_type="expression")


# ------------------------------------------------------------------ shipped configs
def test_three_genomic_modalities_compose_and_instantiate(tmp_path):
    cfg = fusion.compose(["modality=[rna,mutations,cnv]", "modality.rna.top_k_variance=4"])
    mods = {name: instantiate(cfg.modality[name]) for name in ("rna", "mutations", "cnv")}
    assert {m.name: (m.format, m.value_type, m.log1p) for m in mods.values()} == {
        "rna": ("matrix", "expression", True),
        "mutations": ("maf", "binary", False),
        "cnv": ("matrix", "cnv", False),
    }
    rows = [("TP53", f"{p}-01A", "Missense_Mutation") for p in PIDS[::2]] + [("KRAS", PIDS[1], "Silent")]
    c = cohort(tmp_path, {"rna.csv": matrix(), "cnv.tsv": matrix(1) - 3, "mutations.maf": maf(rows)})
    for name, mod in mods.items():
        items = loaded(mod, c)
        mod.fit([items[p] for p in TRAIN if p in items])
        out = mod.build_encoder()(mod.collate([mod.transform(items[p], True) for p in items]))
        assert out.shape == (len(items), mod.out_dim), name
    assert len(mods["rna"].selected) == 4 and mods["mutations"].selected == ["TP53"]


@pytest.mark.slow
def test_train_and_predict_with_three_genomic_modalities(tmp_path):
    """End to end: fit the selections in training, restore them from the checkpoint to predict."""
    from fusion.data.synthetic import write_demo_cohort

    root = write_demo_cohort(
        tmp_path / "c", n_patients=40, seed=1, volume_shape=(8, 8, 8), tile_size=8, n_genes=16
    ).parent
    g = pd.read_csv(root / "genomics.csv").set_index("patient_id")
    g.T.rename_axis("gene").to_csv(root / "rna.tsv", sep="\t")
    np.log2(g + 1).sub(3).to_csv(root / "cnv.csv")
    calls = [
        (gene, f"{p}-01A", "Missense_Mutation")
        for p in g.index
        for gene in g.columns[:6]
        if g.loc[p, gene] > g[gene].median()
    ]
    (root / "mutations.maf").write_text(maf(calls))
    overrides = [
        "trainer.max_epochs=1", "logger=[csv]", "data.batch_size=8", "fuser.d_model=16",
        "fuser.dim_feedforward=32", "~callbacks.progress_bar", "modality=[rna,mutations,cnv]",
        "modality.rna.orientation=genes_by_patients", "modality.rna.top_k_variance=8",
        "modality.mutations.sample_to_patient='^(.*)-01A'", f"data.manifest={root / 'manifest.csv'}",
    ]  # fmt: skip
    metrics = fusion.train(overrides, output_dir=tmp_path / "run").metrics
    assert "test/survival_cindex" in metrics
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)["fusion"]["modality_state"]
    assert len(state["rna"]["genes"]) == 8 and len(state["cnv"]["genes"]) == 16
    pred = fusion.predict(ckpt, root / "manifest.csv")
    assert pred["risk"].notna().sum() > 0


def test_gene_sets_give_one_token_per_pathway_restricted_to_the_selection(tmp_path):
    ids = [f"P{i}" for i in range(6)]
    pd.DataFrame({"patient_id": ids}).to_csv(tmp_path / "manifest.csv", index=False)
    rng = np.random.default_rng(0)
    genes = {f"G{j}": rng.random(6) * (j + 1) for j in range(5)}
    pd.DataFrame({"patient_id": ids, **genes}).to_csv(tmp_path / "rna.csv", index=False)
    (tmp_path / "sets.gmt").write_text("SET_A\tdesc\tG0\tG1\nSET_B\tdesc\tG3\tG4\tG9\nSET_C\tdesc\tG9\n")
    mod = GenomicsModality(name="rna", gene_sets="sets.gmt", top_k_variance=4, embed_dim=8, hidden=[4])
    refs = mod.gather(Cohort.load(tmp_path / "manifest.csv"))
    items = [mod.load(refs[p]) for p in ids]
    with pytest.warns(UserWarning, match="SET_C"):
        mod.fit(items[:4])  # SET_C shares no gene with the table: dropped with a warning
    assert set(mod.pathways) == {"SET_A", "SET_B"} and "G9" not in mod.pathways["SET_B"]
    assert all(g in mod.selected for genes_ in mod.pathways.values() for g in genes_)
    tokens = mod.build_encoder()(torch.stack([mod.transform(x, train=False) for x in items]))
    assert tokens.shape == (6, 2, 8)
    restored = GenomicsModality(name="rna", embed_dim=8, hidden=[4])
    restored.load_state_dict(mod.state_dict())
    assert restored.pathways == mod.pathways and restored.build_encoder()(tokens.new_zeros(1, 4)).shape == (
        1,
        2,
        8,
    )
