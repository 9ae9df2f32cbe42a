"""Detection, tracking, zones and rules: frames in, zone states and incidents out."""
from .analyser import Analysis, CameraAnalyser, ZoneAnalyser
from .conflict import ConflictModel, CropPose
from .conflict.monitor import ConflictMonitor
from .counting import CountCalibration
from .detections import Detections, Frame, Incident, ZoneState
from .detector import PersonDetector
from .perspective import PerspectiveCheck
from .rules import (
    CrowdingMonitor,
    Gate,
    GatedMonitor,
    GatheringMonitor,
    LoiteringMonitor,
    Monitor,
    ZoneObservation,
    density_level,
)
from .steps import drive, drive_all
from .tiling import TiledDetector, TileGrid
from .tracker import PersonTracker
from .zones import ActiveHours, Inertia, PolygonZone

__all__ = ["ActiveHours", "Analysis", "CameraAnalyser", "ConflictModel", "ConflictMonitor", "CountCalibration",
           "CropPose", "CrowdingMonitor", "Detections", "Frame", "Gate", "GatedMonitor", "GatheringMonitor", "Incident",
           "Inertia", "LoiteringMonitor", "Monitor", "PersonDetector", "PersonTracker", "PerspectiveCheck",
           "PolygonZone", "TileGrid", "TiledDetector", "ZoneAnalyser", "ZoneObservation", "ZoneState", "density_level",
           "drive", "drive_all"]
