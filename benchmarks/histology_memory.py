"""Peak memory of histology MIL on bags of precomputed features: training steps and a 100k-tile evaluation.

Each point runs in a fresh subprocess (so earlier allocations cannot hide a peak) through the real
modality path: `HistologyModality(input=features).transform` (subsample to `max_tiles_train` in
training, all tiles in evaluation) -> `collate` -> `build_encoder()` -> forward (+ backward).
Peak RSS is `VmHWM` from /proc, reset after the bag is built (`/proc/self/clear_refs`), so "step
peak" is what one step adds on top of the bag already held in memory (as the data loader would).

    python benchmarks/histology_memory.py            # 1k/10k/100k training + 100k eval, ABMIL and TransMIL
    python benchmarks/histology_memory.py --quick    # 1k/10k training + 20k eval, about 30 s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def run_point(mode: str, n: int, aggregator: str, dim: int, cap: int, embed_dim: int) -> dict[str, object]:
    """One measurement in this process: build the bag, reset the peak, run one step, read the peak."""
    import torch

    from fusion.modalities.histology import HistologyModality

    torch.set_num_threads(2)
    modality = HistologyModality(
        input="features", feature_dim=dim, aggregator=aggregator, max_tiles_train=cap, embed_dim=embed_dim
    )
    torch.manual_seed(0)
    encoder = modality.build_encoder()
    item = {"features": torch.randn(n, dim), "coords": torch.randint(0, 100_000, (n, 2))}
    base = _status_kib("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    if mode == "train":
        encoder.train()
        batch = modality.collate([modality.transform(item, train=True)])
        out = encoder(batch)
        out.pow(2).sum().backward()
    else:
        encoder.eval()
        with torch.no_grad():
            batch = modality.collate([modality.transform(item, train=False)])
            out = encoder(batch)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    return {
        "mode": mode,
        "n": n,
        "aggregator": aggregator,
        "instances_used": int(batch["mask"].sum()),
        "bag_mib": round(n * dim * 4 / 2**20, 1),
        "rss_with_bag_mib": round(base / 1024, 1),
        "peak_mib": round(peak / 1024, 1),
        "step_peak_mib": round((peak - base) / 1024, 1) if reset else None,
        "seconds": round(seconds, 2),
        "finite": bool(torch.isfinite(out).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k/10k training, 20k evaluation")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="training bag sizes")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluation bag size (default 100000)")
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension D")
    parser.add_argument("--cap", type=int, default=4096, help="max_tiles_train")
    parser.add_argument("--embed-dim", type=int, default=64, help="embed_dim (projected instance size)")
    parser.add_argument("--aggregators", nargs="+", default=["abmil", "transmil"])
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: one measurement as JSON
    args = parser.parse_args()
    if args.point:
        mode, n, aggregator = args.point.split(",")
        print(json.dumps(run_point(mode, int(n), aggregator, args.dim, args.cap, args.embed_dim)))
        return
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    eval_size = args.eval_size or (20_000 if args.quick else 100_000)
    points = [("train", n, a) for a in args.aggregators for n in sizes]
    points += [("eval", eval_size, a) for a in args.aggregators]
    print(f"D={args.dim}, max_tiles_train={args.cap}, embed_dim={args.embed_dim}, float32 bags, 2 threads")
    header = "mode   aggregator      N  used  bag MiB  RSS with bag  peak RSS  step peak (MiB)  time (s)"
    print(header)
    started = time.perf_counter()
    for mode, n, aggregator in points:
        command = [sys.executable, __file__, "--point", f"{mode},{n},{aggregator}", "--dim", str(args.dim)]
        command += ["--cap", str(args.cap), "--embed-dim", str(args.embed_dim)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{mode} {aggregator} N={n}: FAILED (exit {done.returncode})\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{r['mode']:<6} {r['aggregator']:<9} {r['n']:>7} {r['instances_used']:>5} {r['bag_mib']:>8} "
            f"{r['rss_with_bag_mib']:>13} {r['peak_mib']:>9} {r['step_peak_mib']!s:>16} {r['seconds']:>9}"
            + ("" if r["finite"] else "  NON-FINITE OUTPUT")
        )
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
