"""The incremental computed-trait math, without a database."""

from datetime import UTC, date, datetime

from profiles.computed import Definition, Occurrence, apply, matches, merge_states, prune, value


def _event(name: str, day: int, **props: object) -> Occurrence:
    return Occurrence(name=name, timestamp=datetime(2026, 11, day, 12, tzinfo=UTC), channel="web", properties=props)


ORDERS = Definition(name="order_count", kind="count", event_name="Order Completed")
LTV = Definition(name="lifetime_value", kind="sum", event_name="Order Completed", property="total")


def test_count_counts_matching_events() -> None:
    state = apply(ORDERS, apply(ORDERS, None, _event("Order Completed", 1)), _event("Order Completed", 2))
    assert value(ORDERS, state, date(2026, 11, 2)) == 2


def test_sum_adds_a_numeric_property_and_skips_others() -> None:
    state = apply(LTV, None, _event("Order Completed", 1, total=30.5))
    state = apply(LTV, state, _event("Order Completed", 2, total="oops"))
    assert value(LTV, state, date(2026, 11, 2)) == 30.5


def test_windowed_count_forgets_days_outside_the_window() -> None:
    weekly = Definition(name="orders_7d", kind="count", event_name="Order Completed", window_days=7)
    state = None
    for day in (1, 5, 10):
        state = apply(weekly, state, _event("Order Completed", day))
    assert value(weekly, state, date(2026, 11, 10)) == 2
    assert value(weekly, state, date(2026, 11, 20)) == 0


def test_prune_drops_old_buckets() -> None:
    weekly = Definition(name="orders_7d", kind="count", event_name="Order Completed", window_days=7)
    state = apply(weekly, apply(weekly, None, _event("Order Completed", 1)), _event("Order Completed", 20))
    assert prune(weekly, state, date(2026, 11, 20)) == {"days": {"2026-11-20": 1}}


def test_last_value_keeps_the_latest_by_event_time() -> None:
    plan = Definition(name="last_plan", kind="last_value", event_name="Plan Chosen", property="plan")
    state = apply(plan, apply(plan, None, _event("Plan Chosen", 5, plan="pro")), _event("Plan Chosen", 3, plan="free"))
    assert value(plan, state, date(2026, 11, 5)) == "pro"


def test_last_seen_channel_reads_the_event_channel() -> None:
    channel = Definition(name="last_seen_channel", kind="last_value", event_name="Visit", property="$channel")
    assert value(channel, apply(channel, None, _event("Visit", 1)), date(2026, 11, 1)) == "web"


def test_first_and_last_seen() -> None:
    first = Definition(name="first", kind="first_seen", event_name="Visit")
    last = Definition(name="last", kind="last_seen", event_name="Visit")
    events = [_event("Visit", d) for d in (4, 2, 9)]
    first_state = last_state = None
    for event in events:
        first_state, last_state = apply(first, first_state, event), apply(last, last_state, event)
    assert value(first, first_state, date(2026, 11, 9)) == "2026-11-02T12:00:00+00:00"
    assert value(last, last_state, date(2026, 11, 9)) == "2026-11-09T12:00:00+00:00"


def test_where_filters_on_properties() -> None:
    big = Definition(name="big", kind="count", event_name="Order Completed", where=(("tier", "gold"),))
    assert matches(big, _event("Order Completed", 1, tier="gold"))
    assert not matches(big, _event("Order Completed", 1, tier="silver"))


def test_merging_states_adds_counts_and_keeps_latest_values() -> None:
    assert merge_states(ORDERS, {"total": 2}, {"total": 3}) == {"total": 5}
    plan = Definition(name="p", kind="last_value", event_name="x", property="plan")
    assert merge_states(plan, {"value": "a", "at": "2026-01"}, {"value": "b", "at": "2026-02"})["value"] == "b"
