"""Model weights: found on disk or in a pip package, verified by SHA-256, never random."""
from .weights import KNOWN_WEIGHTS, WeightsNotFound, resolve_weights

__all__ = ["KNOWN_WEIGHTS", "WeightsNotFound", "resolve_weights"]
