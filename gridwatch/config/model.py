"""The whole config: its parts, the checks across them, and the runtime copy with paths resolved."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, ValidationInfo, model_validator

from streams.urls import UnsafeSource, check_source, is_file_url, scheme_of

from .alerts import AlertsConfig
from .auth import AuthConfig
from .base import ConfigProblems, Problem, _Strict
from .cameras import Camera, Grid
from .detector import DetectorConfig
from .settings import FleetConfig, IngestConfig, LiveConfig, Settings


class GridwatchConfig(_Strict):
    grids: list[Grid] = Field(min_length=1)
    cameras: list[Camera] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    settings: Settings = Field(default_factory=Settings)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    fleet: FleetConfig = Field(default_factory=FleetConfig)

    @model_validator(mode="after")
    def _references(self) -> "GridwatchConfig":
        problems: list[Problem] = []
        seen: dict[str, int] = {}
        for i, g in enumerate(self.grids):
            if g.id in seen:
                problems.append(Problem(("grids", i, "id"), f"grid id {g.id!r} is already used by grids[{seen[g.id]}]"))
            seen.setdefault(g.id, i)
        for i, g in enumerate(self.grids):
            if g.parent is not None and g.parent not in seen:
                problems.append(Problem(("grids", i, "parent"), f"{g.parent!r} is not a grid in this file"))
        cams: dict[str, int] = {}
        for i, c in enumerate(self.cameras):
            if c.id in cams:
                problems.append(Problem(("cameras", i, "id"),
                                        f"camera id {c.id!r} is already used by cameras[{cams[c.id]}]"))
            cams.setdefault(c.id, i)
            if c.grid not in seen:
                problems.append(Problem(("cameras", i, "grid"),
                                        f"{c.grid!r} is not a grid in this file; add it under grids:"))
        if problems:
            raise ConfigProblems(problems)
        return self

    @model_validator(mode="after")
    def _local_files(self, info: ValidationInfo) -> "GridwatchConfig":
        """Local video files only from settings.media_dirs: FFmpeg would read any file the server can.

        Relative paths resolve against ``base`` in the validation context (the config
        file's folder, as ``resolve_paths`` will), else against the working folder.
        """
        base = (info.context or {}).get("base") if info is not None else None
        problems: list[Problem] = []
        for i, c in enumerate(self.cameras):
            for name in ("url", "view_url"):
                url = getattr(c, name)
                if url is None or not is_file_url(url):
                    continue
                try:
                    check_source(url, self.settings.media_dirs, field=name, base=base)
                except UnsafeSource as err:
                    problems.append(Problem(("cameras", i, name), err.reason))
        if problems:
            raise ConfigProblems(problems)
        return self

    # The file as its user wrote it, and the folder its relative paths belong to; set on the runtime copy that
    # resolve_paths makes. Saving writes the written form back, so derived values never reach the user's file.
    _written: "GridwatchConfig | None" = PrivateAttr(default=None)
    _base: Path | None = PrivateAttr(default=None)

    @property
    def written(self) -> "GridwatchConfig":
        """This config as its user wrote it (relative paths, no derived values): what the admin API shows and saves."""
        return self._written if self._written is not None else self

    @property
    def base(self) -> Path | None:
        """The folder relative paths resolve against (the config file's); None for a config never resolved."""
        return self._base

    def resolve_paths(self, base: Path) -> "GridwatchConfig":
        """The runtime copy: file paths absolute against ``base`` (the config file's folder), defaults under
        ``settings.data_dir`` filled in; this config stays as written and travels with the copy (``written``)."""
        written = self.written
        runtime = written.model_copy(deep=True)
        runtime._resolve_in_place(Path(base))
        runtime._written, runtime._base = written, Path(base)
        return runtime

    def _resolve_in_place(self, base: Path) -> None:
        for cam in self.cameras:
            if scheme_of(cam.url) == "" and not Path(cam.url).is_absolute():
                cam.url = str(base / cam.url)
            if cam.view_url and scheme_of(cam.view_url) == "" and not Path(cam.view_url).is_absolute():
                cam.view_url = str(base / cam.view_url)
        s, a = self.settings, self.alerts
        s.media_dirs = [d if d.is_absolute() else base / d for d in s.media_dirs]
        if not s.data_dir.is_absolute():
            s.data_dir = base / s.data_dir
        if a.evidence_dir is None:
            a.evidence_dir = s.data_dir / "evidence"
        elif not a.evidence_dir.is_absolute():
            a.evidence_dir = base / a.evidence_dir
        au = self.auth
        au.accounts_file = s.data_dir / "accounts.yaml" if au.accounts_file is None else base / au.accounts_file
        au.secret_file = s.data_dir / "session.key" if au.secret_file is None else base / au.secret_file
        if a.spool_dir is None:
            a.spool_dir = s.data_dir / "spool"
        elif not a.spool_dir.is_absolute():
            a.spool_dir = base / a.spool_dir
        self.detector.weights_dirs = [d if d.is_absolute() else base / d for d in self.detector.weights_dirs]
        if self.detector.export_dir is None:
            self.detector.export_dir = s.data_dir / "cache" / "exports"
        elif not self.detector.export_dir.is_absolute():
            self.detector.export_dir = base / self.detector.export_dir
        for cam in self.cameras:
            for z in cam.zones:
                if z.count_calibration is not None and not z.count_calibration.is_absolute():
                    z.count_calibration = base / z.count_calibration

    def camera(self, camera_id: str) -> Camera:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)
