"""Sensor fusion for manipulation: a self-supervised multimodal encoder with corruption detection and modality
compensation (``fusion_encoder``), and its dataset format. See ``docs/fusion.md``."""

from perception.fusion.dataset import FusionDataset, contact_labels, write_dataset
from perception.fusion.learner import OBJECTIVES, FusionEncoderLearner, corrupt
from perception.fusion.network import FUSIONS, MODALITIES, FusionEncoderNet

__all__ = ["FUSIONS", "MODALITIES", "OBJECTIVES", "FusionDataset", "FusionEncoderLearner", "FusionEncoderNet",
           "contact_labels", "corrupt", "write_dataset"]
