"""Sessions derived from ingested events: started by a customer's first event on a channel,
kept alive by later ones, ended after the channel's inactivity timeout."""

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from orchestration.routing import route
from profiles.ingest import event_ingest
from profiles.models import Event, EventOutbox
from profiles.services import system_source
from sessions.models import SessionRecord
from sessions.services import sessions_end_inactive
from sessions.tasks import end_inactive_sessions
from tests.conftest import IngestClient, SessionsClient
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _track(ingest: IngestClient, user_id: str, name: str = "Page Viewed") -> None:
    assert ingest.post("track", {"userId": user_id, "event": name}).status_code == 200


def _route_all() -> None:
    """Route what is on the outbox, as the routing task would."""
    route(list(EventOutbox.objects.values_list("event_id", flat=True)))


def test_a_first_event_on_a_channel_starts_a_session(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    session = SessionRecord.objects.get()
    assert (session.channel, session.origin, session.user_id, session.ended_at) == ("web", "events", "u-1", None)


def test_a_derived_session_emits_session_started(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    started = Event.objects.get(name="Session Started")
    assert started.properties["sessionId"] == str(SessionRecord.objects.get().id)


def test_throughlines_own_events_do_not_start_sessions(ingest: IngestClient) -> None:
    # A message outcome or a segment change is ingested under a system source: it is not the
    # customer's activity, so it must not open a session on that source's channel.
    _track(ingest, "u-1")
    _route_all()
    own = system_source(name="throughline-test")
    message = {"type": "track", "userId": "u-1", "event": "Message Delivered", "messageId": "own-1"}
    event_ingest(source=own, raw_messages=[message], call_type="track", received_at=timezone.now())
    _route_all()
    assert list(SessionRecord.objects.values_list("channel", flat=True)) == ["web"]


def test_later_events_keep_the_same_session_alive(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    first_seen = SessionRecord.objects.get().last_seen_at
    _track(ingest, "u-1", "Product Viewed")
    _route_all()
    session = SessionRecord.objects.get()
    assert session.last_seen_at > first_seen


def test_lifecycle_events_do_not_start_sessions(ingest: IngestClient) -> None:
    _track(ingest, "u-1", "Session Ended")
    _route_all()
    assert not SessionRecord.objects.exists()


def test_a_batch_of_many_customers_starts_one_session_each(ingest: IngestClient) -> None:
    batch = [{"type": "track", "userId": f"u-{i % 25}", "event": "X"} for i in range(200)]
    ingest.post("batch", {"batch": batch})
    _route_all()
    assert SessionRecord.objects.count() == 25


def test_an_api_session_on_the_channel_is_kept_alive_by_events(
    ingest: IngestClient, sessions_for: Any, source: Any
) -> None:
    web: SessionsClient = sessions_for(source)
    session = web.start({"userId": "u-1"}).json()
    _track(ingest, "u-1")
    _route_all()
    assert list(SessionRecord.objects.values_list("id", flat=True)) == [SessionRecord.objects.get(id=session["id"]).id]


def test_a_session_idle_past_the_channel_timeout_ends(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    ended = sessions_end_inactive(now=timezone.now() + timedelta(minutes=31))
    session = SessionRecord.objects.get()
    assert (ended, session.end_reason, session.version) == (1, "inactive", 2)


def test_an_inactive_end_emits_session_ended(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    sessions_end_inactive(now=timezone.now() + timedelta(minutes=31))
    assert Event.objects.get(name="Session Ended").properties["reason"] == "inactive"


def test_a_session_within_the_timeout_stays_active(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    assert sessions_end_inactive(now=timezone.now() + timedelta(minutes=29)) == 0


@override_settings(SESSIONS_INACTIVITY_SECONDS={"default": 1800, "web": 60})
def test_the_timeout_is_per_channel(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    assert sessions_end_inactive(now=timezone.now() + timedelta(minutes=2)) == 1


def test_the_periodic_task_ends_idle_sessions(ingest: IngestClient) -> None:
    _track(ingest, "u-1")
    _route_all()
    SessionRecord.objects.update(last_seen_at=timezone.now() - timedelta(hours=1))
    assert end_inactive_sessions.apply().get() == 1


def test_the_periodic_task_is_scheduled() -> None:
    assert settings.CELERY_BEAT_SCHEDULE["end-inactive-sessions"]["task"] == end_inactive_sessions.name


def test_a_session_ended_for_inactivity_reopens_on_resume(ingest: IngestClient, client: Any, sessions_for: Any) -> None:
    _track(ingest, "u-1")
    _route_all()
    sessions_end_inactive(now=timezone.now() + timedelta(minutes=31))
    kiosk_source: Any = SourceFactory(channel="pos")
    IngestClient(client, kiosk_source.write_key).post("identify", {"userId": "u-1"})
    body = sessions_for(kiosk_source).resume({"userId": "u-1"}).json()
    assert (body["active"], body["channel"]) == (True, "pos")


def test_an_event_after_a_merge_keeps_alive_the_session_of_the_profile_merged_away(
    client: Any, ingest: IngestClient
) -> None:
    mobile: Any = SourceFactory.create(channel="mobile")
    app = IngestClient(client, mobile.write_key)
    assert app.post("identify", {"userId": "u-1"}).status_code == 200  # the older profile: the survivor
    assert ingest.post("track", {"anonymousId": "a-1", "event": "Cart Viewed"}).status_code == 200
    _route_all()
    web_session = SessionRecord.objects.get(channel="web")
    # The web visitor signs in: its profile is merged into the older one.
    assert ingest.post("identify", {"userId": "u-1", "anonymousId": "a-1"}).status_code == 200
    _route_all()
    assert list(SessionRecord.objects.filter(channel="web").values_list("id", flat=True)) == [web_session.id]
    assert SessionRecord.objects.get(id=web_session.id).last_seen_at > web_session.last_seen_at
