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


TraitState = tuple[dict[str, object], dict[str, str], list[str]]


def traits_taken(survivor: TraitState, loser: TraitState, merged: TraitState) -> dict[str, list[object] | None]:
    """The keys a merge took from the loser (the merged profile has the loser's value and time),
    each with what the survivor had before: [value, time], or None when it had no such trait."""
    survivor_traits, survivor_times, _ = survivor
    loser_traits, loser_times, _ = loser
    merged_traits, merged_times, _ = merged
    taken: dict[str, list[object] | None] = {}
    for key, value in loser_traits.items():
        loser_has = (value, loser_times.get(key, ""))
        if key not in merged_traits or (merged_traits[key], merged_times.get(key, "")) != loser_has:
            continue  # the survivor's own value won
        if key not in survivor_traits:
            taken[key] = None
        elif (survivor_traits[key], survivor_times.get(key, "")) != loser_has:
            taken[key] = [survivor_traits[key], survivor_times.get(key, "")]
    return taken


def unmerge_traits(
    current: TraitState, loser: TraitState, taken: Mapping[str, list[object] | None], survivor_once: list[str]
) -> TraitState:
    """The survivor's traits once the loser is given back: each key the merge took from the
    loser that still holds the loser's value and time goes back to what the survivor had (or
    goes, if it had none); a key set since the merge keeps its newer value. Once-keys that only
    the loser brought go with it."""
    traits, times, once = dict(current[0]), dict(current[1]), set(current[2])
    loser_traits, loser_times, loser_once = loser
    for key, before in taken.items():
        if key not in traits or (traits[key], times.get(key, "")) != (loser_traits.get(key), loser_times.get(key, "")):
            continue
        if before is None:
            traits.pop(key)
            times.pop(key, None)
        else:
            traits[key], times[key] = before[0], str(before[1])
    once -= set(loser_once) - set(survivor_once)
    return traits, times, sorted(once)
