from profiles.trait_ops import TraitOps, apply, fold, parse


def test_plain_keys_and_set_overwrite() -> None:
    traits, _, _ = apply({"plan": "free"}, {}, [], parse({"plan": "pro", "$set": {"city": "Oslo"}}))
    assert traits == {"plan": "pro", "city": "Oslo"}


def test_set_once_writes_only_missing_keys() -> None:
    traits, _, once = apply({"first": "a"}, {}, [], parse({"$set_once": {"first": "b", "source": "ad"}}))
    assert traits == {"first": "a", "source": "ad"}
    assert once == ["first", "source"]


def test_unset_removes_keys_and_their_times() -> None:
    traits, times, _ = apply({"a": 1, "b": 2}, {"a": "t", "b": "t"}, [], parse({"$unset": ["a"]}))
    assert (traits, times) == ({"b": 2}, {"b": "t"})


def test_set_records_when_each_key_was_set() -> None:
    ops = parse({"plan": "pro"})
    ops.set_at = "2026-11-23T10:00:00+00:00"
    _, times, _ = apply({}, {}, [], ops)
    assert times == {"plan": "2026-11-23T10:00:00+00:00"}


def test_fold_keeps_order_of_set_then_unset() -> None:
    ops = fold(parse({"a": 1, "b": 2}), parse({"$unset": ["a"]}))
    assert apply({}, {}, [], ops)[0] == {"b": 2}


def test_fold_keeps_order_of_unset_then_set() -> None:
    ops = fold(parse({"$unset": ["a"]}), parse({"a": 3}))
    assert apply({"a": 1}, {}, [], ops)[0] == {"a": 3}


def test_fold_keeps_the_first_set_once() -> None:
    ops = fold(parse({"$set_once": {"first": "x"}}), parse({"$set_once": {"first": "y"}}))
    assert ops.set_once == {"first": "x"}


def test_empty_ops_are_false() -> None:
    assert not TraitOps()
