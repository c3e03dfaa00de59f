"""One bad message never costs the others: what PostgreSQL cannot store (NUL, lone surrogates,
numbers out of range), nesting past MAX_DEPTH and timestamps out of range are quarantined one by
one with a reason saying what is wrong; lookups holding NUL are a 400; chunked bodies are read."""

import base64
import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import requests

from channels.services.webhook_secrets import webhook_secret_set
from config.core.signing import stripe_sign
from journeys.demo import VIP_ROUTING
from profiles.messages import MAX_DEPTH, MessageError, parse_message
from profiles.models import Event, QuarantinedMessage
from profiles.schemas.quarantine import quarantine_replay
from tests.conftest import FastPathClient, IngestClient
from tests.factories import SourceFactory
from tests.journeys.test_decide import publish

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def good_messages(count: int = 49) -> list[dict[str, Any]]:
    return [{"type": "track", "userId": f"u-{i}", "event": "Viewed", "messageId": f"good-{i}"} for i in range(count)]


def bad_track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u-bad", "event": "Viewed", "messageId": "bad", **fields}


def nested(depth: int) -> bytes:
    """A JSON object `depth` levels deep, as text: orjson cannot write one past 254 levels."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def batch_with(bad: bytes) -> bytes:
    """49 good messages and `bad` (a message's JSON text) last, as one batch body."""
    return orjson.dumps({"batch": good_messages()})[:-2] + b"," + bad + b"]}"


# --- NUL, lone surrogates and numbers: quarantined alone ------------------------------------------


NUL_PLACES = {
    "userId": bad_track(userId="u\x00"),
    "anonymousId": bad_track(userId=None, anonymousId="a\x00"),
    "event": bad_track(event="View\x00ed"),
    "messageId": bad_track(messageId="bad\x00"),
    "a property": bad_track(properties={"sku": "A\x001"}),
    "a property's name": bad_track(properties={"s\x00ku": "A1"}),
    "a trait": {"type": "identify", "userId": "u-bad", "messageId": "bad", "traits": {"name": "Ada\x00"}},
    "the context": bad_track(context={"page": {"path": "/\x00"}}),
    "a list": bad_track(properties={"tags": ["ok", "\x00"]}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("place", NUL_PLACES)
def test_a_nul_anywhere_quarantines_that_message_and_stores_the_other_49(ingest: IngestClient, place: str) -> None:
    response = ingest.post("batch", {"batch": [*good_messages(), NUL_PLACES[place]]})

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["errors"][0]["code"]) == (49, "invalid_string")
    assert "NUL character" in response.json()["errors"][0]["detail"]
    assert Event.objects.count() == 49
    row = QuarantinedMessage.objects.get()
    assert (row.reason, row.stage) == ("invalid_string", "ingest")
    assert orjson.loads(row.raw_text) == NUL_PLACES[place], "raw_text holds the message exactly as sent"
    assert "\x00" not in orjson.dumps(row.raw).decode() and "\ufffd" in orjson.dumps(row.raw).decode()


@pytest.mark.django_db
def test_a_single_call_with_a_nul_is_a_json_400_and_quarantined(ingest: IngestClient) -> None:
    response = ingest.post("track", bad_track(properties={"note": "\x00"}))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_string"
    assert response.json()["detail"].startswith("the string at /properties/note contains a NUL character")
    assert orjson.loads(QuarantinedMessage.objects.get().raw_text) == bad_track(properties={"note": "\x00"})


@pytest.mark.django_db
def test_a_batch_context_with_a_nul_is_a_json_400_naming_it(ingest: IngestClient) -> None:
    response = ingest.post("batch", {"batch": good_messages(2), "context": {"ip": "\x00"}})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_string"
    assert response.json()["detail"].startswith("batch-level the string at /context/ip")
    assert "\\u0000" in QuarantinedMessage.objects.get().raw_text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "reason"),
    [(b'"\\ud800"', "invalid_string"), (b'"\\udfff x"', "invalid_string"), (b"1e309", "invalid_number")],
)
def test_a_lone_surrogate_or_an_infinite_number_costs_only_its_own_message(
    ingest: IngestClient, value: bytes, reason: str
) -> None:
    bad = b'{"type":"track","userId":"u-bad","event":"Viewed","messageId":"bad","properties":{"x":' + value + b"}}"

    response = ingest.post("batch", None, raw=batch_with(bad))

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["errors"][0]["code"]) == (49, reason)
    assert QuarantinedMessage.objects.get().reason == reason


@pytest.mark.django_db
def test_a_quarantined_nul_message_replays_with_the_nul_replaced(ingest: IngestClient) -> None:
    ingest.post("batch", {"batch": [*good_messages(1), bad_track(properties={"sku": "A\x001"})]})

    report = quarantine_replay(ids=[QuarantinedMessage.objects.get().id])

    assert report.results[0].outcome == "accepted"
    assert Event.objects.get(message_id="bad").properties == {"sku": "A\ufffd1"}


# --- Nesting ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 256, 600, 1000])
def test_a_message_nested_past_the_maximum_is_quarantined_as_too_deep(ingest: IngestClient, depth: int) -> None:
    # The message is level 1 and properties level 2: its value is nested depth - 2 more.
    bad = (
        b'{"type":"track","userId":"u-bad","event":"Viewed","messageId":"bad","properties":' + nested(depth - 1) + b"}"
    )

    response = ingest.post("batch", None, raw=batch_with(bad))

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["errors"][0]["code"]) == (49, "too_deep")
    assert f"more than {MAX_DEPTH} levels" in response.json()["errors"][0]["detail"]
    row = QuarantinedMessage.objects.get()
    assert (row.message_id, row.raw, row.raw_text) == ("bad", None, bad.decode())


@pytest.mark.django_db
def test_a_message_nested_exactly_to_the_maximum_is_stored(ingest: IngestClient) -> None:
    bad = b'{"type":"track","userId":"u-bad","event":"Viewed","messageId":"bad","properties":' + nested(MAX_DEPTH - 1)

    response = ingest.post("batch", None, raw=batch_with(bad + b"}"))

    assert response.json()["accepted"] == 50, response.content


@pytest.mark.django_db
def test_a_too_deep_single_call_is_a_json_400(ingest: IngestClient) -> None:
    body = b'{"userId":"u","event":"Viewed","properties":' + nested(300) + b"}"

    response = ingest.post("track", None, raw=body)

    assert (response.status_code, response.json()["code"]) == (400, "too_deep")


# --- Timestamps ------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
        {"originalTimestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
        {"originalTimestamp": "0001-01-01T00:00:00+01:00"},
        {"timestamp": "9999-12-31T23:59:59-01:00"},
    ],
)
def test_a_time_out_of_range_is_quarantined_alone(ingest: IngestClient, fields: dict[str, str]) -> None:
    response = ingest.post("batch", {"batch": [*good_messages(), bad_track(**fields)]})

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["errors"][0]["code"]) == (49, "invalid_timestamp")
    assert "out of range" in response.json()["errors"][0]["detail"]


# --- What the errors say ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "detail"),
    [
        (
            {"type": "track", "userId": "x" * 4000, "event": "E"},
            "invalid_field",
            "userId is too long: 4000 characters, the limit is 512",
        ),
        (
            {"type": "track", "anonymousId": "a" * 513, "event": "E"},
            "invalid_field",
            "anonymousId is too long: 513 characters, the limit is 512",
        ),
        (
            {"type": "track", "userId": {"id": 1}, "event": "E"},
            "invalid_field",
            "userId must be a string or an integer, not an object",
        ),
        (
            {"type": "track", "userId": 1.5, "event": "E"},
            "invalid_field",
            "userId must be a string or an integer, not a number",
        ),
        (
            {"type": "alias", "userId": "u", "previousId": ["a"]},
            "invalid_field",
            "previousId must be a string or an integer, not an array",
        ),
        ({"type": "track", "userId": "u", "event": 7}, "invalid_field", "event must be a string, not a number"),
        (
            {"type": "track", "userId": "u", "event": "E" * 201},
            "invalid_field",
            "event is too long: 201 characters, the limit is 200",
        ),
        (
            {"type": "page", "userId": "u", "name": "N" * 201},
            "invalid_field",
            "name is too long: 201 characters, the limit is 200",
        ),
        (
            {"type": "track", "userId": "u", "event": "E", "messageId": "m" * 201},
            "invalid_message_id",
            "messageId is too long: 201 characters, the limit is 200",
        ),
        (
            {"type": "track", "userId": "u", "event": "E", "messageId": True},
            "invalid_message_id",
            "messageId must be a string or an integer, not a boolean",
        ),
        ({"userId": "u", "event": "E"}, "invalid_type", "type is missing"),
        ({"type": "tarck", "userId": "u", "event": "E"}, "invalid_type", "not 'tarck'"),
        (
            {"type": "track", "userId": "u", "event": "E", "properties": []},
            "invalid_field",
            "properties must be an object, not an array",
        ),
        (
            {"type": "track", "userId": "u", "event": "E", "timestamp": 1700000000},
            "invalid_timestamp",
            "timestamp must be an ISO 8601 string, not a number",
        ),
        ("track", "invalid_message", "each message must be a JSON object, not a string"),
    ],
)
def test_an_invalid_message_is_refused_saying_what_is_wrong(message: Any, code: str, detail: str) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message(message, call_type=None, received_at=NOW)

    assert refused.value.code == code
    assert detail in refused.value.detail


@pytest.mark.parametrize("user_id", ["", "   "])
def test_an_empty_user_id_is_still_a_missing_identity(user_id: str) -> None:
    with pytest.raises(MessageError) as refused:
        parse_message({"type": "track", "userId": user_id, "event": "E"}, call_type=None, received_at=NOW)

    assert refused.value.code == "missing_identity"


def test_an_external_id_entry_of_any_type_is_not_an_error() -> None:
    message = {"type": "track", "userId": "u", "event": "E", "context": {"externalIds": [{"type": ["x"], "id": "1"}]}}

    parsed = parse_message(message, call_type=None, received_at=NOW, external_kinds=frozenset({"crm_id"}))

    assert parsed.identities == [("user_id", "u")]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "body", "detail"),
    [
        ("track", [], "body must be a JSON object, not an array"),
        ("batch", {"messages": []}, 'batch is missing: send the messages as a list under "batch"'),
        ("batch", {"batch": {"type": "track"}}, "batch must be a list of messages, not an object"),
    ],
)
def test_a_refused_body_says_what_it_got(ingest: IngestClient, call: str, body: Any, detail: str) -> None:
    response = ingest.post(call, body)

    assert (response.status_code, response.json()["detail"]) == (400, detail)


# --- Lookups holding NUL -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["user_id", "anonymous_id", "email", "phone"])
def test_a_customer_lookup_with_a_nul_is_a_json_400(api: Any, kind: str) -> None:
    response = api("/api/v1/customers", **{kind: "a\x00b"})

    assert response.status_code == 400
    assert response.json() == {"detail": f"{kind} contains a NUL character (\\u0000)", "code": "invalid_lookup"}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_decide_with_a_nul_in_the_identity_is_a_json_400(source: Any, field: str) -> None:
    publish(copy.deepcopy(VIP_ROUTING))
    body = {field: "a\x00b", "channel": "web", "placement": "support_entry"}

    response = FastPathClient().post(
        "/v1/decide",
        data=orjson.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode(),
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_lookup"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("channel", "web\x00", "invalid_string"),
        ("context", {"page\x00": "/help"}, "invalid_string"),
        ("context", {"page": "/help\x00"}, "invalid_string"),
        ("context", orjson.loads(nested(70)), "too_deep"),
    ],
)
def test_decide_refuses_what_its_record_could_not_keep(source: Any, field: str, value: Any, code: str) -> None:
    """A decision is recorded after the answer: a value PostgreSQL refuses is a 400 now, not a
    200 whose record is lost."""
    publish(copy.deepcopy(VIP_ROUTING))
    body = {"userId": "u-1", "channel": "web", "placement": "support_entry", field: value}

    response = FastPathClient().post(
        "/v1/decide",
        data=orjson.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode(),
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == code


# --- Chunked bodies through the production web server --------------------------------------------------


def chunks(body: bytes, size: int = 100) -> Iterator[bytes]:
    """The body as requests streams it: Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# The fast path hands a request whose Accept has parameters to Django (config/core/fast_path.py).
PATHS = {"fast path": "application/json", "Django": "application/json; q=1"}


@pytest.mark.parametrize("path", PATHS)
def test_chunked_track_and_batch_are_read_by_the_real_server(server: str, path: str) -> None:
    source: Any = SourceFactory.create()
    headers = {"Accept": PATHS[path], "Content-Type": "application/json"}
    auth = (source.write_key, "")
    track = orjson.dumps({"userId": "u-1", "event": "Viewed", "messageId": "chunked-track"})
    batch = orjson.dumps({"batch": good_messages(30)})

    answers = [
        requests.post(f"{server}/v1/track", data=chunks(track), headers=headers, auth=auth, timeout=10),
        requests.post(f"{server}/v1/batch", data=chunks(batch), headers=headers, auth=auth, timeout=10),
    ]

    assert [(a.status_code, a.json()["accepted"]) for a in answers] == [(200, 1), (200, 30)]
    assert Event.objects.filter(source_id=source.id).count() == 31


def test_a_chunked_body_over_the_limit_is_a_json_413_from_the_real_server(server: str) -> None:
    source: Any = SourceFactory.create()
    body = orjson.dumps({"userId": "u-1", "event": "Viewed", "properties": {"pad": "x" * 40_000}})

    answer = requests.post(f"{server}/v1/track", data=chunks(body, 4096), auth=(source.write_key, ""), timeout=10)

    assert (answer.status_code, answer.json()["code"]) == (413, "body_too_large")


def test_a_chunked_provider_webhook_is_read_by_the_real_server(server: str) -> None:
    source: Any = SourceFactory.create(channel="pos")
    webhook_secret_set(source_id=source.id, provider="pos", secret="whsec_chunked")
    body = orjson.dumps(
        {
            "id": "evt_chunked",
            "type": "order.completed",
            "created": 1763900000,
            "data": {"order_id": "R-1", "total": "9.50", "currency": "EUR", "customer": {"email": "ada@example.com"}},
        }
    )

    answer = requests.post(
        f"{server}/v1/webhooks/pos/{source.id}",
        data=chunks(body, 50),
        headers={
            "Content-Type": "application/json",
            "Throughline-Signature": stripe_sign("whsec_chunked", body, int(time.time())),
        },
        timeout=10,
    )

    assert (answer.status_code, answer.json()["accepted"]) == (200, 1), answer.content
    assert Event.objects.filter(source_id=source.id).count() == 1
