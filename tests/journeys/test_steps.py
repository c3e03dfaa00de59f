"""Every step kind run by the real world: PostgreSQL, the channels contract, ingestion of
journeys' own calls, a local HTTP server for webhooks, durable timers ticked on a moved clock."""

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from channels.models import Delivery
from channels.services.contact_policy import contact_policy_set
from journeys.engine.machine import cohort_bucket
from journeys.models import Enrollment, EnrollmentStatus, Journey, StepRun, Timer
from journeys.services import enrollment_start, timers_tick
from profiles.models import Customer, Event
from tests.channels.servers import HttpSink, start_http_sink
from tests.conftest import client_traceparents
from tests.journeys.engine_support import fresh_contact_policy, identify, providers, publish, route_pending, send

pytestmark = pytest.mark.django_db
__all__ = ["fresh_contact_policy", "providers"]


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = start_http_sink()
    yield server
    server.stop()


def _customer(ingest: Any, user_id: str = "u1", **traits: Any) -> Customer:
    identify(ingest, user_id, **traits)
    return Customer.objects.get(identities__kind="user_id", identities__value=user_id)


def _api(steps: dict[str, Any], start: str, **extra: Any) -> dict[str, Any]:
    return {"trigger": {"type": "api"}, "entry": {"reentry": "every_time"}, "start": start, "steps": steps, **extra}


def _run(definition: dict[str, Any], customer: Customer, key: str = "j", now: datetime | None = None) -> Enrollment:
    version = publish(definition, key=key)
    return enrollment_start(journey=version.journey, customer_id=customer.id, now=now)


def _history(enrollment: Enrollment) -> list[tuple[str, str]]:
    return [(run.step, run.outcome) for run in StepRun.objects.filter(enrollment=enrollment).order_by("id")]


def test_branch_records_what_the_condition_saw_and_why(ingest: Any) -> None:
    customer = _customer(ingest, vip=True)
    definition = _api(
        {
            "is_vip": {
                "type": "branch",
                "branches": [
                    {
                        "name": "vip",
                        "condition": {"field": "traits.vip", "op": "equals", "value": True},
                        "next": "premium",
                    }
                ],
                "default": "self",
            },
            "premium": {"type": "route", "destination": "premium_support"},
            "self": {"type": "route", "destination": "self_service"},
        },
        "is_vip",
    )
    enrollment = _run(definition, customer)
    assert (enrollment.status, enrollment.end_reason) == ("completed", "routed to premium_support")
    branch = StepRun.objects.get(enrollment=enrollment, step="is_vip")
    assert branch.detail["chosen"] == "premium"
    assert branch.detail["branches"][0]["explain"]["saw"] is True
    assert "matched" in branch.detail["why"]
    assert enrollment.state["routes"][0]["destination"] == "premium_support"


def test_multi_way_split_takes_the_first_match(ingest: Any) -> None:
    customer = _customer(ingest, plan="gold", country="NL")
    definition = _api(
        {
            "split": {
                "type": "branch",
                "branches": [
                    {"condition": {"field": "traits.plan", "op": "equals", "value": "free"}, "next": "a"},
                    {"condition": {"field": "traits.country", "op": "in", "value": ["NL", "BE"]}, "next": "b"},
                    {"condition": {"field": "traits.plan", "op": "equals", "value": "gold"}, "next": "c"},
                ],
                "default": "d",
            },
            **{name: {"type": "route", "destination": name} for name in "abcd"},
        },
        "split",
    )
    enrollment = _run(definition, customer)
    detail = StepRun.objects.get(enrollment=enrollment, step="split").detail
    assert detail["chosen"] == "b"
    assert [b["matched"] for b in detail["branches"]] == [False, True]


def test_random_split_is_fixed_by_the_enrollment_id_with_a_holdout(ingest: Any) -> None:
    definition = _api(
        {
            "split": {
                "type": "random_split",
                "paths": [{"percent": 45, "next": "a"}, {"percent": 45, "next": "b"}],
                "holdout": 10,
            },
            "a": {"type": "route", "destination": "a"},
            "b": {"type": "route", "destination": "b"},
        },
        "split",
    )
    version = publish(definition)
    customers = [_customer(ingest, f"r{i}") for i in range(12)]
    for customer in customers:
        enrollment = enrollment_start(journey=version.journey, customer_id=customer.id)
        bucket = cohort_bucket(str(enrollment.id), "split")
        expected = "holdout" if bucket < 10 else ("a" if bucket < 55 else "b")
        got = "holdout" if enrollment.end_reason == "holdout" else enrollment.state["routes"][0]["destination"]
        assert got == expected


def test_set_traits_goes_through_ingestion_as_an_identify(ingest: Any) -> None:
    customer = _customer(ingest)
    enrollment = _run(
        _api(
            {
                "tag": {"type": "set_traits", "traits": {"cart_reminded": True}, "next": "done"},
                "done": {"type": "exit"},
            },
            "tag",
        ),
        customer,
    )
    route_pending()
    customer.refresh_from_db()
    assert customer.traits["cart_reminded"] is True
    assert enrollment.status == "completed"
    stored = Event.objects.get(message_id=f"journey:{enrollment.id}:tag:1")
    assert stored.type == "identify"


def test_emit_event_is_ingested_and_can_trigger_another_journey(ingest: Any) -> None:
    customer = _customer(ingest)
    publish(
        {
            "trigger": {"type": "event", "event": "VIP Welcomed"},
            "start": "r",
            "steps": {"r": {"type": "route", "destination": "lounge"}},
        },
        key="follow-up",
    )
    _run(
        _api(
            {
                "emit": {"type": "emit_event", "event": "VIP Welcomed", "properties": {"tier": "gold"}, "next": "done"},
                "done": {"type": "exit"},
            },
            "emit",
        ),
        customer,
    )
    route_pending()
    event = Event.objects.get(name="VIP Welcomed")
    assert event.properties["tier"] == "gold"
    assert event.customer_id == customer.id
    follow_up = Enrollment.objects.get(journey__key="follow-up")
    assert follow_up.state["routes"][0]["destination"] == "lounge"


def test_webhook_posts_signed_json_with_an_idempotency_key(ingest: Any, sink: HttpSink, settings: Any) -> None:
    settings.JOURNEYS_WEBHOOK_SECRET = "s3cret"
    customer = _customer(ingest)
    enrollment = _run(
        _api(
            {
                "hook": {"type": "webhook", "url": f"{sink.url}/crm", "body": {"kind": "lead"}, "next": "done"},
                "done": {"type": "exit"},
            },
            "hook",
        ),
        customer,
    )
    assert enrollment.status == "completed"
    (request,) = sink.requests
    body = orjson.loads(request.body)
    assert (body["kind"], body["customer_id"]) == ("lead", str(customer.id))
    assert request.headers["Idempotency-Key"] == f"{enrollment.id}:hook:1"
    stamp, signature = (part.split("=", 1)[1] for part in request.headers["Throughline-Signature"].split(","))
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    # Standard Webhooks: the same secret and timestamp, over "<webhook-id>.<timestamp>.<body>".
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == (f"{enrollment.id}:hook:1", stamp)
    signed = f"{enrollment.id}:hook:1.{stamp}.".encode() + request.body
    standard = base64.b64encode(hmac.new(b"s3cret", signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{standard}"


def test_a_failing_webhook_takes_on_failed(ingest: Any, sink: HttpSink) -> None:
    sink.default = (503, {}, b"down")
    customer = _customer(ingest)
    enrollment = _run(
        _api(
            {
                "hook": {"type": "webhook", "url": sink.url, "next": "ok", "on_failed": "fallback"},
                "ok": {"type": "route", "destination": "ok"},
                "fallback": {"type": "route", "destination": "fallback"},
            },
            "hook",
        ),
        customer,
    )
    assert enrollment.state["routes"][0]["destination"] == "fallback"
    assert StepRun.objects.get(enrollment=enrollment, step="hook").detail["status"] == 503


def test_wait_duration_is_a_durable_timer(ingest: Any) -> None:
    customer = _customer(ingest)
    start = timezone.now()
    enrollment = _run(
        _api({"pause": {"type": "wait", "duration": {"hours": 2}, "next": "done"}, "done": {"type": "exit"}}, "pause"),
        customer,
        now=start,
    )
    timer = Timer.objects.get(enrollment=enrollment)
    assert timer.due_at == start + timedelta(hours=2)
    assert timers_tick(now=start + timedelta(hours=1)) == 0
    assert timers_tick(now=start + timedelta(hours=2)) == 1
    enrollment.refresh_from_db()
    assert enrollment.status == "completed"
    assert _history(enrollment) == [("pause", "waiting"), ("pause", "waited"), ("done", "completed")]


def test_wait_until_a_local_window_uses_the_customers_time_zone(ingest: Any) -> None:
    customer = _customer(ingest, timezone="America/New_York")
    # 07:00 UTC on a Wednesday is 02:00 in New York: the 09:00-17:00 window opens at 14:00 UTC.
    at = datetime(2026, 3, 11, 7, 0, tzinfo=UTC)
    definition = _api(
        {
            "window": {
                "type": "wait",
                "until_local": {"start": "09:00", "end": "17:00", "weekdays": [0, 1, 2, 3, 4]},
                "next": "done",
            },
            "done": {"type": "exit"},
        },
        "window",
    )
    enrollment = _run(definition, customer, now=at)
    assert Timer.objects.get(enrollment=enrollment).due_at == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)  # EDT: UTC-4
    assert timers_tick(now=datetime(2026, 3, 11, 13, 0, tzinfo=UTC)) == 1
    enrollment.refresh_from_db()
    assert enrollment.status == "completed"


def test_wait_until_a_local_window_uses_the_fallback_zone_without_a_trait(ingest: Any, settings: Any) -> None:
    settings.JOURNEYS_FALLBACK_TIMEZONE = "Asia/Tokyo"
    customer = _customer(ingest)
    at = datetime(2026, 3, 11, 20, 0, tzinfo=UTC)  # 05:00 in Tokyo
    definition = _api(
        {
            "window": {"type": "wait", "until_local": {"start": "09:00", "end": "17:00"}, "next": "done"},
            "done": {"type": "exit"},
        },
        "window",
    )
    enrollment = _run(definition, customer, now=at)
    assert Timer.objects.get(enrollment=enrollment).due_at == datetime(2026, 3, 12, 0, 0, tzinfo=UTC)


def test_wait_for_event_checks_its_condition_and_times_out(ingest: Any) -> None:
    customer = _customer(ingest)
    definition = _api(
        {
            "wait": {
                "type": "wait_for_event",
                "event": "Order Completed",
                "condition": {"field": "event.properties.total", "op": "gte", "value": 50},
                "timeout": {"hours": 1},
                "next": "thanks",
                "on_timeout": "nudge",
            },
            "thanks": {"type": "route", "destination": "thanks"},
            "nudge": {"type": "route", "destination": "nudge"},
        },
        "wait",
    )
    enrollment = _run(definition, customer)
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 10}})
    enrollment.refresh_from_db()
    assert enrollment.status == "active"
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 80}})
    enrollment.refresh_from_db()
    assert enrollment.state["routes"][0]["destination"] == "thanks"


def test_wait_for_event_timeout_branch(ingest: Any) -> None:
    customer = _customer(ingest)
    definition = _api(
        {
            "wait": {
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": {"hours": 1},
                "next": "thanks",
                "on_timeout": "nudge",
            },
            "thanks": {"type": "route", "destination": "thanks"},
            "nudge": {"type": "route", "destination": "nudge"},
        },
        "wait",
    )
    enrollment = _run(definition, customer)
    timers_tick(now=timezone.now() + timedelta(hours=1, seconds=1))
    enrollment.refresh_from_db()
    assert enrollment.state["routes"][0]["destination"] == "nudge"
    assert ("wait", "timeout") in _history(enrollment)


def test_stops_matching_exits_a_waiting_customer(ingest: Any) -> None:
    customer = _customer(ingest, vip=True)
    definition = _api(
        {"pause": {"type": "wait", "duration": {"days": 1}, "next": "done"}, "done": {"type": "exit"}},
        "pause",
        exit=[{"stops_matching": {"field": "traits.vip", "op": "equals", "value": True}}],
    )
    enrollment = _run(definition, customer)
    send(ingest, {"type": "identify", "userId": "u1", "traits": {"vip": False}})
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.end_reason, enrollment.converted) == ("exited", "stopped matching", False)
    assert not Timer.objects.filter(enrollment=enrollment, fired_at__isnull=True).exists()


def test_an_exit_event_with_a_condition_marks_conversion(ingest: Any) -> None:
    customer = _customer(ingest)
    definition = _api(
        {"pause": {"type": "wait", "duration": {"days": 1}, "next": "done"}, "done": {"type": "exit"}},
        "pause",
        exit=[
            {
                "event": "Order Completed",
                "condition": {"field": "event.properties.total", "op": "gt", "value": 0},
                "converted": True,
            }
        ],
    )
    enrollment = _run(definition, customer)
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 0}})
    enrollment.refresh_from_db()
    assert enrollment.status == "active"
    send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": 5}})
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.converted) == ("exited", True)


def _message(**extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channels": ["push", "sms"],
        "purpose": "marketing",
        "content": {
            "push": {"title": "Hi {{ profile.first_name }}", "body": "b"},
            "sms": {"body": "Hi {{ profile.nickname }}"},
        },
        "default_content": {"sms": {"body": "Hi there"}},
        "next": "done",
        **extra,
    }


def test_a_channel_without_address_or_consent_is_skipped_with_the_reason(ingest: Any, providers: None) -> None:
    send(
        ingest,
        {
            "type": "identify",
            "userId": "np",
            "traits": {"phone": "+14155550101"},
            "context": {"consent": {"marketing": True}},
        },
    )
    customer = Customer.objects.get(identities__kind="user_id", identities__value="np")
    enrollment = _run(_api({"msg": _message(), "done": {"type": "exit"}}, "msg"), customer)
    delivery = Delivery.objects.get()
    assert delivery.channel == "sms"
    assert delivery.content == {"body": "Hi there"}  # profile.nickname is missing: the default content
    run = StepRun.objects.filter(enrollment=enrollment, outcome="delivering").get()
    assert run.detail["channels"][0] == {"channel": "push", "result": "unavailable", "reason": "no_address"}
    assert run.detail["channels"][1]["missing_variables"] == ["profile.nickname"]


def test_a_message_held_by_quiet_hours_waits_and_says_why(ingest: Any, providers: None) -> None:
    contact_policy_set(quiet_start="21:00", quiet_end="08:00", fallback_timezone="UTC")
    customer = _customer(ingest, timezone="Europe/Amsterdam")
    at = datetime(2026, 3, 11, 22, 30, tzinfo=UTC)  # 23:30 in Amsterdam
    enrollment = _run(_api({"msg": _message(on_capped="hold"), "done": {"type": "exit"}}, "msg"), customer, now=at)
    assert not Delivery.objects.exists()
    held = StepRun.objects.get(enrollment=enrollment, outcome="held")
    assert "quiet_hours" in held.detail["why"]
    timer = Timer.objects.get(enrollment=enrollment, kind="hold")
    assert timer.due_at == datetime(2026, 3, 12, 7, 0, tzinfo=UTC)  # 08:00 in Amsterdam
    timers_tick(now=timer.due_at)
    assert Delivery.objects.get().channel == "push"


def test_frequency_caps_hold_across_journeys_and_skip_when_told(ingest: Any, providers: None) -> None:
    contact_policy_set(caps=[{"purpose": "marketing", "channel": "*", "max": 1, "window": {"days": 7}}])
    customer = _customer(ingest)
    first = _run(_api({"msg": _message(), "done": {"type": "exit"}}, "msg"), customer, key="first")
    assert Delivery.objects.get().customer_id == customer.id
    second = _run(_api({"msg": _message(on_capped="skip"), "done": {"type": "exit"}}, "msg"), customer, key="second")
    assert Delivery.objects.count() == 1
    skipped = StepRun.objects.get(enrollment=second, outcome="skipped")
    assert "frequency_cap" in skipped.detail["why"]
    assert second.status == "completed"
    third = _run(_api({"msg": _message(on_capped="hold"), "done": {"type": "exit"}}, "msg"), customer, key="third")
    assert Timer.objects.get(enrollment=third, kind="hold").due_at > timezone.now() + timedelta(days=6)
    assert first.status == "active"


def test_transactional_messages_are_exempt_from_caps(ingest: Any, providers: None) -> None:
    contact_policy_set(caps=[{"purpose": "*", "channel": "*", "max": 1, "window": {"days": 7}}])
    customer = _customer(ingest)
    _run(_api({"msg": _message(), "done": {"type": "exit"}}, "msg"), customer, key="first")
    _run(_api({"msg": _message(purpose="transactional"), "done": {"type": "exit"}}, "msg"), customer, key="second")
    assert Delivery.objects.count() == 2


def test_reentry_once_refuses_a_second_entry(ingest: Any) -> None:
    from config.core.errors import Conflict

    customer = _customer(ingest)
    definition = {**_api({"done": {"type": "exit"}}, "done"), "entry": {"reentry": "once"}}
    _run(definition, customer)
    with pytest.raises(Conflict):
        enrollment_start(journey=Journey.objects.get(key="j"), customer_id=customer.id)
    assert Enrollment.objects.count() == 1


def test_erasing_a_customer_deletes_their_enrollments(ingest: Any) -> None:
    from profiles.privacy.services import customer_erase

    customer = _customer(ingest)
    _run(
        _api({"pause": {"type": "wait", "duration": {"days": 1}, "next": "done"}, "done": {"type": "exit"}}, "pause"),
        customer,
    )
    erasure = customer_erase(customer_id=customer.id, suppress=False, reason="test", actor="test")
    assert erasure.deleted["journey_enrollments"] == 1
    assert not Enrollment.objects.exists() and not Timer.objects.exists() and not StepRun.objects.exists()


def test_merged_customers_enrollments_move_to_the_survivor(ingest: Any) -> None:
    from profiles.merging import customer_merge

    a = _customer(ingest, "a")
    send(ingest, {"type": "identify", "anonymousId": "anon-b", "traits": {"email": "b@example.com"}})
    b = Customer.objects.get(identities__kind="anonymous_id", identities__value="anon-b")
    version = publish(
        _api({"pause": {"type": "wait", "duration": {"days": 1}, "next": "done"}, "done": {"type": "exit"}}, "pause")
    )
    enrollment_start(journey=version.journey, customer_id=a.id)
    moved = enrollment_start(journey=version.journey, customer_id=b.id)
    outcome = customer_merge(customer_ids=[a.id, b.id], reason="test", actor="test")
    survivor = outcome.survivor_id
    assert survivor is not None
    rows = Enrollment.objects.filter(journey=version.journey)
    assert {row.customer_id for row in rows} == {survivor}
    assert rows.filter(status=EnrollmentStatus.ACTIVE).count() == 1
    moved.refresh_from_db()
    assert moved.customer_id == survivor


def test_one_call_merging_two_groups_moves_each_losers_enrollments_to_its_own_survivor() -> None:
    from profiles.merging import MergeRequest, customers_merge
    from tests.factories import CustomerFactory

    first, first_loser, second, second_loser = CustomerFactory.create_batch(4)
    Customer.objects.filter(id__in=[first.id, second.id]).update(created_at=timezone.now() - timedelta(days=1))
    version = publish(
        _api({"pause": {"type": "wait", "duration": {"days": 1}, "next": "done"}, "done": {"type": "exit"}}, "pause")
    )
    kept = enrollment_start(journey=version.journey, customer_id=first.id)
    doubled = enrollment_start(journey=version.journey, customer_id=first_loser.id)
    moved = enrollment_start(journey=version.journey, customer_id=second_loser.id)
    requests = [
        MergeRequest(customer_ids=[first.id, first_loser.id], reason="test"),
        MergeRequest(customer_ids=[second.id, second_loser.id], reason="test"),
    ]
    customers_merge(requests=requests, actor="test")
    for row in (kept, doubled, moved):
        row.refresh_from_db()
    assert (kept.customer_id, kept.status) == (first.id, EnrollmentStatus.ACTIVE)
    assert (doubled.customer_id, doubled.status) == (first.id, EnrollmentStatus.EXITED)
    assert doubled.end_reason == f"merged into {first.id}"
    assert not Timer.objects.filter(enrollment=doubled, fired_at__isnull=True).exists()
    assert (moved.customer_id, moved.status) == (second.id, EnrollmentStatus.ACTIVE)


def test_entering_a_segment_starts_a_segment_triggered_journey(ingest: Any) -> None:
    from journeys import segments
    from tests.journeys.factories import SegmentFactory

    SegmentFactory.create(key="vip", name="VIP", condition={"field": "traits.vip", "op": "equals", "value": True})
    segments.segments_changed()
    publish(
        {
            "trigger": {"type": "segment_entered", "segment": "vip"},
            "start": "welcome",
            "steps": {"welcome": {"type": "route", "destination": "vip_lounge"}},
        },
        key="vip-welcome",
    )
    customer = _customer(ingest, vip=True)
    enrollment = Enrollment.objects.get(journey__key="vip-welcome")
    assert enrollment.customer_id == customer.id
    assert enrollment.state["trigger"]["name"] == "Segment Entered"
    assert enrollment.state["routes"][0]["destination"] == "vip_lounge"


def test_a_branch_on_event_history_reads_the_customers_events(ingest: Any) -> None:
    customer = _customer(ingest)
    for n in range(3):
        send(ingest, {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": f"order-{n}"})
    definition = _api(
        {
            "loyal": {
                "type": "branch",
                "branches": [
                    {
                        "condition": {
                            "performed": {"event": "Order Completed", "times": {"gte": 3}, "within": {"days": 30}}
                        },
                        "next": "thanks",
                    }
                ],
                "default": "plain",
            },
            "thanks": {"type": "route", "destination": "loyalty"},
            "plain": {"type": "route", "destination": "plain"},
        },
        "loyal",
    )
    enrollment = _run(definition, customer)
    assert enrollment.state["routes"][0]["destination"] == "loyalty"


def test_a_consent_branch_reads_consent_as_delivery_resolves_it(ingest: Any) -> None:
    # The identify gave marketing consent for every channel, not for sms by name: the branch
    # must see it granted for sms, as a send would.
    customer = _customer(ingest)
    definition = _api(
        {
            "may_text": {
                "type": "branch",
                "branches": [
                    {"condition": {"consent": {"purpose": "marketing", "channel": "sms"}}, "next": "text"},
                ],
                "default": "quiet",
            },
            "text": {"type": "route", "destination": "sms_offer"},
            "quiet": {"type": "route", "destination": "none"},
        },
        "may_text",
    )
    enrollment = _run(definition, customer)
    assert enrollment.state["routes"][0]["destination"] == "sms_offer"


def test_a_template_that_fails_to_render_sends_the_default_content(ingest: Any, providers: None) -> None:
    customer = _customer(ingest, zero=0)
    step = _message()
    # divided_by: 0 renders nothing and reports an error: the message must not go out with a hole.
    step["content"]["push"] = {"title": "You saved {{ 10 | divided_by: profile.zero }}", "body": "b"}
    step["default_content"]["push"] = {"title": "You saved", "body": "b"}
    _run(_api({"msg": step, "done": {"type": "exit"}}, "msg"), customer)
    assert Delivery.objects.get().content == {"title": "You saved", "body": "b"}


def test_a_webhook_answered_with_a_redirect_does_not_follow_it(ingest: Any, sink: HttpSink) -> None:
    """A 302 is the receiver's answer: following it could lead past the private-address check."""
    elsewhere = start_http_sink()
    try:
        sink.default = (302, {"Location": f"{elsewhere.url}/internal"}, b"")
        customer = _customer(ingest)
        enrollment = _run(
            _api(
                {
                    "hook": {"type": "webhook", "url": sink.url, "next": "ok", "on_failed": "fallback"},
                    "ok": {"type": "route", "destination": "ok"},
                    "fallback": {"type": "route", "destination": "fallback"},
                },
                "hook",
            ),
            customer,
        )
    finally:
        elsewhere.stop()
    assert (len(sink.requests), elsewhere.requests) == (1, [])
    assert enrollment.state["routes"][0]["destination"] == "fallback"
    assert StepRun.objects.get(enrollment=enrollment, step="hook").detail["status"] == 302


def test_a_webhook_call_carries_the_traceparent_of_its_span(
    ingest: Any, sink: HttpSink, spans: InMemorySpanExporter
) -> None:
    customer = _customer(ingest)
    _run(
        _api({"hook": {"type": "webhook", "url": sink.url, "next": "done"}, "done": {"type": "exit"}}, "hook"), customer
    )

    (request,) = sink.requests
    assert request.headers["traceparent"] in client_traceparents(spans)


def test_a_webhook_to_a_private_address_is_refused(ingest: Any, sink: HttpSink, settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False  # as in production: the sink is on 127.0.0.1
    customer = _customer(ingest)
    enrollment = _run(
        _api(
            {
                "hook": {"type": "webhook", "url": sink.url, "next": "ok", "on_failed": "fallback"},
                "ok": {"type": "route", "destination": "ok"},
                "fallback": {"type": "route", "destination": "fallback"},
            },
            "hook",
        ),
        customer,
    )
    assert sink.requests == []
    assert enrollment.state["routes"][0]["destination"] == "fallback"
    assert "private address" in StepRun.objects.get(enrollment=enrollment, step="hook").detail["error"]


def test_a_webhook_is_not_sent_unsigned(ingest: Any, sink: HttpSink, settings: Any) -> None:
    settings.JOURNEYS_WEBHOOK_SECRET = ""
    customer = _customer(ingest)
    enrollment = _run(
        _api({"hook": {"type": "webhook", "url": sink.url, "next": "done"}, "done": {"type": "exit"}}, "hook"),
        customer,
    )
    assert sink.requests == []
    assert enrollment.status == "failed"
