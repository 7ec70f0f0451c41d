"""Per-patient attribution methods (below the run level): what part of one prediction each modality,
table feature, tile or voxel accounts for. `fusion.explanations` runs them over a manifest, writes files."""
