"""SchemaVer version strings and the bump a new version makes."""

import pytest

from profiles.schemas.schemaver import Bump, SchemaVer, VersionError, bump_between, parse_version


def test_a_version_parses_into_its_three_numbers() -> None:
    assert parse_version("2-10-3") == SchemaVer(2, 10, 3)


@pytest.mark.parametrize("text", ["1.0.0", "0-1-0", "1-0", "1-01-0", "1-0-0-0", " 1-0-0", ""])
def test_a_string_that_is_not_schemaver_is_refused(text: str) -> None:
    with pytest.raises(VersionError):
        parse_version(text)


def test_versions_order_by_model_then_revision_then_addition() -> None:
    assert parse_version("1-10-0") > parse_version("1-9-99")


@pytest.mark.parametrize(
    ("old", "new", "bump"),
    [("1-0-0", "1-0-1", Bump.ADDITION), ("1-0-3", "1-1-0", Bump.REVISION), ("1-2-3", "2-0-0", Bump.MODEL)],
)
def test_the_bump_is_the_first_part_that_grew(old: str, new: str, bump: Bump) -> None:
    assert bump_between(parse_version(old), parse_version(new)) == bump


def test_a_version_that_does_not_grow_has_no_bump() -> None:
    with pytest.raises(VersionError):
        bump_between(parse_version("1-1-0"), parse_version("1-0-5"))
