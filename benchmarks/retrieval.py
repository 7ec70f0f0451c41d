"""Similar-patient search: speed at scale, and how alike the retrieved patients are.

(a) scale: query latency for 10³-10⁶ reference embeddings (clustered: 200 Gaussian clusters, the shape of
    fused patient embeddings) of width 64 and 128, exact search (`fusion.retrieval.search.nearest`) vs the
    faiss IVF-Flat index (`faiss_index` + `search_index`, its build timed apart), and faiss recall@10
    against exact, side by side. `--queries` queries per size (100 by default).
(b) quality on a labelled cohort with a trained checkpoint: reference = the checkpoint's training patients
    (`fusion.checkpoint.seen_in_training`), queries = every other patient of the manifest. Acc@k and MVAcc@k
    for grade and response, the neighbours' C-index, and with a truth.csv beside the manifest (demo cohort)
    the hidden-state distance ratio (< 1: neighbours share the hidden state), for the fused embedding and for
    each modality's embedding alone (the same model, the other modalities marked absent), each beside the
    fused embedding on the same query patients.

    python benchmarks/retrieval.py                                  # both parts, the fixtures below
    python benchmarks/retrieval.py --part quality --ckpt BEST.ckpt --manifest COHORT/manifest.csv
    python benchmarks/retrieval.py --part scale --sizes 1000 10000 --dims 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.checkpoint import load_checkpoint, load_model, seen_in_training
from fusion.data.cohort import Cohort
from fusion.pipeline import build_datamodule
from fusion.retrieval.embeddings import fused_embeddings
from fusion.retrieval.quality import hidden_state_ratio, retrieval_metrics
from fusion.retrieval.search import faiss_index, nearest, search_index
from fusion.retrieval.split_metrics import class_labels, survival_labels

CKPT = Path("/work/runs/qs1/checkpoints/best-epoch012.ckpt")
MANIFEST = Path("~/.cache/fusion/demo_cohort/manifest.csv").expanduser()
HIDDEN_STATE = ["aggressiveness", "proliferation", "sensitivity", "spread"]
K = 10


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 200) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    return centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)


def scale(sizes: list[int], dims: list[int], n_queries: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for dim in dims:
        for n in sizes:
            references = clustered(n, dim, rng)
            queries = clustered(n_queries, dim, rng)
            start = time.perf_counter()
            exact, _ = nearest(queries, references, K)
            exact_s = time.perf_counter() - start
            start = time.perf_counter()
            index = faiss_index(references)
            build_s = time.perf_counter() - start
            start = time.perf_counter()
            approx, _ = search_index(index, queries, K, references=references)
            faiss_s = time.perf_counter() - start
            recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(exact, approx, strict=True)])
            rows.append(
                {
                    "d": dim,
                    "references": n,
                    "exact ms/query": 1000 * exact_s / n_queries,
                    "faiss ms/query": 1000 * faiss_s / n_queries,
                    "faiss build s": build_s,
                    "faiss recall@10": recall,
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format="%.3f"))
            del references, index
    return pd.DataFrame(rows)


def quality(ckpt: Path, manifest: Path) -> pd.DataFrame:
    checkpoint = load_checkpoint(ckpt)
    cfg, modalities, heads, lit = load_model(checkpoint)
    cohort = Cohort.load(manifest)
    seen = seen_in_training(checkpoint, cohort.patient_ids)
    if seen is None:
        raise SystemExit(f"{ckpt} holds no training-patient hashes: no reference split to search")
    splits = {
        "train": [p for p, s in zip(cohort.patient_ids, seen, strict=True) if s],
        "test": [p for p, s in zip(cohort.patient_ids, seen, strict=True) if not s],
    }
    cfg.data.num_workers = 0
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits=splits, fit_modalities=False)
    datamodule.setup("test")
    by_id = {r.patient_id: r for records in datamodule.records.values() for r in records}
    truth_file = manifest.parent / "truth.csv"
    truth = (
        pd.read_csv(truth_file, dtype={"patient_id": str}).set_index("patient_id")
        if truth_file.exists()
        else None
    )

    def embed(split: str, only: str | None) -> tuple[list[str], np.ndarray]:
        ids, embeddings, has_any = fused_embeddings(lit.model, datamodule.loader(split), only)
        keep = has_any.numpy()
        return [p for p, k in zip(ids, keep, strict=True) if k], embeddings.numpy()[keep]

    fused = {split: embed(split, None) for split in ("train", "test")}
    rows = [score("fused", fused["train"], fused["test"], by_id, heads, truth)]
    chance = np.random.default_rng(0).integers(0, len(fused["train"][0]), (len(fused["test"][0]), K))
    rows.append(
        score("random neighbours (chance)", fused["train"], fused["test"], by_id, heads, truth, chance)
    )
    for name in modalities:
        alone_refs, alone_queries = embed("train", name), embed("test", name)
        rows.append(score(f"{name} alone", alone_refs, alone_queries, by_id, heads, truth))
        same = set(alone_queries[0])
        rows.append(
            score(f"fused, {name} patients", fused["train"], subset(fused["test"], same), by_id, heads, truth)
        )
    return pd.DataFrame(rows)


def subset(split: tuple[list[str], np.ndarray], ids: set[str]) -> tuple[list[str], np.ndarray]:
    keep = [i for i, p in enumerate(split[0]) if p in ids]
    return [split[0][i] for i in keep], split[1][keep]


def score(label, references, queries, by_id, heads, truth, indices=None) -> dict:
    (ref_ids, ref_emb), (query_ids, query_emb) = references, queries
    if indices is None:
        indices, _ = nearest(query_emb, ref_emb, K)
    refs, qs = [by_id[p] for p in ref_ids], [by_id[p] for p in query_ids]
    classes = {h: (class_labels(qs, h), class_labels(refs, h)) for h in ("grade", "response") if h in heads}
    survival = (
        {"survival": (survival_labels(qs, "survival"), survival_labels(refs, "survival"))}
        if "survival" in heads
        else {}
    )
    row = {"embedding": label, "queries": len(query_ids), "references": len(ref_ids)}
    row.update(
        {k.removeprefix("retrieval_"): v for k, v in retrieval_metrics(indices, classes, survival).items()}
    )
    if truth is not None:
        row["hidden_state_ratio@10"] = hidden_state_ratio(
            truth.loc[query_ids, HIDDEN_STATE].to_numpy(float),
            truth.loc[ref_ids, HIDDEN_STATE].to_numpy(float),
            indices,
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["scale", "quality", "both"], default="both")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ckpt", type=Path, default=CKPT)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    args = parser.parse_args()
    pd.set_option("display.width", 250)
    if args.part in ("scale", "both"):
        print(f"(a) search of {args.queries} queries, k={K}, clustered embeddings")
        scale(args.sizes, args.dims, args.queries)
    if args.part in ("quality", "both"):
        table = quality(args.ckpt, args.manifest.expanduser())
        print(f"\n(b) retrieval quality, {args.ckpt} on {args.manifest}")
        keep = ["embedding", "queries", "references"] + [
            c for c in table.columns if "@5" in c or "@10" in c or "cindex" in c or c.endswith("@1")
        ]
        print(table[keep].to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
