"""The one validated configuration model: grids, cameras, zones and their rules.

Everything gridwatch does is driven from this model (as Frigate does), so every
stage reads its settings from here and a bad file is refused before anything
starts, with the place of each mistake. Split as Frigate splits its config:

* ``cameras``: grids, cameras and zones
* ``rules``: crowding, conflict, loitering, gathering
* ``detector``, ``alerts``, ``auth``, ``settings``: one part each
* ``model``: the whole config, the checks across its parts, the runtime copy
* ``files``: loading and saving (as written)

Values derived from what the user wrote (a crowding threshold from density x
area, paths resolved against the file's folder) live in private attributes or in
the runtime copy, never in the user's fields, so saving writes back what was written.
"""
from streams.urls import mask_url

from .alerts import (
                     AlertsConfig,
                     CaseLimits,
                     ClipConfig,
                     DeliveryConfig,
                     MqttOutput,
                     OutputsConfig,
                     RetentionConfig,
                     WebhookOutput,
)
from .auth import AuthConfig
from .base import ConfigProblems, Problem
from .cameras import Camera, GeoPolygon, Grid, Zone
from .detector import DetectorConfig
from .files import ConfigError, keep_secret, load_config, parse_config, problems_of, save_config, written_data
from .model import GridwatchConfig
from .rules import (
                     CONFLICT_FPS,
                     CONFLICT_OPERATING_POINTS,
                     DENSITY_LEVELS,
                     ConflictPoint,
                     ConflictRule,
                     CrowdingRule,
                     GatheringRule,
                     LoiteringRule,
                     conflict_point,
)
from .settings import FleetConfig, IngestConfig, LiveConfig, Settings

__all__ = ["CONFLICT_FPS", "CONFLICT_OPERATING_POINTS", "DENSITY_LEVELS", "AlertsConfig", "AuthConfig", "Camera",
           "CaseLimits", "ClipConfig", "ConfigError", "ConfigProblems", "conflict_point", "ConflictPoint",
           "ConflictRule", "CrowdingRule", "DeliveryConfig", "DetectorConfig", "FleetConfig", "GatheringRule",
           "GeoPolygon", "Grid", "GridwatchConfig", "IngestConfig", "keep_secret", "LiveConfig", "load_config",
           "LoiteringRule", "mask_url", "MqttOutput", "OutputsConfig", "parse_config", "Problem", "problems_of",
           "RetentionConfig", "save_config", "Settings", "WebhookOutput", "written_data", "Zone"]
