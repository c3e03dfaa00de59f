"""/v1: the Segment tracking API against real PostgreSQL."""

import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from profiles.models import Customer, Event, EventOutbox, Identity, QuarantinedMessage
from tests.conftest import IngestClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


def test_track_is_stored_with_its_timestamps(ingest: Any) -> None:
    response = ingest.post(
        "track",
        {
            "anonymousId": "anon-1",
            "event": "Product Viewed",
            "properties": {"sku": "A1"},
            "messageId": "m-1",
            "originalTimestamp": "2026-11-23T10:00:00Z",
            "sentAt": "2026-11-23T10:00:05Z",
        },
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0, "suppressed": 0}
    event = Event.objects.get(message_id="m-1")
    assert (event.type, event.name, event.properties) == ("track", "Product Viewed", {"sku": "A1"})
    assert (event.received_at - event.timestamp).total_seconds() == pytest.approx(5, abs=0.01)
    assert event.original_timestamp == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_each_call_type_is_accepted(ingest: Any) -> None:
    calls = {
        "identify": {"userId": "u1", "traits": {"plan": "pro"}},
        "page": {"anonymousId": "a1", "name": "Home"},
        "screen": {"anonymousId": "a1", "name": "Cart"},
        "group": {"userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}},
        "alias": {"userId": "u1", "previousId": "a1"},
    }
    for call, body in calls.items():
        response = ingest.post(call, body)
        assert response.status_code == 200, (call, response.content)
    assert sorted(Event.objects.values_list("type", flat=True)) == sorted(calls)


def test_accepted_events_are_on_the_routing_outbox(ingest: Any) -> None:
    ingest.post("track", {"userId": "u", "event": "X", "messageId": "m-out"})
    event = Event.objects.get(message_id="m-out")
    assert EventOutbox.objects.filter(event_id=event.id).exists()


def test_write_key_in_body_authenticates(client: Any, source: Any) -> None:
    body = orjson.dumps({"writeKey": source.write_key, "userId": "u", "event": "X"})
    response = client.post("/v1/track", data=body, content_type="application/json")
    assert response.status_code == 200


def test_unknown_write_key_is_401(ingest: Any) -> None:
    response = ingest.post("track", {"userId": "u", "event": "X"}, HTTP_AUTHORIZATION=ingest.auth("nope"))
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"


def test_missing_write_key_is_401(client: Any) -> None:
    response = client.post("/v1/track", data=b'{"userId": "u", "event": "X"}', content_type="application/json")
    assert response.status_code == 401


def test_disabled_source_is_403(client: Any) -> None:
    disabled: Any = SourceFactory(enabled=False)
    response = IngestClient(client, disabled.write_key).post("track", {"userId": "u", "event": "X"})
    assert response.status_code == 403
    assert response.json()["code"] == "source_disabled"


def test_malformed_json_is_400_and_quarantined(ingest: Any) -> None:
    response = ingest.post("track", None, raw=b'{"userId": "u", "event":')
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert QuarantinedMessage.objects.get().raw_text == '{"userId": "u", "event":'


def test_body_that_is_not_an_object_is_400(ingest: Any) -> None:
    response = ingest.post("track", [1, 2, 3])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


def test_missing_identity_is_400_and_quarantined(ingest: Any) -> None:
    response = ingest.post("track", {"event": "X", "messageId": "m-noid"})
    assert response.status_code == 400
    assert response.json()["code"] == "missing_identity"
    assert QuarantinedMessage.objects.get().message_id == "m-noid"


def test_message_over_32kb_is_413(ingest: Any) -> None:
    response = ingest.post("track", {"userId": "u", "event": "X", "properties": {"blob": "x" * 33_000}})
    assert response.status_code == 413
    assert "32 KB" in response.json()["detail"]


def test_batch_over_500kb_is_413(ingest: Any) -> None:
    batch = [{"type": "track", "userId": "u", "event": "X", "properties": {"p": "x" * 20_000}} for _ in range(30)]
    response = ingest.post("batch", {"batch": batch})
    assert response.status_code == 413
    assert "500 KB" in response.json()["detail"]
    assert Event.objects.count() == 0


def test_batch_over_2500_messages_is_400(ingest: Any) -> None:
    response = ingest.post("batch", {"batch": [{"type": "track", "userId": "u", "event": "X"}] * 2501})
    assert response.status_code == 400
    assert response.json()["code"] == "batch_too_many_messages"


def test_one_bad_message_does_not_sink_the_batch(ingest: Any) -> None:
    response = ingest.post(
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "Good", "messageId": "g1"},
                {"type": "track", "event": "No identity", "messageId": "b1"},
                {"type": "track", "userId": "u", "event": "Big", "messageId": "b2", "properties": {"p": "x" * 33_000}},
                {"type": "page", "userId": "u", "messageId": "g2"},
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "missing_identity"), (2, "message_too_large")]
    assert sorted(QuarantinedMessage.objects.values_list("message_id", flat=True)) == ["b1", "b2"]
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["g1", "g2"]


def test_batch_where_every_message_is_bad_is_400_and_all_quarantined(ingest: Any) -> None:
    response = ingest.post("batch", {"batch": [{"type": "track", "event": "X"}, {"type": "nope", "userId": "u"}]})
    assert response.status_code == 400
    assert response.json()["rejected"] == 2
    assert QuarantinedMessage.objects.count() == 2


def test_retried_batch_stores_nothing_twice(ingest: Any) -> None:
    batch = {"batch": [{"type": "track", "userId": "u", "event": "X", "messageId": f"m-{i}"} for i in range(10)]}
    first = ingest.post("batch", batch).json()
    second = ingest.post("batch", batch).json()
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (10, 0, 10)
    assert Event.objects.count() == 10


def test_same_message_id_from_two_sources_is_two_events(client: Any) -> None:
    sources: list[Any] = [SourceFactory(), SourceFactory()]
    for src in sources:
        IngestClient(client, src.write_key).post("track", {"userId": "u", "event": "X", "messageId": "same"})
    assert Event.objects.filter(message_id="same").count() == 2


def test_gzip_body_is_accepted(ingest: Any) -> None:
    response = ingest.post("batch", {"batch": [{"type": "track", "userId": "u", "event": "Zipped"}]}, gzip_body=True)
    assert response.status_code == 200
    assert Event.objects.get().name == "Zipped"


def test_gzip_bomb_is_refused_without_being_inflated(ingest: Any) -> None:
    bomb = gzip.compress(b'{"batch": ["' + b"A" * 200_000_000 + b'"]}', compresslevel=9)
    assert len(bomb) < 512 * 1024
    response = ingest.post("batch", None, raw=bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert "decompressed" in response.json()["detail"]


def test_corrupt_gzip_is_400(ingest: Any) -> None:
    response = ingest.post("track", None, raw=b"\x1f\x8bnot really gzip", HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_encoding"


def test_unknown_content_encoding_is_415(ingest: Any) -> None:
    response = ingest.post("track", {"userId": "u", "event": "X"}, HTTP_CONTENT_ENCODING="br")
    assert response.status_code == 415


def test_anonymous_browsing_then_identify_is_one_profile(ingest: Any) -> None:
    ingest.post("page", {"anonymousId": "anon-7", "name": "Pricing"})
    ingest.post("track", {"anonymousId": "anon-7", "event": "Signup Started"})
    ingest.post("identify", {"anonymousId": "anon-7", "userId": "user-7", "traits": {"email": "Seven@Example.com"}})
    ingest.post("track", {"userId": "user-7", "event": "Order Completed"})
    assert Customer.objects.count() == 1
    customer = Customer.objects.get()
    assert customer.events.count() == 4
    assert set(Identity.objects.values_list("kind", "value")) == {
        ("anonymous_id", "anon-7"),
        ("user_id", "user-7"),
        ("email", "seven@example.com"),
    }


def test_same_flow_inside_one_batch_is_one_profile(ingest: Any) -> None:
    ingest.post(
        "batch",
        {
            "batch": [
                {"type": "page", "anonymousId": "anon-8"},
                {"type": "identify", "anonymousId": "anon-8", "userId": "user-8"},
                {"type": "track", "userId": "user-8", "event": "Bought"},
            ]
        },
    )
    assert Customer.objects.count() == 1


def test_identify_merges_traits_into_the_profile(ingest: Any) -> None:
    ingest.post("identify", {"userId": "u", "traits": {"plan": "free", "name": "Ann"}})
    ingest.post("identify", {"userId": "u", "traits": {"plan": "pro"}})
    assert Customer.objects.get().traits == {"plan": "pro", "name": "Ann"}


def test_email_shared_across_channels_finds_the_same_profile(ingest: Any) -> None:
    ingest.post("identify", {"userId": "u", "traits": {"email": "ann@example.com"}})
    ingest.post(
        "track", {"anonymousId": "kiosk-1", "event": "Visit", "context": {"traits": {"email": "ANN@example.com"}}}
    )
    assert Customer.objects.count() == 1


def test_alias_links_previous_id_to_user_id(ingest: Any) -> None:
    ingest.post("track", {"anonymousId": "old-anon", "event": "Browse"})
    ingest.post("alias", {"previousId": "old-anon", "userId": "new-user"})
    ingest.post("track", {"userId": "new-user", "event": "Buy"})
    assert Customer.objects.count() == 1
    assert (
        Identity.objects.get(kind="user_id", value="new-user").customer
        == Identity.objects.get(value="old-anon").customer
    )


def test_explicit_timestamp_is_kept(ingest: Any) -> None:
    ingest.post("track", {"userId": "u", "event": "X", "timestamp": "2026-01-01T00:00:00Z", "messageId": "t"})
    assert Event.objects.get(message_id="t").timestamp.isoformat() == "2026-01-01T00:00:00+00:00"


def test_rate_limit_answers_429_with_retry_after(ingest: Any, settings: Any) -> None:
    settings.INGEST_RATE_LIMIT_PER_SECOND = 3
    responses = [ingest.post("track", {"userId": "u", "event": "X"}) for _ in range(10)]
    limited = [r for r in responses if r.status_code == 429]
    # Ten requests span at most two one-second windows, so at most six get through.
    assert len(limited) >= 4
    assert limited[0]["Retry-After"] == "1"
    assert limited[0].json()["code"] == "rate_limited"


def test_a_single_call_rejected_at_ingestion_keeps_its_call_type(ingest: Any) -> None:
    ingest.post("track", {"event": "X", "userId": "null", "messageId": "m-1"})
    assert QuarantinedMessage.objects.get().call_type == "track"
