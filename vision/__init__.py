"""Detection, tracking, zones and rules: frames in, zone states and incidents out."""
from .analyser import Analysis, CameraAnalyser
from .detections import Detections, Frame, Incident, ZoneState
from .detector import PersonDetector
from .rules import ConflictMonitor, CrowdingMonitor
from .zones import PolygonZone

__all__ = ["Analysis", "CameraAnalyser", "ConflictMonitor", "CrowdingMonitor", "Detections", "Frame",
           "Incident", "PersonDetector", "PolygonZone", "ZoneState"]
