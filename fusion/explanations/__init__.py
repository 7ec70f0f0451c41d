"""fusion-explain / `fusion.explain`: the attribution methods (`fusion.attribution`) run over a manifest with
a trained checkpoint: per-patient files, cohort summaries, report.md and W&B tables."""
