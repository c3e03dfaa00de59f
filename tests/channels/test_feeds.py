"""The mapping adapter (a source's field mapping on its signed webhook) and the polling adapter
(a legacy HTTP feed pulled from a cursor), against a real local feed server."""

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from channels.adapters.mapping import compile_mapping, to_messages, validate_mapping
from channels.feeds import feeds_poll_due, polling_feed_set, source_mapping_set
from channels.models import PollingFeed
from channels.services.webhook_secrets import webhook_secret_set
from config.core.errors import BadRequest
from config.core.signing import stripe_sign
from profiles.models import Event, Source
from tests.channels.servers import HttpSink
from tests.conftest import client_traceparents
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks" / "mapped" / "legacy_orders.json"
SECRET = "whsec_mapped"
ORDERS = {
    "items": "data.orders",
    "event": {"path": "kind", "values": {"order.paid": "Order Completed", "order.refunded": "Order Refunded"}},
    "messageId": "order_no",
    "messageIdPrefix": "erp",
    "userId": "client.ref",
    "timestamp": "created",
    "properties": {"order_id": "order_no", "revenue": "amount", "currency": "currency", "first_sku": "lines.0.sku"},
    "traits": {"email": "client.mail"},
}


@pytest.fixture
def erp() -> Source:
    source: Source = SourceFactory.create(channel="server")
    webhook_secret_set(source_id=source.id, provider="mapped", secret=SECRET)
    return source


def _post(client: Client, source: Source, body: bytes) -> Any:
    return client.post(
        f"/v1/webhooks/mapped/{source.id}",
        data=body,
        content_type="application/json",
        HTTP_THROUGHLINE_SIGNATURE=stripe_sign(SECRET, body, int(time.time())),
    )


def test_the_mapping_turns_a_system_s_records_into_canonical_events(client: Client, erp: Source) -> None:
    source_mapping_set(source_id=erp.id, spec=ORDERS)

    response = _post(client, erp, FIXTURE.read_bytes())

    assert response.status_code == 200
    assert response.json()["accepted"] == 1  # the draft's kind is not mapped: skipped
    event = Event.objects.get(source_id=erp.id)
    assert (event.name, event.message_id) == ("Order Completed", "erp:A-10041")
    assert event.properties == {"order_id": "A-10041", "revenue": 59.9, "currency": "EUR", "first_sku": "TEE-BLK-M"}
    assert event.timestamp.isoformat().startswith("2026-11-23T")


def test_a_record_sent_twice_is_stored_once(client: Client, erp: Source) -> None:
    source_mapping_set(source_id=erp.id, spec=ORDERS)
    body = FIXTURE.read_bytes()

    _post(client, erp, body)
    time.sleep(1.01)  # a new signature, so not a replay
    again = _post(client, erp, body)

    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 1)
    assert Event.objects.filter(source_id=erp.id).count() == 1


def test_a_source_without_a_mapping_gets_a_400(client: Client, erp: Source) -> None:
    response = _post(client, erp, b'{"id": 1}')

    assert (response.status_code, response.json()["code"]) == (400, "no_mapping")


def test_an_unsigned_mapped_webhook_is_refused(client: Client, erp: Source) -> None:
    source_mapping_set(source_id=erp.id, spec=ORDERS)

    response = client.post(f"/v1/webhooks/mapped/{erp.id}", data=FIXTURE.read_bytes(), content_type="application/json")

    assert response.status_code == 401
    assert not Event.objects.exists()


def test_an_invalid_mapping_is_refused_with_the_faulty_part(erp: Source) -> None:
    with pytest.raises(BadRequest) as raised:
        source_mapping_set(source_id=erp.id, spec={**ORDERS, "properties": {"revenue": "amount..x"}})

    assert "/properties/revenue" in raised.value.detail


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"event": "X", "userId": "u"}, "/messageId"),
        ({"event": "X", "messageId": "id"}, "/userId"),
        ({"type": "alias", "messageId": "id", "userId": "u"}, "/type"),
        ({"messageId": "id", "userId": "u"}, "/event"),
        ({"event": "X", "messageId": "id", "userId": "u", "colour": 1}, ""),
    ],
)
def test_mapping_validation_points_at_the_fault(spec: dict[str, Any], path: str) -> None:
    (error,) = validate_mapping(spec)

    assert error.path == path


def test_an_identify_mapping_carries_traits() -> None:
    compiled = compile_mapping({"type": "identify", "messageId": "id", "userId": "ref", "traits": {"plan": "tier"}})

    assert to_messages(compiled, {"id": 7, "ref": "c1", "tier": "gold"}) == [
        {"type": "identify", "messageId": ":7", "userId": "c1", "traits": {"plan": "gold"}}
    ]


# --- polling -------------------------------------------------------------------------------------


def _page(orders: list[dict[str, Any]], cursor: str) -> tuple[int, dict[str, str], bytes]:
    return (200, {"Content-Type": "application/json"}, orjson.dumps({"data": {"orders": orders}, "next": cursor}))


def _order(number: str, ref: str = "CRM-1") -> dict[str, Any]:
    return {"order_no": number, "kind": "order.paid", "amount": 10, "client": {"ref": ref}}


@pytest.fixture
def feed(http_sink: HttpSink, erp: Source) -> PollingFeed:
    source_mapping_set(source_id=erp.id, spec=ORDERS)
    http_sink.by_path = {
        "/orders": _page([_order("A-1"), _order("A-2")], "c2"),
        "/orders?since=c2": _page([_order("A-3", "CRM-2")], "c3"),
        "/orders?since=c3": _page([], "c3"),
    }
    return polling_feed_set(
        source_id=erp.id,
        url=f"{http_sink.url}/orders",
        interval_seconds=30,
        next_cursor_path="next",
        auth_header_value="Bearer legacy-api-key",
    )


def _due(feed: PollingFeed) -> None:
    PollingFeed.objects.filter(id=feed.id).update(next_poll_at=timezone.now())


def test_polling_follows_the_cursor_and_ingests_every_page(feed: PollingFeed, http_sink: HttpSink) -> None:
    (result,) = feeds_poll_due()

    assert (result.pages, result.accepted, result.cursor) == (3, 3, "c3")
    assert [request.path for request in http_sink.requests] == ["/orders", "/orders?since=c2", "/orders?since=c3"]
    assert http_sink.requests[0].headers["Authorization"] == "Bearer legacy-api-key"
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["erp:A-1", "erp:A-2", "erp:A-3"]


def test_a_feed_is_not_polled_before_its_interval(feed: PollingFeed) -> None:
    feeds_poll_due()

    assert feeds_poll_due() == []


def test_the_next_poll_starts_from_the_stored_cursor(feed: PollingFeed, http_sink: HttpSink) -> None:
    feeds_poll_due()
    _due(feed)
    http_sink.requests.clear()

    (result,) = feeds_poll_due()

    assert ([request.path for request in http_sink.requests], result.accepted) == (["/orders?since=c3"], 0)


def test_pages_fetched_again_are_not_stored_twice(feed: PollingFeed) -> None:
    feeds_poll_due()
    PollingFeed.objects.filter(id=feed.id).update(cursor="", next_poll_at=timezone.now())

    (result,) = feeds_poll_due()

    assert (result.accepted, result.duplicates) == (0, 3)
    assert Event.objects.count() == 3


def test_a_failing_feed_keeps_its_cursor_and_says_why(feed: PollingFeed, http_sink: HttpSink) -> None:
    http_sink.by_path["/orders"] = (503, {}, b"maintenance")

    (result,) = feeds_poll_due()

    feed.refresh_from_db()
    assert (result.error, feed.cursor, feed.last_error) == ("HTTP 503 from the feed", "", "HTTP 503 from the feed")


def test_a_feed_needs_an_http_url(erp: Source) -> None:
    with pytest.raises(BadRequest):
        polling_feed_set(source_id=erp.id, url="file:///etc/passwd")


def test_a_feed_resolving_to_a_private_address_is_not_polled(
    feed: PollingFeed, http_sink: HttpSink, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE_HOSTS = False  # as in production: the feed server is on 127.0.0.1

    (result,) = feeds_poll_due()

    assert http_sink.requests == []
    assert (result.pages, result.error) == (0, "refused: 127.0.0.1 resolves to a private address (127.0.0.1)")


def test_a_feed_answering_with_a_redirect_is_not_followed(feed: PollingFeed, http_sink: HttpSink) -> None:
    http_sink.by_path["/orders"] = (302, {"Location": "/orders?since=c2"}, b"")

    (result,) = feeds_poll_due()

    assert [request.path for request in http_sink.requests] == ["/orders"]
    assert (result.pages, result.error) == (0, "HTTP 302 from the feed")


def test_a_feed_poll_carries_the_traceparent_of_its_span(
    feed: PollingFeed, http_sink: HttpSink, spans: InMemorySpanExporter
) -> None:
    feeds_poll_due()

    sent = [request.headers["traceparent"] for request in http_sink.requests]
    assert (len(sent), set(sent)) == (3, client_traceparents(spans))
