"""Official Segment-protocol clients, unchanged, against a live Throughline server.

Each client is configured as its users configure it, with only its host pointed at the live
server, and makes the same calls: an anonymous page view, an identify that names the user,
a track, a group and an alias. The tests then read what Throughline stored.

What went over the wire is observed without touching Throughline: the Python clients send
through a module-level `requests` session, on which a response hook records every request
and its status; the Node.js client reports its own requests through its `http_request` and
`http_response` events, which send.mjs prints.
"""

import gzip
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import rudderstack.analytics.client
import rudderstack.analytics.request
import segment.analytics.client
import segment.analytics.request

from profiles.models import Customer, Event, Identity
from tests.factories import SourceFactory

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE = shutil.which("node")
NODE_TIMEOUT_SECONDS = 60

ANONYMOUS_ID = "anon-7d1c6a"
USER_ID = "user-1042"
PREVIOUS_ID = "legacy-crm-88"
EMAIL = "Ann.Lee@Example.COM"
IDENTIFY_TRAITS = {"email": EMAIL, "name": "Ann Lee", "plan": "pro"}
PAGE_PROPERTIES = {"path": "/pricing", "title": "Pricing", "referrer": "https://example.org/"}
TRACK_PROPERTIES = {"order_id": "o-5531", "revenue": 42.5, "currency": "EUR", "items": [{"sku": "A-1", "qty": 2}]}
GROUP_TRAITS = {"name": "Acme Ltd", "employees": 120}

# The calls every client makes, in order, in the Segment spec's own (camelCase) terms, which
# are the Node.js client's parameter names; the Python clients take them in snake_case.
CALLS: list[dict[str, Any]] = [
    {"call": "page", "params": {"anonymousId": ANONYMOUS_ID, "name": "Pricing", "properties": PAGE_PROPERTIES}},
    {"call": "identify", "params": {"anonymousId": ANONYMOUS_ID, "userId": USER_ID, "traits": IDENTIFY_TRAITS}},
    {"call": "track", "params": {"userId": USER_ID, "event": "Order Completed", "properties": TRACK_PROPERTIES}},
    {"call": "group", "params": {"userId": USER_ID, "groupId": "acme", "traits": GROUP_TRAITS}},
    {"call": "alias", "params": {"userId": USER_ID, "previousId": PREVIOUS_ID}},
]
PYTHON_PARAMETER_NAMES = {
    "anonymousId": "anonymous_id",
    "userId": "user_id",
    "groupId": "group_id",
    "previousId": "previous_id",
}


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request a client made, as it went on the wire, and the status it got."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int

    def payload(self) -> dict[str, Any]:
        body = gzip.decompress(self.body) if self.headers.get("Content-Encoding") == "gzip" else self.body
        decoded: dict[str, Any] = json.loads(body)
        return decoded


@dataclass(frozen=True)
class Sent:
    """Everything one client sent for CALLS."""

    requests: list[WireRequest]

    def messages(self) -> list[dict[str, Any]]:
        return [message for request in self.requests for message in request.payload()["batch"]]

    def sent_at_by_message_id(self) -> dict[str, datetime]:
        return {
            message["messageId"]: datetime.fromisoformat(request.payload()["sentAt"])
            for request in self.requests
            for message in request.payload()["batch"]
        }


class ClientFailed(Exception):
    """The client reported that it could not deliver what it was given."""


def _recording(session: requests.Session, into: list[WireRequest]) -> Callable[..., None]:
    def record(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
        headers = {name: str(value) for name, value in request.headers.items()}
        into.append(WireRequest(str(request.url), headers, body, response.status_code))

    session.hooks["response"].append(record)
    return record


def _send_with_python_client(client_class: Any, session: requests.Session, host: str, write_key: str) -> Sent:
    recorded: list[WireRequest] = []
    errors: list[Exception] = []
    hook = _recording(session, recorded)
    # max_retries=0: a refused batch is reported through on_error at once, not after minutes of backoff.
    client = client_class(write_key, host=host, on_error=lambda error, batch: errors.append(error), max_retries=0)
    try:
        for call in CALLS:
            getattr(client, call["call"])(**{PYTHON_PARAMETER_NAMES.get(k, k): v for k, v in call["params"].items()})
        client.flush()
    finally:
        client.join()
        session.hooks["response"].remove(hook)
        # End the kept-alive connection, so the live server's request thread ends and closes its
        # (persistent) database connection instead of holding it until the test database is dropped.
        session.close()
    if errors:
        raise ClientFailed(f"{client_class.__module__} reported: {errors}")
    return Sent(recorded)


def send_with_segment_python(host: str, write_key: str) -> Sent:
    return _send_with_python_client(
        segment.analytics.client.Client, segment.analytics.request._session, host, write_key
    )


def send_with_rudder_python(host: str, write_key: str) -> Sent:
    return _send_with_python_client(
        rudderstack.analytics.client.Client, rudderstack.analytics.request._session, host, write_key
    )


def send_with_node(host: str, write_key: str) -> Sent:
    assert NODE is not None
    completed = subprocess.run(
        [NODE, "send.mjs", "--host", host, "--write-key", write_key],
        input=json.dumps(CALLS),
        check=False,  # the exit status is checked below, with send.mjs's own account of the failure
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
    )
    if completed.returncode != 0:
        raise ClientFailed(f"send.mjs exited {completed.returncode}: {completed.stderr}")
    return Sent(
        [
            WireRequest(request["url"], request["headers"], request["body"].encode(), request["status"])
            for request in json.loads(completed.stdout)["requests"]
        ]
    )


SENDERS: dict[str, Callable[[str, str], Sent]] = {
    "segment-python": send_with_segment_python,
    "rudder-python": send_with_rudder_python,
    "segment-node": send_with_node,
}
NEEDS_NODE = [
    pytest.mark.skipif(NODE is None, reason="node is not on PATH: @segment/analytics-node cannot run"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "@segment" / "analytics-node").is_dir(),
        reason="tests/clients/node/node_modules is missing: run scripts/node-clients (npm ci)",
    ),
]
CLIENTS = [
    pytest.param("segment-python"),
    pytest.param("rudder-python"),
    pytest.param("segment-node", marks=NEEDS_NODE),
]


@pytest.fixture(params=CLIENTS)
def sent(request: pytest.FixtureRequest, live_server: Any, transactional_db: Any) -> Sent:
    source: Any = SourceFactory()
    return SENDERS[request.param](live_server.url, source.write_key)


def _event(call: str) -> Event:
    return Event.objects.get(type=call)


def test_every_message_is_stored_once_under_the_message_id_the_client_generated(sent: Sent) -> None:
    on_the_wire = sorted((message["messageId"], message["type"]) for message in sent.messages())

    stored = sorted(Event.objects.values_list("message_id", "type"))

    assert stored == on_the_wire
    assert sorted(call for _, call in stored) == sorted(call["call"] for call in CALLS)


def test_track_is_stored_with_its_event_name_and_properties(sent: Sent) -> None:
    event = _event("track")

    assert (event.name, event.user_id, event.properties) == ("Order Completed", USER_ID, TRACK_PROPERTIES)


def test_page_is_stored_with_its_name_and_properties(sent: Sent) -> None:
    event = _event("page")

    assert (event.name, event.anonymous_id, event.properties) == ("Pricing", ANONYMOUS_ID, PAGE_PROPERTIES)


def test_group_is_stored_with_its_group_id_and_traits(sent: Sent) -> None:
    event = _event("group")

    assert (event.extra["groupId"], event.properties) == ("acme", GROUP_TRAITS)


def test_every_identity_the_calls_carry_is_stitched_onto_one_customer(sent: Sent) -> None:
    customer = Customer.objects.get()

    assert set(Identity.objects.filter(customer=customer).values_list("kind", "value")) == {
        ("anonymous_id", ANONYMOUS_ID),
        ("user_id", USER_ID),
        ("email", EMAIL.lower()),
        ("anonymous_id", PREVIOUS_ID),
    }
    assert set(Event.objects.values_list("customer_id", flat=True)) == {customer.id}


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param("segment-python"),
        pytest.param("rudder-python"),
        pytest.param("segment-node", marks=NEEDS_NODE),
    ],
    indirect=True,
)
def test_identify_traits_are_merged_into_the_customer(sent: Sent) -> None:
    assert Customer.objects.get().traits == IDENTIFY_TRAITS


def test_each_event_keeps_the_timestamp_the_client_gave_it(sent: Sent) -> None:
    on_the_wire = {message["messageId"]: datetime.fromisoformat(message["timestamp"]) for message in sent.messages()}

    assert dict(Event.objects.values_list("message_id", "timestamp")) == on_the_wire


def test_each_event_keeps_the_sent_at_of_its_batch_which_precedes_its_receipt(sent: Sent) -> None:
    sent_at = sent.sent_at_by_message_id()
    events = Event.objects.all()

    assert {event.message_id: event.sent_at for event in events} == sent_at
    assert all(event.timestamp <= sent_at[event.message_id] <= event.received_at for event in events)


@pytest.mark.parametrize("sent", [pytest.param("rudder-python")], indirect=True)
def test_rudder_gzips_every_batch_and_throughline_accepts_it(sent: Sent) -> None:
    # The client is left at its own default (gzip=True). The bytes it put on the wire carry the
    # gzip header and magic number, Throughline answered 200, and it stored the messages that
    # only inflating those bytes could have given it.
    assert {(r.headers.get("Content-Encoding"), r.body[:2], r.status) for r in sent.requests} == {
        ("gzip", b"\x1f\x8b", 200)
    }
    assert Event.objects.count() == len(sent.messages()) == len(CALLS)
