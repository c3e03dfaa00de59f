"""The contact policy's pure rules: caps, quiet hours in the customer's zone, priorities."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels.contact import (
    CapRule,
    ContactVerdict,
    Policy,
    PolicyError,
    Sent,
    evaluate,
    parse_caps,
    quiet_until,
    zone,
)

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
THREE_A_WEEK = Policy(caps=(CapRule("marketing", "*", 3, timedelta(days=7)),))


def _marketing(*days_ago: float, channel: str = "sms") -> list[Sent]:
    return [Sent("marketing", channel, NOW - timedelta(days=days)) for days in days_ago]


def _check(policy: Policy, sent: list[Sent], **kwargs: object) -> ContactVerdict:
    arguments = {"purpose": "marketing", "channel": "email", "priority": "normal", "now": NOW, "tz": UTC_ZONE}
    arguments.update(kwargs)
    return evaluate(policy, sent=sent, **arguments)  # type: ignore[arg-type]


def test_a_cap_counts_every_channel_and_says_when_a_slot_frees() -> None:
    verdict = _check(THREE_A_WEEK, _marketing(6, 2, 1, channel="sms") + _marketing(10))

    assert (verdict.allowed, verdict.reason, verdict.retry_at) == (False, "frequency_cap", NOW + timedelta(days=1))


def test_under_the_cap_is_allowed() -> None:
    assert _check(THREE_A_WEEK, _marketing(8, 2, 1)).reason == "ok"


def test_transactional_messages_are_exempt_even_in_quiet_hours() -> None:
    policy = Policy(caps=THREE_A_WEEK.caps, quiet_start=time(0, 0), quiet_end=time(23, 59))

    assert _check(policy, _marketing(3, 2, 1), purpose="transactional").reason == "exempt"


def test_high_priority_bypasses_caps_but_not_quiet_hours() -> None:
    quiet = Policy(caps=THREE_A_WEEK.caps, quiet_start=time(14, 0), quiet_end=time(16, 0))

    assert _check(THREE_A_WEEK, _marketing(3, 2, 1), priority="high").reason == "priority_bypass"
    assert _check(quiet, [], priority="high").reason == "quiet_hours"


def test_quiet_hours_are_in_the_customer_zone_and_end_in_the_morning() -> None:
    policy = Policy(quiet_start=time(21, 0), quiet_end=time(8, 0))
    new_york = ZoneInfo("America/New_York")  # 15:00 UTC is 11:00 there; 03:00 UTC is 23:00

    assert quiet_until(policy, NOW, new_york) is None
    late = datetime(2026, 3, 11, 3, 0, tzinfo=UTC)
    assert quiet_until(policy, late, new_york) == datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


def test_a_slot_freeing_inside_quiet_hours_is_retried_when_they_end() -> None:
    policy = Policy(caps=(CapRule("*", "*", 1, timedelta(hours=12)),), quiet_start=time(21, 0), quiet_end=time(8, 0))
    sent = [Sent("marketing", "sms", NOW - timedelta(hours=4))]  # frees at 23:00 UTC, inside quiet hours

    assert _check(policy, sent).retry_at == datetime(2026, 3, 11, 8, 0, tzinfo=UTC)


def test_a_bad_zone_falls_back() -> None:
    assert zone("Mars/Olympus", "Europe/Paris").key == "Europe/Paris"


@pytest.mark.parametrize(
    ("caps", "path"),
    [
        ("x", "/caps"),
        ([{"purpose": "marketing", "max": -1, "window": {"days": 7}}], "/caps/0/max"),
        ([{"purpose": "marketing", "max": 3, "window": {"weeks": 1}}], "/caps/0/window"),
        ([{"purpose": "transactional", "max": 3, "window": {"days": 1}}], "/caps/0/purpose"),
        ([{"purpose": "Mark eting", "max": 3, "window": {"days": 1}}], "/caps/0/purpose"),
    ],
)
def test_bad_caps_point_at_the_fault(caps: object, path: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_caps(caps)

    assert raised.value.path == path
