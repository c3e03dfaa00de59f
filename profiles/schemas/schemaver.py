"""SchemaVer (`MODEL-REVISION-ADDITION`) version strings. Pure logic: no Django.

MODEL breaks every historical event, REVISION may break some, ADDITION breaks none.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

_PATTERN = re.compile(r"^([1-9][0-9]{0,8})-(0|[1-9][0-9]{0,8})-(0|[1-9][0-9]{0,8})$")


class Bump(StrEnum):
    MODEL = "model"
    REVISION = "revision"
    ADDITION = "addition"


class VersionError(ValueError):
    """Not a SchemaVer string."""


@dataclass(frozen=True, slots=True, order=True)
class SchemaVer:
    model: int
    revision: int
    addition: int

    def __str__(self) -> str:
        return f"{self.model}-{self.revision}-{self.addition}"


def parse_version(text: str) -> SchemaVer:
    match = _PATTERN.match(text) if isinstance(text, str) else None
    if match is None:
        raise VersionError(f"{text!r} is not a SchemaVer version MODEL-REVISION-ADDITION such as 1-0-0")
    model, revision, addition = (int(part) for part in match.groups())
    return SchemaVer(model, revision, addition)


def bump_between(old: SchemaVer, new: SchemaVer) -> Bump:
    """Which part a move from `old` to `new` bumps; `new` must be the greater."""
    if new <= old:
        raise VersionError(f"{new} does not come after {old}")
    if new.model != old.model:
        return Bump.MODEL
    if new.revision != old.revision:
        return Bump.REVISION
    return Bump.ADDITION
