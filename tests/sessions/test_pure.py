"""The pure parts of sessions: JSON Merge Patch (RFC 7386) and version checks. No Django."""

import pytest

from sessions.concurrency import (
    ANY,
    PreconditionError,
    VersionMismatch,
    check_version,
    etag,
    matches_none,
    parse_if_match,
)
from sessions.merge_patch import PatchError, json_depth, merge_patch

# RFC 7386, Appendix A: target, patch, result.
RFC_7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7386_EXAMPLES)
def test_merge_patch_matches_rfc_7386_appendix_a(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


def test_merge_patch_leaves_its_arguments_unchanged() -> None:
    target = {"cart": {"items": 1, "coupon": "X"}}
    merge_patch(target, {"cart": {"coupon": None}})
    assert target == {"cart": {"items": 1, "coupon": "X"}}


def test_depth_past_the_limit_is_refused_without_recursion() -> None:
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    with pytest.raises(PatchError):
        json_depth(deep)


def test_etag_round_trips_through_if_match() -> None:
    assert parse_if_match(etag(7)) == 7


def test_weak_etag_is_accepted_as_if_match() -> None:
    assert parse_if_match('W/"7"') == 7


def test_star_if_match_means_any_version() -> None:
    assert parse_if_match("*") is ANY


def test_junk_if_match_is_refused() -> None:
    with pytest.raises(PreconditionError):
        parse_if_match("7")


def test_stale_version_reports_the_current_one() -> None:
    with pytest.raises(VersionMismatch) as raised:
        check_version(3, 5)
    assert (raised.value.expected, raised.value.current) == (3, 5)


def test_any_version_passes_the_check() -> None:
    check_version(ANY, 5)


def test_if_none_match_with_the_current_etag_matches() -> None:
    assert matches_none('"4", "5"', 5)
