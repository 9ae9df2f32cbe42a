"""gridwatch: cameras -> detections -> tracks -> zone states -> incidents -> alerts -> cases.

This package holds what the stages share: the validated config, the runtime
that wires the stages, the service and the CLI. The stages live in the
top-level packages ``streams``, ``vision``, ``models``, ``alerts`` and ``api``.
"""
from .config import ConfigError, GridwatchConfig, load_config, mask_url

__all__ = ["ConfigError", "GridwatchConfig", "load_config", "mask_url"]
