"""Optimistic concurrency: versions as ETags, If-Match as the expected version. Pure: no Django.

Every write bumps a session's version. A writer says which version it read (`If-Match: "7"`);
the store applies the write only if that is still the current version, otherwise the writer
is told the current version and must read again. `If-Match: *` writes whatever the version.
"""

from typing import Final


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
Expected = int | _Any


class PreconditionError(ValueError):
    """The If-Match header is not a version this API issued."""


class VersionMismatch(Exception):
    def __init__(self, *, expected: int, current: int):
        super().__init__(f"expected version {expected}, current version is {current}")
        self.expected = expected
        self.current = current


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> Expected | None:
    """None when absent, ANY for `*`, else the version in `"7"` or `W/"7"`."""
    if header is None:
        return None
    value = header.strip()
    if value == "*":
        return ANY
    if value.startswith("W/"):
        value = value[2:]
    if len(value) < 3 or value[0] != '"' or value[-1] != '"' or not value[1:-1].isdigit():
        raise PreconditionError(
            f"If-Match must be an ETag this API returned, like '\"3\"', or '*'; got {header[:40]!r}"
        )
    return int(value[1:-1])


def matches_none(header: str | None, version: int) -> bool:
    """True when If-None-Match names the current version (the client's copy is fresh)."""
    if not header:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in tags or etag(version) in tags


def check_version(expected: Expected, current: int) -> None:
    if isinstance(expected, int) and expected != current:
        raise VersionMismatch(expected=expected, current=current)
