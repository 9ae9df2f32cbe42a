"""Loading and saving: a YAML file in, the validated config out (or every problem with its place); saved as written."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from streams.urls import mask_url, restore_secrets

from .base import ConfigProblems, Loc, Problem
from .model import GridwatchConfig


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` each with their place, ``str()`` the report for the user."""

    def __init__(self, path: Path | str, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: invalid configuration ({len(problems)} problem{'s' * (len(problems) != 1)})"]
        lines += [f"  {p.where}: {p.msg}" for p in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple) -> Loc:
    """pydantic's location without its validator tags (``function-after[...]``)."""
    return tuple(p for p in loc if isinstance(p, int) or not (p in ("function-after", "function-before") or "[" in p))


def problems_of(err: ValidationError) -> list[Problem]:
    """Each problem with its place; a whole-config check's problems keep the places they were raised with."""
    out = []
    for e in err.errors():
        loc = _loc(e["loc"])
        raised = (e.get("ctx") or {}).get("error")
        if isinstance(raised, ConfigProblems):
            out += [Problem(loc + p.loc, mask_url(p.msg)) for p in raised.problems]
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("missing",):
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; check its spelling against examples/gridwatch.yaml"
        out.append(Problem(loc, mask_url(msg)))
    return out


def parse_config(data: dict, source: str = "<config>", base: Path | None = None) -> GridwatchConfig:
    """Validate a config; ``base`` is the folder its relative paths belong to (default: the working folder)."""
    try:
        return GridwatchConfig.model_validate(data, context={"base": base} if base is not None else None)
    except ValidationError as err:
        raise ConfigError(source, problems_of(err)) from None


def load_config(path: Path | str) -> GridwatchConfig:
    """Read and validate a YAML config; relative paths in it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(path, [Problem(("(file)",), f"cannot read: {err.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(path, [Problem((where,), f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(path, [Problem((), "expected a mapping with grids: and cameras:")])
    base = path.resolve().parent
    cfg = parse_config(data, str(path), base).resolve_paths(base)
    from vision.counting import calibration_problems  # the check lives beside CountCalibration

    if problems := calibration_problems(cfg):
        raise ConfigError(path, problems)
    return cfg


def keep_secret(new_url: str | None, old_url: str | None) -> str | None:
    """An edited URL that comes back with the masked password (``***``) keeps the stored one.

    The API never shows camera passwords, so an admin who edits anything else
    sends the masked URL back; this restores the password (or ``password=`` query
    value) only for the same scheme, host, port and user. Otherwise the ``***``
    stays and the caller asks for the password: a stored password is never sent
    to a host it was not typed for.
    """
    return restore_secrets(new_url, old_url)


def written_data(cfg: GridwatchConfig) -> dict:
    """The config as its user wrote it: the keys they set (``exclude_unset``), relative paths, no derived values."""
    return cfg.written.model_dump(mode="json", exclude_unset=True)


def save_config(cfg: GridwatchConfig, path: Path | str) -> None:
    """Write the config as its user wrote it (plus their edits), as YAML, atomically (no reader sees half a file)."""
    path = Path(path)
    data = written_data(cfg)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    tmp.replace(path)
