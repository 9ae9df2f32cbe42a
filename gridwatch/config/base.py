"""What every part of the config shares: strict models, and problems with a structured location."""
from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Loc = tuple[str | int, ...]


def where(loc: Loc) -> str:
    """A location as the user reads it: ``cameras[3].zones[0].polygon``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


class Problem(NamedTuple):
    """One thing wrong with a config: where (a path of field names and list indexes) and what, with the fix."""

    loc: Loc
    msg: str

    @property
    def where(self) -> str:
        return where(self.loc)


class ConfigProblems(ValueError):
    """Raised by a whole-config check that finds problems in several places; pydantic keeps the exception, so
    each problem's location travels as data (``problems_of``), never as text to be parsed back."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{p.where}: {p.msg}" for p in problems))
