"""Fusers: {modality: (tokens, present)} -> patient embedding (the contract: `fusion.fusers.base.Fuser`)."""

from fusion.fusers.base import Fuser
from fusion.fusers.concat import ConcatFuser
from fusion.fusers.kronecker import KroneckerFuser
from fusion.fusers.transformer import TransformerFuser

__all__ = ["ConcatFuser", "Fuser", "KroneckerFuser", "TransformerFuser"]
