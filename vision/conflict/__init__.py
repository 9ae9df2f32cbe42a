"""Conflict (fight) detection: pose on crops of close people + motion -> interaction features -> classifier."""
from .features import FEATURE_NAMES, window_features
from .model import DEFAULT_MODEL, ConflictModel
from .observe import CropPose, Observation, Observer

__all__ = ["DEFAULT_MODEL", "FEATURE_NAMES", "ConflictModel", "CropPose", "Observation", "Observer", "window_features"]
