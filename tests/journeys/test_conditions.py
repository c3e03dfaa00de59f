"""The condition language: every operator, all/any/not, missing fields, regex bounds, time zones,
history, explain, needs and validation errors. Pure: no database."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import re2

from journeys.conditions import (
    ConditionError,
    EvalContext,
    ListEventHistory,
    compile_condition,
    validate_condition,
)

NOW = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)  # a Monday


def ctx(**overrides):
    base: dict[str, Any] = {
        "now": NOW,
        "event": {
            "name": "Order Completed",
            "type": "track",
            "channel": "web",
            "timestamp": NOW.isoformat(),
            "properties": {"total": 120.5, "items": ["shoe", "sock"], "coupon": "BLACKFRIDAY", "qty": 2},
        },
        "traits": {
            "tier": "vip",
            "age": 41,
            "vip": True,
            "email": "ada@example.com",
            "tags": ["beta", "early"],
            "address": {"city": "Lyon", "lines": ["1 rue A", "Bat 2"]},
            "last_seen": (NOW - timedelta(hours=3)).isoformat(),
            "signup": "2024-05-01T10:00:00+00:00",
            "nickname": None,
        },
        "computed": {"lifetime_value": 950, "orders": 7},
        "session": {"form": {"step": 3, "started": True}},
        "consent": {"marketing": {"sms": True, "email": False}},
        "segments": frozenset({"vip", "buyers"}),
        "customer_id": "0d0c7c6e-9f52-4a58-9d0f-5b1d2b9f9a01",
    }
    base.update(overrides)
    return EvalContext(**base)


def holds(spec, context=None):
    return compile_condition(spec).evaluate(context or ctx())


LEAF_CASES: list[tuple[dict[str, Any], bool]] = [
    # equals / not_equals
    ({"field": "traits.tier", "op": "equals", "value": "vip"}, True),
    ({"field": "traits.tier", "op": "equals", "value": "VIP"}, False),
    ({"field": "traits.age", "op": "equals", "value": 41.0}, True),
    ({"field": "traits.vip", "op": "equals", "value": 1}, False),
    ({"field": "traits.vip", "op": "equals", "value": True}, True),
    ({"field": "traits.nickname", "op": "equals", "value": None}, True),
    ({"field": "traits.tags", "op": "equals", "value": ["beta", "early"]}, True),
    ({"field": "traits.address", "op": "equals", "value": {"city": "Lyon", "lines": ["1 rue A", "Bat 2"]}}, True),
    ({"field": "traits.tier", "op": "not_equals", "value": "basic"}, True),
    ({"field": "traits.tier", "op": "not_equals", "value": "vip"}, False),
    # in
    ({"field": "traits.tier", "op": "in", "value": ["gold", "vip"]}, True),
    ({"field": "traits.tier", "op": "in", "value": ["gold"]}, False),
    ({"field": "traits.age", "op": "in", "value": [40, 41]}, True),
    ({"field": "traits.vip", "op": "in", "value": [1]}, False),
    ({"field": "traits.vip", "op": "in", "value": [True]}, True),
    ({"field": "traits.tags", "op": "in", "value": ["early", "late"]}, True),
    ({"field": "traits.nickname", "op": "in", "value": [None]}, True),
    ({"field": "traits.tier", "op": "in", "value": []}, False),
    # contains
    ({"field": "traits.email", "op": "contains", "value": "@example."}, True),
    ({"field": "traits.email", "op": "contains", "value": "@other."}, False),
    ({"field": "traits.tags", "op": "contains", "value": "beta"}, True),
    ({"field": "event.properties.items", "op": "contains", "value": "hat"}, False),
    ({"field": "traits.age", "op": "contains", "value": "4"}, False),
    # exists
    ({"field": "traits.tier", "op": "exists"}, True),
    ({"field": "traits.nickname", "op": "exists"}, False),
    ({"field": "traits.unknown", "op": "exists"}, False),
    ({"field": "traits.unknown", "op": "exists", "value": False}, True),
    ({"field": "traits.tier", "op": "exists", "value": False}, False),
    # comparisons: numbers
    ({"field": "computed.lifetime_value", "op": "gt", "value": 900}, True),
    ({"field": "computed.lifetime_value", "op": "gt", "value": 950}, False),
    ({"field": "computed.lifetime_value", "op": "gte", "value": 950}, True),
    ({"field": "computed.orders", "op": "lt", "value": 7.5}, True),
    ({"field": "computed.orders", "op": "lte", "value": 6}, False),
    ({"field": "traits.tier", "op": "gt", "value": 1}, False),
    ({"field": "traits.vip", "op": "gte", "value": 0}, False),
    # comparisons: ISO dates and strings
    ({"field": "traits.signup", "op": "lt", "value": "2025-01-01"}, True),
    ({"field": "traits.signup", "op": "gte", "value": "2024-05-01T09:00:00-02:00"}, False),
    ({"field": "traits.tier", "op": "gt", "value": "basic"}, True),
    ({"field": "traits.age", "op": "gt", "value": "basic"}, False),
    # regex
    ({"field": "traits.email", "op": "regex", "value": "^[a-z]+@example\\.com$"}, True),
    ({"field": "traits.email", "op": "regex", "value": "(?i)^ADA@"}, True),
    ({"field": "traits.email", "op": "regex", "value": "^bob@"}, False),
    ({"field": "traits.age", "op": "regex", "value": "^4\\d$"}, True),
    ({"field": "traits.tags", "op": "regex", "value": "beta"}, False),
    # within_last
    ({"field": "traits.last_seen", "op": "within_last", "value": {"hours": 4}}, True),
    ({"field": "traits.last_seen", "op": "within_last", "value": {"hours": 2}}, False),
    ({"field": "traits.last_seen", "op": "within_last", "value": {"hours": 2, "minutes": 61}}, True),
    ({"field": "traits.signup", "op": "within_last", "value": {"days": 30}}, False),
    ({"field": "traits.tier", "op": "within_last", "value": {"days": 30}}, False),
    # every root
    ({"field": "event.name", "op": "equals", "value": "Order Completed"}, True),
    ({"field": "event.type", "op": "equals", "value": "track"}, True),
    ({"field": "event.channel", "op": "equals", "value": "web"}, True),
    ({"field": "event.timestamp", "op": "within_last", "value": {"minutes": 1}}, True),
    ({"field": "event.properties.total", "op": "gte", "value": 100}, True),
    ({"field": "traits.address.city", "op": "equals", "value": "Lyon"}, True),
    ({"field": "traits.address.lines.1", "op": "equals", "value": "Bat 2"}, True),
    ({"field": "traits.address.lines.5", "op": "exists"}, False),
    ({"field": "session.form.step", "op": "equals", "value": 3}, True),
    ({"field": "consent.marketing.sms", "op": "equals", "value": True}, True),
    ({"field": "consent.marketing.email", "op": "equals", "value": True}, False),
    ({"field": "consent.marketing.push", "op": "exists"}, False),
    ({"field": "customer.id", "op": "equals", "value": "0d0c7c6e-9f52-4a58-9d0f-5b1d2b9f9a01"}, True),
]


@pytest.mark.parametrize(("spec", "expected"), LEAF_CASES, ids=[f"{c[0]['op']}-{i}" for i, c in enumerate(LEAF_CASES)])
def test_leaf_operators(spec, expected):
    assert holds(spec) is expected


MISSING_CASES: list[dict[str, Any]] = [
    {"field": "traits.plan", "op": op, "value": value}
    for op, value in [
        ("equals", "pro"),
        ("equals", None),
        ("not_equals", "pro"),
        ("in", ["pro"]),
        ("contains", "p"),
        ("gt", 1),
        ("lte", "2025-01-01"),
        ("regex", ".*"),
        ("within_last", {"days": 1}),
    ]
]


@pytest.mark.parametrize("spec", MISSING_CASES, ids=[str(c["op"]) for c in MISSING_CASES])
def test_missing_fields_compare_false(spec):
    assert holds(spec) is False


@pytest.mark.parametrize(
    "spec",
    [
        {"field": "event.name", "op": "exists"},
        {"field": "event.properties.total", "op": "gt", "value": 0},
        {"field": "session.form.step", "op": "gt", "value": 0},
    ],
)
def test_absent_event_or_session_is_missing_not_an_error(spec):
    assert holds(spec, ctx(event=None, session=None)) is False


def test_a_deep_path_through_a_scalar_is_missing():
    assert holds({"field": "traits.tier.name", "op": "exists"}) is False


def test_not_is_how_a_rule_includes_customers_without_the_field():
    assert holds({"not": {"field": "traits.plan", "op": "equals", "value": "pro"}}) is True


VIP = {"field": "traits.tier", "op": "equals", "value": "vip"}
BASIC = {"field": "traits.tier", "op": "equals", "value": "basic"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"all": [VIP]}, True),
        ({"all": [VIP, BASIC]}, False),
        ({"all": [VIP, VIP, VIP]}, True),
        ({"all": [VIP, VIP, BASIC]}, False),
        ({"any": [BASIC, VIP]}, True),
        ({"any": [BASIC, BASIC]}, False),
        ({"any": [BASIC, BASIC, VIP]}, True),
        ({"any": [BASIC, BASIC, BASIC]}, False),
        ({"not": VIP}, False),
        ({"not": {"not": VIP}}, True),
        ({"all": [{"any": [BASIC, {"not": BASIC}]}, {"not": {"all": [VIP, BASIC]}}]}, True),
    ],
)
def test_all_any_not(spec, expected):
    assert holds(spec) is expected


def test_all_stops_at_the_first_false_and_does_not_count_history():
    history = CountingHistory()
    spec = {"all": [BASIC, {"performed": {"event": "Viewed"}}]}
    compile_condition(spec).evaluate(ctx(history=history))
    assert history.calls == 0


class CountingHistory:
    def __init__(self):
        self.calls = 0

    def count(self, name, since, where):
        self.calls += 1
        return 5


def test_segment_membership():
    assert holds({"segment": "vip"}) is True


def test_segment_non_membership():
    assert holds({"segment": "churned"}) is False


@pytest.mark.parametrize(
    ("purpose", "channel", "expected"),
    [("marketing", "sms", True), ("marketing", "email", False), ("marketing", "push", False), ("other", "sms", False)],
)
def test_consent(purpose, channel, expected):
    assert holds({"consent": {"purpose": purpose, "channel": channel}}) is expected


# --- time: now.* in the customer's zone, with a fallback zone -------------------------------------


def test_now_hour_uses_the_customers_time_zone():
    assert holds({"field": "now.hour", "op": "equals", "value": 10}, ctx(timezone="America/Los_Angeles")) is True


def test_now_hour_falls_back_when_the_customer_has_no_zone():
    context = ctx(timezone=None, fallback_timezone="Asia/Tokyo")
    assert holds({"field": "now.hour", "op": "equals", "value": 3}, context) is True


def test_an_unknown_customer_zone_uses_the_fallback_zone():
    context = ctx(timezone="Mars/Olympus_Mons", fallback_timezone="Europe/Paris")
    assert holds({"field": "now.hour", "op": "equals", "value": 19}, context) is True


def test_an_unknown_fallback_zone_uses_utc():
    context = ctx(timezone=None, fallback_timezone="../../etc/passwd")
    assert holds({"field": "now.hour", "op": "equals", "value": 18}, context) is True


def test_now_weekday_and_date_change_across_midnight_in_the_customers_zone():
    # 18:30 UTC on Monday is 07:30 on Tuesday in Auckland (UTC+13 in November).
    context = ctx(timezone="Pacific/Auckland")
    spec = {
        "all": [
            {"field": "now.weekday", "op": "equals", "value": 1},
            {"field": "now.date", "op": "equals", "value": "2026-11-24"},
            {"field": "now.time", "op": "equals", "value": "07:30"},
            {"field": "now.minute", "op": "equals", "value": 30},
        ]
    }
    assert holds(spec, context) is True


def test_now_date_compares_as_a_date():
    assert holds({"field": "now.date", "op": "gte", "value": "2026-11-23"}, ctx(timezone="UTC")) is True


def test_business_hours_rule():
    spec = {"all": [{"field": "now.hour", "op": "gte", "value": 9}, {"field": "now.hour", "op": "lt", "value": 17}]}
    assert [holds(spec, ctx(timezone=zone)) for zone in ("Europe/Paris", "America/New_York")] == [False, True]


# --- regex bounds ----------------------------------------------------------------------------------


def test_regex_runs_in_linear_time_on_a_catastrophic_pattern():
    subject = "a" * 4000 + "!"
    assert holds({"field": "traits.s", "op": "regex", "value": "^(a+)+$"}, ctx(traits={"s": subject})) is False


def test_regex_subject_is_truncated_to_4kb():
    subject = "x" * 4096 + "NEEDLE"
    assert holds({"field": "traits.s", "op": "regex", "value": "NEEDLE"}, ctx(traits={"s": subject})) is False


def test_regex_within_the_first_4kb_matches():
    subject = "x" * 4000 + "NEEDLE" + "y" * 10_000
    assert holds({"field": "traits.s", "op": "regex", "value": "NEEDLE"}, ctx(traits={"s": subject})) is True


def test_regex_truncation_keeps_multibyte_text_valid():
    subject = "é" * 3000 + "NEEDLE"
    assert holds({"field": "traits.s", "op": "regex", "value": "^é+$"}, ctx(traits={"s": subject})) is True


def test_regex_pattern_longer_than_256_is_refused():
    errors = validate_condition({"field": "traits.s", "op": "regex", "value": "a" * 257})
    assert errors == [ConditionError("/value", "a pattern is at most 256 characters")]


def test_regex_backreferences_are_refused_because_re2_has_none():
    errors = validate_condition({"field": "traits.s", "op": "regex", "value": "(a)\\1"})
    assert [(e.path, e.message.startswith("not a valid RE2 pattern")) for e in errors] == [("/value", True)]


# --- performed: event history ----------------------------------------------------------------------


def history():
    def event(name, hours_ago, **properties):
        return {"name": name, "type": "track", "timestamp": NOW - timedelta(hours=hours_ago), "properties": properties}

    return ListEventHistory(
        [
            event("Order Completed", 1, total=50),
            event("Order Completed", 30, total=150),
            event("Order Completed", 24 * 40, total=300),
            event("Product Viewed", 2, sku="A"),
            {"name": "Product Viewed", "timestamp": (NOW - timedelta(days=3)).isoformat(), "properties": {"sku": "B"}},
        ]
    )


@pytest.mark.parametrize(
    ("performed", "expected"),
    [
        ({"event": "Order Completed"}, True),
        ({"event": "Refund Issued"}, False),
        ({"event": "Order Completed", "times": {"gte": 3}}, True),
        ({"event": "Order Completed", "times": {"gte": 4}}, False),
        ({"event": "Order Completed", "times": {"eq": 2}, "within": {"days": 7}}, True),
        ({"event": "Order Completed", "times": {"gte": 2}, "within": {"hours": 24}}, False),
        ({"event": "Order Completed", "times": {"lte": 1}, "within": {"hours": 24}}, True),
        ({"event": "Refund Issued", "times": {"eq": 0}}, True),
        (
            {
                "event": "Order Completed",
                "where": {"field": "event.properties.total", "op": "gte", "value": 100},
                "times": {"gte": 2},
            },
            True,
        ),
        (
            {
                "event": "Order Completed",
                "where": {"field": "event.properties.total", "op": "gte", "value": 100},
                "within": {"days": 1},
            },
            False,
        ),
        (
            {"event": "Product Viewed", "where": {"field": "event.properties.sku", "op": "in", "value": ["B"]}},
            True,
        ),
        ({"event": "Product Viewed", "times": {"eq": 2}, "within": {"days": 7}}, True),
    ],
)
def test_performed_counts_history(performed, expected):
    assert holds({"performed": performed}, ctx(history=history())) is expected


def test_performed_without_history_counts_nothing():
    assert holds({"performed": {"event": "Order Completed"}}) is False


def test_list_history_counts_appended_events():
    events = ListEventHistory()
    events.append({"name": "Signed Up", "timestamp": NOW})
    assert events.count("Signed Up", NOW - timedelta(seconds=1), None) == 1


# --- needs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "needs"),
    [
        (VIP, {"traits"}),
        ({"field": "event.name", "op": "equals", "value": "x"}, {"event"}),
        ({"field": "computed.orders", "op": "gt", "value": 1}, {"computed"}),
        ({"field": "session.form.step", "op": "exists"}, {"session"}),
        ({"field": "consent.marketing.sms", "op": "exists"}, {"consent"}),
        ({"consent": {"purpose": "marketing", "channel": "sms"}}, {"consent"}),
        ({"field": "now.hour", "op": "gt", "value": 1}, {"now"}),
        ({"field": "traits.seen", "op": "within_last", "value": {"days": 1}}, {"traits", "now"}),
        ({"segment": "vip"}, {"segments"}),
        ({"performed": {"event": "x"}}, {"history"}),
        ({"performed": {"event": "x", "within": {"days": 1}}}, {"history", "now"}),
        ({"field": "customer.id", "op": "exists"}, set()),
        (
            {"all": [VIP, {"not": {"segment": "x"}}, {"any": [{"field": "event.name", "op": "exists"}]}]},
            {"traits", "segments", "event"},
        ),
    ],
)
def test_needs_names_the_roots_read(spec, needs):
    assert compile_condition(spec).needs == frozenset(needs)


# --- explain -------------------------------------------------------------------------------------


def test_explain_shows_what_each_leaf_saw_and_every_result():
    spec = {
        "all": [
            VIP,
            {"any": [{"field": "traits.plan", "op": "equals", "value": "pro"}, {"segment": "buyers"}]},
            {"not": {"field": "now.hour", "op": "lt", "value": 9}},
            {"performed": {"event": "Order Completed", "within": {"days": 7}}},
            {"consent": {"purpose": "marketing", "channel": "email"}},
        ]
    }
    explained = compile_condition(spec).explain(ctx(timezone="Europe/Paris", history=history()))
    expected: dict[str, Any] = {
        "all": [
            {"field": "traits.tier", "op": "equals", "value": "vip", "saw": "vip", "result": True},
            {
                "any": [
                    {"field": "traits.plan", "op": "equals", "value": "pro", "missing": True, "result": False},
                    {"segment": "buyers", "result": True},
                ],
                "result": True,
            },
            {
                "not": {
                    "field": "now.hour",
                    "op": "lt",
                    "value": 9,
                    "saw": 19,
                    "timezone": "Europe/Paris",
                    "result": False,
                },
                "result": True,
            },
            {"performed": {"event": "Order Completed", "within": {"days": 7}}, "count": 2, "result": True},
            {"consent": {"purpose": "marketing", "channel": "email"}, "saw": False, "result": False},
        ],
        "result": False,
    }
    assert explained == expected


def test_explain_result_agrees_with_evaluate():
    condition = compile_condition({"any": [BASIC, {"not": VIP}]})
    assert condition.explain(ctx())["result"] is condition.evaluate(ctx()) is False


def test_explain_truncates_long_values():
    explained = compile_condition({"field": "traits.s", "op": "exists"}).explain(ctx(traits={"s": "z" * 1000}))
    assert len(explained["saw"]) == 259


# --- validation: errors with JSON pointers ------------------------------------------------------------


INVALID: list[tuple[Any, str, str | None]] = [
    ("not an object", "", "a condition is an object"),
    ({}, "", "a condition has exactly one of: all, any, not, field, segment, performed, consent"),
    ({"all": [], "any": []}, "", "a condition has exactly one of: all, any, not, field, segment, performed, consent"),
    ({"all": []}, "/all", "`all` takes a non-empty list of conditions"),
    ({"any": {"field": "traits.a"}}, "/any", "`any` takes a non-empty list of conditions"),
    ({"all": [VIP, {"field": "traits.a", "op": "like", "value": 1}]}, "/all/1/op", None),
    ({"all": [VIP, {"any": [VIP, {"field": "traits.a", "op": "gt"}]}]}, "/all/1/any/1", "`gt` needs a value"),
    ({"not": {"field": "bogus.a", "op": "exists"}}, "/not/field", None),
    ({"field": "traits", "op": "exists"}, "/field", "name a key inside traits, e.g. traits.plan"),
    ({"field": "traits..a", "op": "exists"}, "/field", "'traits..a' has an empty path segment"),
    ({"field": "event.nam", "op": "exists"}, "/field", None),
    (
        {"field": "event.properties", "op": "exists"},
        "/field",
        "name a key inside event.properties, e.g. event.properties.total",
    ),
    ({"field": "event.name.first", "op": "exists"}, "/field", "event.name has no fields inside it"),
    ({"field": "consent.marketing", "op": "exists"}, "/field", "consent fields are consent.<purpose>.<channel>"),
    ({"field": "now.second", "op": "exists"}, "/field", None),
    ({"field": "customer.email", "op": "exists"}, "/field", "the customer field is customer.id"),
    ({"field": 5, "op": "exists"}, "/field", None),
    ({"field": "traits.a", "op": "exists", "value": "yes"}, "/value", "`exists` takes true (the default) or false"),
    ({"field": "traits.a", "op": "equals", "value": 1, "extra": 1}, "/extra", "unknown key 'extra'"),
    ({"field": "traits.a", "op": "in", "value": "vip"}, "/value", "`in` takes a list of values"),
    ({"field": "traits.a", "op": "in", "value": ["a", {"b": 1}]}, "/value/1", None),
    ({"field": "traits.a", "op": "in", "value": list(range(10_001))}, "/value", "`in` takes at most 10000 values"),
    ({"field": "traits.a", "op": "contains", "value": ["a"]}, "/value", None),
    ({"field": "traits.a", "op": "gt", "value": True}, "/value", None),
    (
        {"field": "traits.a", "op": "gt", "value": "2024-13-45"},
        "/value",
        "'2024-13-45' looks like a date but is not ISO 8601",
    ),
    ({"field": "traits.a", "op": "regex", "value": ""}, "/value", "`regex` takes a non-empty pattern string"),
    ({"field": "traits.a", "op": "regex", "value": "("}, "/value", None),
    ({"field": "traits.a", "op": "within_last", "value": 7}, "/value", None),
    ({"field": "traits.a", "op": "within_last", "value": {"weeks": 1}}, "/value/weeks", None),
    ({"field": "traits.a", "op": "within_last", "value": {"days": 0}}, "/value/days", None),
    ({"field": "traits.a", "op": "within_last", "value": {"days": 10**7}}, "/value", "a duration is at most 100 years"),
    ({"segment": ""}, "/segment", "a segment is named by its key"),
    ({"consent": {"purpose": "marketing"}}, "/consent/channel", "consent needs a channel"),
    ({"consent": {"purpose": "m", "channel": "sms", "x": 1}}, "/consent/x", "unknown key 'x'"),
    ({"consent": "marketing"}, "/consent", None),
    ({"performed": {"where": VIP}}, "/performed/event", "performed needs an event name"),
    ({"performed": {"event": "x", "where": VIP}}, "/performed/where/field", None),
    ({"performed": {"event": "x", "where": {"segment": "vip"}}}, "/performed/where/segment", None),
    ({"performed": {"event": "x", "times": {"gt": 1}}}, "/performed/times", None),
    ({"performed": {"event": "x", "times": {"gte": -1}}}, "/performed/times/gte", None),
    ({"performed": {"event": "x", "times": {"gte": 1.5}}}, "/performed/times/gte", None),
    ({"performed": {"event": "x", "within": {"days": "7"}}}, "/performed/within/days", None),
    ({"field": "traits.a/b~c", "op": "equals", "value": 1, "x/y": 1}, "/x~1y", "unknown key 'x/y'"),
]


@pytest.mark.parametrize(
    ("spec", "path", "message"), INVALID, ids=[f"{i}:{c[1] or 'root'}" for i, c in enumerate(INVALID)]
)
def test_validation_errors_point_at_the_bad_part(spec, path, message):
    errors = validate_condition(spec)
    assert errors[0].path == path
    assert message is None or errors[0].message == message


@pytest.mark.parametrize(("spec", "path", "message"), INVALID[:5])
def test_compile_raises_the_first_error(spec, path, message):
    with pytest.raises(ConditionError) as raised:
        compile_condition(spec)
    assert raised.value.path == path


def test_validation_reports_every_error_not_just_the_first():
    spec = {
        "any": [{"field": "nope.x", "op": "exists"}, VIP, {"segment": 3}, {"field": "traits.a", "op": "xx", "value": 1}]
    }
    assert [e.path for e in validate_condition(spec)] == ["/any/0/field", "/any/2/segment", "/any/3/op"]


def test_a_valid_condition_has_no_errors():
    assert validate_condition({"all": [VIP, {"performed": {"event": "x", "within": {"days": 2}}}]}) == []


def test_nesting_is_bounded():
    spec: dict[str, Any] = VIP
    for _ in range(40):
        spec = {"not": spec}
    assert validate_condition(spec)[0].message == "conditions nest at most 32 deep"


def test_size_is_bounded():
    spec = {"any": [VIP] * 2500}
    assert validate_condition(spec)[0] == ConditionError("/any/1999", "a condition may hold at most 2000 nodes")


def test_errors_are_json_ready():
    assert validate_condition({"segment": ""})[0].as_dict() == {
        "path": "/segment",
        "message": "a segment is named by its key",
    }


def test_the_module_is_pure_it_imports_no_django():
    code = "import sys, journeys.conditions; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("pattern", "subject"),
    [
        ("^é.$", "éü"),
        ("^.{2}$", "日本"),
        ("(?i)straße", "STRASSE Straße"),
        ("^$", ""),
        ("b+", "aaa"),
        ("\\bcat\\b", "concat cat"),
        ("^\\d{3}-\\d{4}$", "555-1234"),
    ],
)
def test_regex_agrees_with_re2_search(pattern, subject):
    expected = re2.search(pattern, subject) is not None
    assert holds({"field": "traits.s", "op": "regex", "value": pattern}, ctx(traits={"s": subject})) is expected


def test_list_history_keeps_time_order_whatever_the_append_order():
    events = ListEventHistory()
    for hours_ago in (1, 50, 3, 30):
        events.append({"name": "Viewed", "timestamp": NOW - timedelta(hours=hours_ago)})
    events.append({"name": "Viewed"})  # no timestamp: counted only without a window
    assert [events.count("Viewed", since, None) for since in (None, NOW - timedelta(hours=4), NOW)] == [5, 2, 0]
