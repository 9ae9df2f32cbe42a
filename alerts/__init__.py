"""Alerts and the grid case queues on Redis: ingest, delivery, lifecycle, evidence, spool, outputs."""
from .cases import (
                    PRIORITIES,
                    STATES,
                    TRANSITIONS,
                    VERDICTS,
                    Alert,
                    CaseNotFound,
                    CaseStore,
                    IllegalTransition,
                    incident_id_for,
                    priority_of,
)
from .evidence import EvidenceStore, annotate
from .publisher import AlertPublisher
from .redis_server import EmbeddedValkey

__all__ = ["PRIORITIES", "STATES", "TRANSITIONS", "VERDICTS", "Alert", "AlertPublisher", "CaseNotFound", "CaseStore",
           "EmbeddedValkey", "EvidenceStore", "IllegalTransition", "annotate", "incident_id_for", "priority_of"]
