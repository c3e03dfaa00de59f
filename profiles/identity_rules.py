"""Rules that keep identity resolution from merging people who are not one person.

Pure functions: no Django, no database. Accidental merges through junk ids or shared devices
are the most painful bug users of other CDPs report (PostHog keeps a deny list for the same
reason), so these rules are checked before any merge.
"""

from collections.abc import Iterable, Mapping

# Values clients send when they have no real id. Compared case-insensitively after trimming.
DEFAULT_DENY_LIST = frozenset(
    {
        "",
        "0",
        "-1",
        "null",
        "none",
        "nil",
        "nan",
        "undefined",
        "unknown",
        "anonymous",
        "guest",
        "true",
        "false",
        "n/a",
        "na",
        "[object object]",
        "00000000-0000-0000-0000-000000000000",
        "distinctid",
        "distinct_id",
        "id",
        "user_id",
        "email",
        "not_authenticated",
    }
)

# At most this many identities of a kind on one profile: two known users are never merged by a
# shared device or anonymous id.
DEFAULT_LIMITS: Mapping[str, int] = {"user_id": 1}


def is_junk(value: str, deny_list: frozenset[str] = DEFAULT_DENY_LIST) -> bool:
    return value.strip().lower() in deny_list


def limit_violations(identities: Iterable[tuple[str, str]], limits: Mapping[str, int]) -> list[str]:
    """Why the union of these identities cannot live on one profile; empty when it can."""
    values: dict[str, set[str]] = {}
    for kind, value in identities:
        values.setdefault(kind, set()).add(value)
    return [
        f"the merged profile would hold {len(values[kind])} {kind} identities; the limit is {limit}"
        for kind, limit in sorted(limits.items())
        if len(values.get(kind, ())) > limit
    ]


def merge_traits(
    profiles: list[tuple[dict[str, object], dict[str, str], list[str]]],
) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """Merge (traits, trait_times, once_keys) of several profiles: per key the newest value wins
    (times are ISO strings, comparable as text), except keys set with $set_once, which keep
    their first value."""
    traits: dict[str, object] = {}
    times: dict[str, str] = {}
    once: set[str] = set()
    for _, _, once_keys in profiles:
        once.update(once_keys)
    for profile_traits, profile_times, _ in profiles:
        for key, value in profile_traits.items():
            at = profile_times.get(key, "")
            if key not in traits:
                traits[key], times[key] = value, at
                continue
            newer = at > times[key]
            keep_first = key in once
            if (newer and not keep_first) or (keep_first and at and at < times[key]):
                traits[key], times[key] = value, at
    return traits, times, sorted(once)
