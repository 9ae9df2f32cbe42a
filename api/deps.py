"""Dependencies: what a request handler needs, taken from the app's state (no globals)."""
from __future__ import annotations

from pathlib import Path

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


def get_redis_url(request: Request) -> str:
    return request.app.state.redis_url


def get_config_path(request: Request) -> Path | None:
    """The YAML file admin changes are saved to; None when the config was built in code (the demo, tests)."""
    return request.app.state.config_path


def set_config(request: Request, cfg: GridwatchConfig) -> None:
    """The app serves ``cfg`` from now on (an admin change); the one writer of the app's config."""
    request.app.state.config = cfg
