"""fusion: multimodal deep learning for oncology (the README's "Python API" section is the contract)."""

from fusion.api import compose, explain, predict, similar, train
from fusion.data.cohort import Cohort, CohortError
from fusion.modalities.base import Modality, ModalityError
from fusion.model import FusionModel
from fusion.version import __version__ as __version__  # the one version source

__all__ = [
    "Cohort",
    "CohortError",
    "FusionModel",
    "Modality",
    "ModalityError",
    "compose",
    "explain",
    "predict",
    "similar",
    "train",
]
