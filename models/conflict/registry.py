"""Conflict classifier versions: the shipped ones, and those ``gridwatch conflict retrain`` made from a site's verdicts.

A version is a ``ConflictModel`` JSON file and, beside it, ``<version>.scores.json``: how it scored when it was made
(the base data's cross-validation grouped by source video, the site's held-back verdicts, against the version that
was active then), its parent, when it was made and from how much data. Versions made here live in
``settings.data_dir/models/conflict/``; the shipped ones are ``models/conflict/conflict-*.json`` of the package
(``vision.conflict.model.DEFAULT_MODEL`` is the one a config without ``settings.conflict_model`` runs).

Which version runs is the config's ``settings.conflict_model``: activating one (or rolling back to an older one)
changes the config and publishes it on the ``ConfigChannel``, so every worker of a fleet switches together.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vision.conflict.model import DEFAULT_MODEL, ConflictModel

if TYPE_CHECKING:
    from gridwatch.config import GridwatchConfig
    from gridwatch.configsync import ConfigChannel

SHIPPED_DIR = Path(__file__).resolve().parent
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FIELD = ("settings", "conflict_model")
log = logging.getLogger(__name__)


class UnknownVersion(ValueError):
    """A version name that is neither shipped nor made here; the message lists the versions there are."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"no conflict model version {name!r}; the versions are: {', '.join(known)}")


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    shipped: bool
    scores: dict = field(default_factory=dict)

    @property
    def created(self) -> float:
        return float(self.scores.get("created_ts") or 0.0)

    def summary(self, active: str | None = None, default: str | None = None) -> dict:
        """What the admin page and ``gridwatch conflict versions`` show."""
        s = self.scores
        return {"name": self.name, "shipped": self.shipped, "active": self.name == active,
                "default": self.name == default, "parent": s.get("parent"), "created": s.get("created"),
                "base_cv": s.get("base_cv"), "parent_base_cv": s.get("parent_base_cv"),
                "held_back": s.get("held_back"), "training": s.get("training"),
                "promoted": s.get("promoted"), "decision": s.get("decision")}


def _shipped_scores(path: Path) -> dict:
    """A shipped model's own cross-validation (its JSON's ``meta.cv``), in the scores file's shape."""
    try:
        meta = json.loads(path.read_text()).get("meta", {})
    except (OSError, ValueError):
        return {}
    cv = meta.get("cv") or {}
    keep = ("accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn")
    base_cv = {k: cv[k] for k in keep if k in cv} or None
    if base_cv:
        base_cv["rule"] = "its training's own CV (meta.cv; not retrain's rule: retrain scores it again)"
    return {"created": meta.get("trained"), "base_cv": base_cv,
            "training": {"data": meta.get("trained_on")} if meta.get("trained_on") else None}


class Registry:
    """The versions one config can run: shipped (read-only) and made here (``folder``)."""

    def __init__(self, folder: Path, shipped_dir: Path = SHIPPED_DIR, default: Path = DEFAULT_MODEL):
        self.folder, self.shipped_dir, self.default_path = Path(folder), Path(shipped_dir), Path(default)

    @classmethod
    def for_config(cls, cfg: GridwatchConfig) -> "Registry":
        return cls(Path(cfg.settings.data_dir) / "models" / "conflict")

    @property
    def default(self) -> str:
        return self.default_path.stem

    def _shipped(self) -> dict[str, Path]:
        out = {p.stem: p for p in sorted(self.shipped_dir.glob("conflict-*.json"))}
        out.setdefault(self.default, self.default_path)
        return out

    def versions(self) -> list[Version]:
        """Shipped versions first (by name), then the versions made here, oldest first."""
        out = [Version(n, p, True, _shipped_scores(p)) for n, p in self._shipped().items()]
        made = []
        if self.folder.is_dir():
            for p in self.folder.glob("*.json"):
                if p.name.endswith(".scores.json") or not NAME.match(p.stem) or p.stem in self._shipped():
                    continue
                made.append(Version(p.stem, p, False, self._scores(p.stem)))
        return out + sorted(made, key=lambda v: (v.created, v.name))

    def names(self) -> list[str]:
        return [v.name for v in self.versions()]

    def _scores(self, name: str) -> dict:
        try:
            return json.loads((self.folder / f"{name}.scores.json").read_text())
        except (OSError, ValueError):
            return {}

    def get(self, name: str) -> Version:
        for v in self.versions():
            if v.name == name:
                return v
        raise UnknownVersion(name, self.names())

    def active_name(self, cfg: GridwatchConfig) -> str:
        return cfg.settings.conflict_model or self.default

    def active(self, cfg: GridwatchConfig) -> Version:
        """The version ``cfg`` runs; an unknown name is a config error naming ``settings.conflict_model``."""
        from gridwatch.config import ConfigError, Problem

        try:
            return self.get(self.active_name(cfg))
        except UnknownVersion as err:
            raise ConfigError("config", [Problem(FIELD, str(err))]) from None

    def load(self, name: str) -> ConflictModel:
        return ConflictModel.load(self.get(name).path)

    def new_name(self, now: float | None = None) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
        name, k = f"conflict-site-{stamp}", 1
        while (self.folder / f"{name}.json").exists() or name in self._shipped():
            k += 1
            name = f"conflict-site-{stamp}-{k}"
        return name

    def add(self, model: ConflictModel, scores: dict, name: str | None = None) -> Version:
        """Store a new version (the model's meta names it); its scores beside it. Written atomically, scores last:
        a listed version always has its model file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = name or self.new_name()
        if not NAME.match(name) or name in self._shipped():
            raise ValueError(f"version name {name!r}: letters, digits, '.', '_', '-', not a shipped version's")
        model.meta = {**model.meta, "version": name}
        scores = {**scores, "version": name}
        for path, text in ((self.folder / f"{name}.json", json.dumps(model.to_json(), indent=1) + "\n"),
                           (self.folder / f"{name}.scores.json", json.dumps(scores, indent=1) + "\n")):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
        return Version(name, self.folder / f"{name}.json", False, scores)

    def record(self, name: str, **fields) -> None:
        """Add fields to a made version's scores file (e.g. when it was activated)."""
        if name in self._shipped():
            return
        path = self.folder / f"{name}.scores.json"
        data = {**self._scores(name), **fields}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)


def with_conflict_model(cfg: GridwatchConfig, name: str | None) -> GridwatchConfig:
    """``cfg`` with ``settings.conflict_model`` set (None: the shipped default), validated as written and resolved as
    ``cfg`` was."""
    from gridwatch.config import GridwatchConfig, written_data

    data = written_data(cfg)
    settings = dict(data.get("settings") or {})
    if name is None:
        settings.pop("conflict_model", None)
    else:
        settings["conflict_model"] = name
    data["settings"] = settings
    base = cfg.base
    written = GridwatchConfig.model_validate(data, context={"base": base} if base else None)
    return written.resolve_paths(base) if base is not None else written


def activate(cfg: GridwatchConfig, name: str, *, channel: ConfigChannel | None = None, config_path: Path | None = None,
             actor: str = "gridwatch", registry: Registry | None = None) -> tuple[GridwatchConfig, int | None]:
    """Make ``name`` the version every worker runs: the config changed, saved to ``config_path`` (when given) and
    published on ``channel`` (when given; the workers apply it within about a second). Rolling back is activating an
    older version. Returns the new config and the published config version."""
    from gridwatch.config import save_config

    registry = registry or Registry.for_config(cfg)
    registry.get(name)  # UnknownVersion lists the versions there are
    new = with_conflict_model(cfg, name)  # by name, also the default: an upgrade's new default must not move it
    if config_path is not None:
        save_config(new, config_path)
    version = channel.publish(new, actor) if channel is not None else None
    registry.record(name, activated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), activated_by=actor)
    return new, version


def model_for(cfg: GridwatchConfig) -> ConflictModel | None:
    """The conflict model version ``cfg`` runs (``settings.conflict_model``, else the shipped default), loaded once
    per process and named by its version; None when no zone runs the conflict rule (nothing is loaded). An unknown
    version is a config error naming ``settings.conflict_model``: the pipeline checks it before it starts."""
    from vision.conflict.monitor import shared_model

    v = Registry.for_config(cfg).active(cfg)
    if not any(z.conflict.enabled for c in cfg.cameras for z in c.zones):
        return None
    return shared_model(v.path, v.name)
