"""Per-patient attribution methods (below the run level): what part of one prediction each modality,
table feature, tile or voxel accounts for. `fusion.explain` runs them over a manifest and writes files."""
