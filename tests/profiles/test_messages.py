"""The pure message rules: no database."""

from datetime import UTC, datetime, timedelta

import pytest

from profiles.identifiers import normalize_email, normalize_phone
from profiles.messages import MessageError, corrected_timestamp, parse_message

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_clock_skew_is_removed_using_sent_at_and_original_timestamp() -> None:
    # The device clock runs 10 minutes fast: it says it sent at 12:10 what happened at 12:09.
    ts = corrected_timestamp(
        timestamp=None,
        original_timestamp=NOW + timedelta(minutes=9),
        sent_at=NOW + timedelta(minutes=10),
        received_at=NOW,
    )
    assert ts == NOW - timedelta(minutes=1)


def test_explicit_timestamp_is_kept_as_given() -> None:
    given = NOW - timedelta(days=3)
    ts = corrected_timestamp(timestamp=given, original_timestamp=NOW, sent_at=NOW + timedelta(hours=1), received_at=NOW)
    assert ts == given


def test_no_client_times_means_received_at() -> None:
    assert corrected_timestamp(timestamp=None, original_timestamp=None, sent_at=None, received_at=NOW) == NOW


def test_batch_level_sent_at_applies_to_each_message() -> None:
    message = parse_message(
        {"type": "track", "event": "X", "anonymousId": "a", "originalTimestamp": "2026-11-23T12:05:00Z"},
        call_type=None,
        received_at=NOW,
        defaults={"sentAt": "2026-11-23T12:06:00Z"},
    )
    assert message.timestamp == NOW - timedelta(minutes=1)


def test_missing_identity_is_refused() -> None:
    with pytest.raises(MessageError) as error:
        parse_message({"event": "X"}, call_type="track", received_at=NOW)
    assert error.value.code == "missing_identity"


def test_track_without_event_name_is_refused() -> None:
    with pytest.raises(MessageError) as error:
        parse_message({"userId": "u"}, call_type="track", received_at=NOW)
    assert error.value.code == "missing_event"


def test_batch_message_with_unknown_type_is_refused() -> None:
    with pytest.raises(MessageError) as error:
        parse_message({"type": "explode", "userId": "u"}, call_type=None, received_at=NOW)
    assert error.value.code == "invalid_type"


def test_alias_requires_previous_id() -> None:
    with pytest.raises(MessageError) as error:
        parse_message({"userId": "u"}, call_type="alias", received_at=NOW)
    assert error.value.code == "missing_identity"


def test_bad_timestamp_is_refused_with_the_field_named() -> None:
    with pytest.raises(MessageError) as error:
        parse_message({"userId": "u", "event": "X", "timestamp": "yesterday"}, call_type="track", received_at=NOW)
    assert "timestamp" in error.value.detail


def test_identify_collects_normalised_identities() -> None:
    message = parse_message(
        {
            "userId": 42,
            "anonymousId": "anon-1",
            "traits": {"email": "  Ann@Example.COM ", "phone": "+1 (415) 555-2671"},
            "context": {"device": {"id": "dev-9"}},
        },
        call_type="identify",
        received_at=NOW,
    )
    assert message.identities == [
        ("user_id", "42"),
        ("anonymous_id", "anon-1"),
        ("email", "ann@example.com"),
        ("phone", "+14155552671"),
        ("device_id", "dev-9"),
    ]


def test_external_identity_kinds_come_from_context_external_ids() -> None:
    message = parse_message(
        {"userId": "u", "event": "Bought", "context": {"externalIds": [{"id": "L-7", "type": "loyalty_id"}]}},
        call_type="track",
        received_at=NOW,
        external_kinds=frozenset({"loyalty_id"}),
    )
    assert ("loyalty_id", "L-7") in message.identities


def test_invalid_email_and_phone_are_not_identities() -> None:
    assert normalize_email("not-an-email") is None
    assert normalize_phone("12") is None


def test_message_id_is_generated_when_missing() -> None:
    message = parse_message({"userId": "u", "event": "X"}, call_type="track", received_at=NOW)
    assert len(message.message_id) == 36


def test_identify_traits_sent_only_as_context_traits_are_the_traits() -> None:
    message = parse_message(
        {"userId": "u", "context": {"traits": {"plan": "pro"}}}, call_type="identify", received_at=NOW
    )
    assert message.traits == {"plan": "pro"}


def test_page_category_is_kept() -> None:
    message = parse_message({"userId": "u", "name": "Shoes", "category": "Shop"}, call_type="page", received_at=NOW)
    assert message.extra["category"] == "Shop"
