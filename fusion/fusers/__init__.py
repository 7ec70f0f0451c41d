"""Fusers: {modality: (tokens, present)} -> patient embedding."""

from fusion.fusers.concat import ConcatFuser
from fusion.fusers.kronecker import KroneckerFuser
from fusion.fusers.transformer import TransformerFuser

__all__ = ["ConcatFuser", "KroneckerFuser", "TransformerFuser"]
