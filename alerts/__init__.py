"""Alerts and the grid case queues on Redis: ingest, delivery, lifecycle, evidence, spool, outputs."""
from .cases import (
                    PRIORITIES,
                    STATES,
                    TRANSITIONS,
                    VERDICTS,
                    Alert,
                    Case,
                    CaseNotFound,
                    CaseStore,
                    DeliveredCase,
                    HistoryEntry,
                    IllegalTransition,
                    incident_id_for,
                    priority_of,
)
from .evidence import EvidenceStore, annotate
from .publisher import AlertPublisher
from .redis_server import EmbeddedValkey

__all__ = ["PRIORITIES", "STATES", "TRANSITIONS", "VERDICTS", "Alert", "AlertPublisher", "Case", "CaseNotFound",
           "CaseStore", "DeliveredCase", "EmbeddedValkey", "EvidenceStore", "HistoryEntry", "IllegalTransition",
           "annotate", "incident_id_for", "priority_of"]
