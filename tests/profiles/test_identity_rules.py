from profiles.identity_rules import is_junk, limit_violations, merge_traits


def test_junk_ids_are_recognised_whatever_their_case_and_spaces() -> None:
    assert all(is_junk(v) for v in ("null", " Undefined ", "0", "ANONYMOUS", "", "[object Object]"))


def test_real_ids_are_not_junk() -> None:
    assert not any(is_junk(v) for v in ("u-1", "ann@example.com", "42"))


def test_two_user_ids_break_the_default_limit() -> None:
    problems = limit_violations([("user_id", "a"), ("user_id", "b"), ("anonymous_id", "x")], {"user_id": 1})
    assert problems == ["the merged profile would hold 2 user_id identities; the limit is 1"]


def test_many_anonymous_ids_are_within_limits() -> None:
    assert limit_violations([("anonymous_id", str(i)) for i in range(20)], {"user_id": 1}) == []


def test_newest_value_wins_per_key() -> None:
    traits, times, _ = merge_traits(
        [
            ({"plan": "free", "name": "Ann"}, {"plan": "2026-01-01", "name": "2026-03-01"}, []),
            ({"plan": "pro", "name": "Annie"}, {"plan": "2026-02-01", "name": "2026-01-01"}, []),
        ]
    )
    assert traits == {"plan": "pro", "name": "Ann"}
    assert times == {"plan": "2026-02-01", "name": "2026-03-01"}


def test_set_once_keys_keep_their_first_value() -> None:
    traits, _, once = merge_traits(
        [
            ({"first_seen": "2026-05-01"}, {"first_seen": "2026-05-01T00:00:00"}, ["first_seen"]),
            ({"first_seen": "2026-01-01"}, {"first_seen": "2026-01-01T00:00:00"}, []),
        ]
    )
    assert traits == {"first_seen": "2026-01-01"}
    assert once == ["first_seen"]
