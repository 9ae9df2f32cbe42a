"""Model weights: found on disk or in a pip package, verified by SHA-256, never random; exports cached by checksum."""
from .export import ExportFormat, export_model, export_path
from .weights import KNOWN_WEIGHTS, WeightsNotFound, resolve_weights

__all__ = ["KNOWN_WEIGHTS", "ExportFormat", "WeightsNotFound", "export_model", "export_path", "resolve_weights"]
