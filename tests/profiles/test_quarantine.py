"""The quarantine: listed through the API and the admin, and replayed once the cause is fixed."""

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import transaction
from django.test import Client

from profiles.contracts import SourceInfo
from profiles.messages import parse_message
from profiles.models import Event, QuarantinedMessage, Source
from profiles.schemas.quarantine import quarantine_replay
from profiles.schemas.validation import Verdict, schema_quarantined
from tests.factories import QuarantinedMessageFactory, SourceFactory

pytestmark = pytest.mark.django_db

RECEIVED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Api:
    def __init__(self, client: Client, token: str):
        self.client = client
        self.auth = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, HTTP_AUTHORIZATION=self.auth)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=self.auth)


@pytest.fixture
def mgmt(api_token: Any, client: Client) -> Api:
    return Api(client, api_token.secret)


def track(message_id: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": message_id, **fields}


def quarantined(source: Source, raw: Any, **fields: Any) -> QuarantinedMessage:
    return QuarantinedMessageFactory.create(source=source, raw=raw, received_at=RECEIVED, **fields)


def schema_rejected(source: Source, raw: dict[str, Any]) -> QuarantinedMessage:
    """A message as the schema check quarantines it."""
    info = SourceInfo(id=source.id, name=source.name, channel=source.channel, enabled=True, identity_kinds=frozenset())
    message = parse_message(raw, call_type=None, received_at=RECEIVED)
    verdict = Verdict(version="1-0-0", violations=[{"path": "/total", "keyword": "type", "message": "x"}])
    row = schema_quarantined(source=info, message=message, verdict=verdict, received_at=RECEIVED)
    row.save()
    return row


# --- listing ----------------------------------------------------------------------------------


def test_a_message_rejected_at_ingestion_is_listed_with_its_reason(ingest: Any, mgmt: Api) -> None:
    ingest.post("batch", {"batch": [{"type": "track", "event": "No One", "messageId": "lost-1"}]})
    [row] = mgmt.get("/api/v1/quarantine").json()["results"]
    assert (row["message_id"], row["stage"], row["reason"], row["status"]) == (
        "lost-1",
        "ingest",
        "missing_identity",
        "open",
    )


def test_the_list_is_filtered_by_source_reason_and_stage(mgmt: Api) -> None:
    source = SourceFactory.create()
    wanted = schema_rejected(source, track("a"))
    schema_rejected(SourceFactory.create(), track("b"))
    quarantined(source, track("c"))
    response = mgmt.get("/api/v1/quarantine", source_id=str(source.id), reason="schema_violation", stage="schema")
    assert [row["id"] for row in response.json()["results"]] == [wanted.id]


def test_resolved_messages_are_listed_only_when_asked_for(mgmt: Api) -> None:
    source = SourceFactory.create()
    resolved = quarantined(source, track("a"), resolved_at=RECEIVED)
    quarantined(source, track("b"))
    response = mgmt.get("/api/v1/quarantine", status="resolved")
    assert [row["id"] for row in response.json()["results"]] == [resolved.id]


def test_the_list_is_cursor_paginated_newest_first(mgmt: Api) -> None:
    source = SourceFactory.create()
    rows = [quarantined(source, track(f"m-{i}")) for i in range(3)]
    first = mgmt.get("/api/v1/quarantine", page_size=2).json()
    second = mgmt.client.get(first["next"], HTTP_AUTHORIZATION=mgmt.auth).json()
    assert [row["id"] for row in first["results"] + second["results"]] == [row.id for row in reversed(rows)]


def test_a_bad_filter_is_a_400(mgmt: Api) -> None:
    assert mgmt.get("/api/v1/quarantine", source_id="not-a-uuid").status_code == 400


def test_one_message_is_shown_whole(mgmt: Api) -> None:
    row = quarantined(SourceFactory.create(), track("a"))
    assert mgmt.get(f"/api/v1/quarantine/{row.id}").json()["raw"] == track("a")


def test_an_unknown_message_is_a_404(mgmt: Api) -> None:
    assert mgmt.get("/api/v1/quarantine/999999").status_code == 404


# --- replay -----------------------------------------------------------------------------------


def test_a_replayed_message_is_stored_and_linked_to_its_event(mgmt: Api) -> None:
    row = schema_rejected(SourceFactory.create(), track("m-1", properties={"total": 1}))
    response = mgmt.post("/api/v1/quarantine/replay", {"ids": [row.id]})
    row.refresh_from_db()
    event = Event.objects.get(message_id="m-1")
    assert (response.json()["accepted"], row.event_id, row.resolved_at is not None) == (1, event.id, True)


def test_a_replayed_message_keeps_its_message_id_and_times() -> None:
    source = SourceFactory.create()
    raw = track("m-1", originalTimestamp="2026-11-20T08:58:00+00:00", sentAt="2026-11-20T09:00:30+00:00")
    row = quarantined(source, raw)
    quarantine_replay(ids=[row.id])
    event = Event.objects.get(source=source)
    assert (event.message_id, event.received_at, event.timestamp) == (
        "m-1",
        RECEIVED,
        RECEIVED - timedelta(minutes=2, seconds=30),
    )


def test_a_schema_rejected_message_keeps_its_timestamp_on_replay() -> None:
    source = SourceFactory.create()
    row = schema_rejected(source, track("m-1", timestamp="2026-11-19T10:00:00+00:00"))
    quarantine_replay(ids=[row.id])
    assert Event.objects.get(source=source).timestamp == datetime(2026, 11, 19, 10, 0, tzinfo=UTC)


def test_a_replayed_message_already_stored_is_not_stored_twice(ingest: Any, source: Source) -> None:
    ingest.post("batch", {"batch": [track("m-1")]})
    row = quarantined(source, track("m-1"))
    report = quarantine_replay(ids=[row.id])
    assert (Event.objects.filter(source=source).count(), report.results[0].event_id) == (
        1,
        Event.objects.get(source=source).id,
    )


def test_a_message_rejected_again_stays_open_with_the_new_reason_in_the_same_row() -> None:
    source = SourceFactory.create()
    row = schema_rejected(source, track("m-1"))
    row.raw = {"type": "track", "event": "X", "messageId": "m-1"}  # lost its identity: rejected at ingestion now
    row.save()
    quarantine_replay(ids=[row.id])
    assert list(QuarantinedMessage.objects.values_list("id", "stage", "reason", "replay_count", "resolved_at")) == [
        (row.id, "ingest", "missing_identity", 1, None)
    ]


def test_a_message_quarantined_for_a_limit_is_accepted_once_the_limit_is_raised(settings: Any) -> None:
    source = SourceFactory.create()
    big = track("m-1", properties={"notes": "x" * 40_000})
    row = quarantined(source, big, reason="message_too_large")
    settings.INGEST_MAX_MESSAGE_BYTES = 64 * 1024
    assert quarantine_replay(ids=[row.id]).results[0].outcome == "accepted"


def test_a_resolved_message_is_not_replayed_again() -> None:
    row = quarantined(SourceFactory.create(), track("m-1"))
    quarantine_replay(ids=[row.id])
    assert (quarantine_replay(ids=[row.id]).results[0].outcome, Event.objects.count()) == ("skipped", 1)


def test_a_message_without_a_message_id_gets_a_stable_one() -> None:
    row = quarantined(SourceFactory.create(), {"type": "track", "event": "X", "userId": "u-1"})
    quarantine_replay(ids=[row.id])
    assert Event.objects.get().message_id == f"quarantine-{row.id}"


def test_a_message_of_a_single_call_is_replayed_as_that_call() -> None:
    row = quarantined(SourceFactory.create(), {"event": "X", "userId": "u-1", "messageId": "m-1"}, call_type="track")
    quarantine_replay(ids=[row.id])
    assert Event.objects.get().type == "track"


def test_a_message_of_a_batch_is_replayed_with_the_batch_defaults() -> None:
    raw = track("m-1", originalTimestamp="2026-11-20T08:58:00+00:00")
    row = quarantined(SourceFactory.create(), raw, defaults={"sentAt": "2026-11-20T08:59:00+00:00"})
    quarantine_replay(ids=[row.id])
    assert Event.objects.get().timestamp == RECEIVED - timedelta(minutes=1)


def test_two_rows_of_one_message_resolve_to_one_event() -> None:
    source = SourceFactory.create()
    rows = [quarantined(source, track("m-1")), quarantined(source, track("m-1"))]
    report = quarantine_replay(ids=[row.id for row in rows])
    assert (Event.objects.count(), {r.event_id for r in report.results}) == (1, {Event.objects.get().id})


def test_text_that_was_never_json_is_skipped() -> None:
    row = quarantined(SourceFactory.create(), None, raw_text="{not json", reason="malformed_json")
    assert quarantine_replay(ids=[row.id]).results[0].reason == "not_a_json_object"


def test_a_message_of_a_disabled_source_is_skipped() -> None:
    row = quarantined(SourceFactory.create(enabled=False), track("m-1"))
    assert quarantine_replay(ids=[row.id]).results[0].reason == "source_disabled"


def test_replay_by_filter_goes_in_id_order_a_page_at_a_time(mgmt: Api) -> None:
    source = SourceFactory.create()
    rows = [quarantined(source, track(f"m-{i}")) for i in range(3)]
    first = mgmt.post("/api/v1/quarantine/replay", {"source_id": str(source.id), "limit": 2}).json()
    second = mgmt.post(
        "/api/v1/quarantine/replay", {"source_id": str(source.id), "limit": 2, "after_id": first["last_id"]}
    ).json()
    assert (first["more"], second["more"], [r["id"] for r in first["results"] + second["results"]]) == (
        True,
        False,
        [row.id for row in rows],
    )


def test_every_given_id_is_replayed_whatever_the_limit() -> None:
    source = SourceFactory.create()
    rows = [quarantined(source, track(f"m-{i}")) for i in range(3)]
    report = quarantine_replay(ids=[row.id for row in rows], limit=1)
    assert [r.outcome for r in report.results] == ["accepted"] * 3


def test_replay_needs_ids_or_a_filter(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/quarantine/replay", {"limit": 10})
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_replay_of_ids_that_are_not_integers_is_a_400(mgmt: Api) -> None:
    assert mgmt.post("/api/v1/quarantine/replay", {"ids": ["x"]}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_message_another_replay_holds_is_skipped() -> None:
    row = quarantined(SourceFactory.create(), track("m-1"))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            QuarantinedMessage.objects.select_for_update().get(id=row.id)
            held.set()
            release.wait(timeout=10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(timeout=10)
    try:
        outcome = quarantine_replay(ids=[row.id]).results[0].outcome
    finally:
        release.set()
        holder.join(timeout=10)
    assert (outcome, Event.objects.count()) == ("skipped", 0)


# --- admin ------------------------------------------------------------------------------------


def test_the_admin_lists_quarantined_messages(admin_client: Client) -> None:
    quarantined(SourceFactory.create(), track("m-1"))
    response = admin_client.get("/admin/profiles/quarantinedmessage/", {"status": "open"})
    assert (response.status_code, b"missing_identity" in response.content) == (200, True)


def test_the_admin_replays_the_selected_messages(admin_client: Client) -> None:
    row = quarantined(SourceFactory.create(), track("m-1"))
    admin_client.post(
        "/admin/profiles/quarantinedmessage/",
        {"action": "replay_quarantined", "_selected_action": [row.id]},
    )
    row.refresh_from_db()
    assert row.event_id == Event.objects.get().id
