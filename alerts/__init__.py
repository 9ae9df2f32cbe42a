"""Alerts and the grid case queues on Redis."""
from .cases import TRANSITIONS, Alert, CaseNotFound, CaseStore, IllegalTransition
from .evidence import EvidenceStore, annotate
from .publisher import AlertPublisher
from .redis_server import EmbeddedValkey

__all__ = ["TRANSITIONS", "Alert", "AlertPublisher", "CaseNotFound", "CaseStore", "EmbeddedValkey",
           "EvidenceStore", "IllegalTransition", "annotate"]
