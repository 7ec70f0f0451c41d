"""Explanations of a trained model's predictions: modality Shapley values, table feature attributions,
tile and imaging maps, and their cohort summaries (`fusion-explain`, `fusion.explain`)."""
