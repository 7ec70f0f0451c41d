"""Prediction heads: tumour grade, survival risk, treatment response."""

from fusion.heads.base import Head
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead

__all__ = ["GradeHead", "Head", "ResponseHead", "SurvivalHead"]
