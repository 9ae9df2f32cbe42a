"""Detection, tracking, zones and rules: frames in, zone states and incidents out."""
from .analyser import Analysis, CameraAnalyser, ZoneAnalyser
from .conflict import ConflictModel, CropPose
from .conflict.monitor import ConflictMonitor
from .counting import CountCalibration
from .detections import Detections, Frame, Incident, ZoneState
from .detector import PersonDetector
from .perspective import PerspectiveCheck
from .rules import CrowdingMonitor, Gate, GatheringMonitor, LoiteringMonitor, density_level
from .tiling import TiledDetector, TileGrid
from .zones import ActiveHours, PolygonZone, ZonePresence

__all__ = ["ActiveHours", "Analysis", "CameraAnalyser", "ConflictModel", "ConflictMonitor", "CountCalibration",
           "CropPose", "CrowdingMonitor", "Detections", "Frame", "Gate", "GatheringMonitor", "Incident",
           "LoiteringMonitor", "PersonDetector", "PerspectiveCheck", "PolygonZone", "TileGrid", "TiledDetector", "ZoneAnalyser",
           "ZonePresence", "ZoneState", "density_level"]
