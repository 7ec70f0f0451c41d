"""Precomputed tile features: one file per patient (features + tile coordinates)."""
