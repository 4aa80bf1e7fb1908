"""Visual question answering: a FiLM-conditioned CNN (default) or MUTAN fusion, with its tokenizer and data.

The learner is registered as ``vqa`` (``arch`` film or mutan) in :data:`perception.manifest.MODEL_REGISTRY`.
"""

from perception.vqa.model import VQALearner
from perception.vqa.tokenizer import Tokenizer

__all__ = ["Tokenizer", "VQALearner"]
