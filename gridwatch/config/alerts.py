"""Alerts and cases: time limits, delivery, clips, retention, outputs."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .base import _Strict


class CaseLimits(_Strict):
    """Seconds a case may stay in each state before it is escalated to the operator room and the grid's supervisor."""

    new_s: float = Field(default=120.0, gt=0, description="acknowledge within")
    acknowledged_s: float = Field(default=180.0, gt=0, description="dispatch a worker within")
    dispatched_s: float = Field(default=900.0, gt=0, description="worker on site within")
    on_site_s: float = Field(default=1800.0, gt=0, description="resolve (verdict) within")
    resolved_s: float = Field(default=3600.0, gt=0, description="close within")
    repeat: int = Field(default=3, ge=1, le=20, description="escalations per state at most (one per limit period)")
    check_every_s: float = Field(default=1.0, gt=0, le=60, description="how often the escalator looks")


class DeliveryConfig(_Strict):
    claim_timeout_s: float = Field(default=60.0, gt=0, description="a taken case not accepted within this goes to another worker")
    max_deliveries: int = Field(default=3, ge=1, le=100,
                                description="then the case goes to the dead-letter stream and the operators")


class ClipConfig(_Strict):
    enabled: bool = True
    pre_s: float = Field(default=5.0, ge=0, le=60, description="seconds of video before the alert")
    post_s: float = Field(default=5.0, ge=0, le=60, description="seconds of video after the alert")
    max_width: int = Field(default=640, ge=64, le=3840, description="frames are scaled down to this width (memory)")


class RetentionConfig(_Strict):
    evidence_days: float = Field(default=30.0, gt=0, description="snapshots, clips and photos of closed cases")
    feedback_days: float = Field(default=180.0, gt=0, description="evidence of false alarms, kept for re-tuning")


class WebhookOutput(_Strict):
    url: str = Field(pattern=r"^https?://", description="POSTed one JSON event (Frigate-shaped) per case change")
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict)


class MqttOutput(_Strict):
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="gridwatch", pattern=r"^[^#+]+$", description="events go to PREFIX/events")
    username: str | None = None
    password: str | None = None
    qos: int = Field(default=1, ge=0, le=2)


class OutputsConfig(_Strict):
    webhook: WebhookOutput | None = None
    mqtt: MqttOutput | None = None


class AlertsConfig(_Strict):
    cooldown_s: float = Field(default=120.0, ge=0, description="one alert per (camera, zone, kind) within this time")
    evidence_dir: Path | None = Field(default=None, description="default: DATA_DIR/evidence")
    spool_dir: Path | None = Field(default=None, description="alerts wait here while Redis is down; default: DATA_DIR/spool")
    limits: CaseLimits = Field(default_factory=CaseLimits)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
