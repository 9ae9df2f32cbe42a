"""Dependencies: what a request handler needs, taken from the app's state (no globals)."""
from __future__ import annotations

from fastapi import Request

from alerts import CaseStore, EvidenceStore
from gridwatch.config import GridwatchConfig
from gridwatch.telemetry import Telemetry


def get_store(request: Request) -> CaseStore:
    return request.app.state.store


def get_config(request: Request) -> GridwatchConfig:
    return request.app.state.config


def get_telemetry(request: Request) -> Telemetry:
    return request.app.state.telemetry


def get_evidence(request: Request) -> EvidenceStore:
    return request.app.state.evidence
