"""fusion-explain / `fusion.explain`: run the attribution methods (`fusion.attribution`) over a manifest with a
trained checkpoint; write per-patient files, cohort summaries, report.md and W&B tables."""
