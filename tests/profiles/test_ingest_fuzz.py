"""A property-based fuzzer over the tracking API's bodies (Hypothesis).

The invariant: every answer is a 2xx or a JSON 4xx (`detail` and `code`), never a 5xx; and every
message of a 2xx is stored or quarantined: the call's events and quarantine rows grow by exactly
what the answer counts, and each messageId sent is found in one or the other.

Bodies are Segment-spec-shaped (track, identify, page, screen, group, alias, batches) with nasty
strings (NUL, lone surrogates sent as \\udXXX escapes, long, unicode), deep nesting, extreme
numbers (1e309, -0, integers past 64 bits), odd timestamps (year 1, 9999, offsets, garbage),
wrong types, missing fields and duplicate messageIds. They go through the WSGI fast path and the
Django stack in-process (FastPathClient: production's /v1 handling), outside a test transaction
so the one-statement path of simple calls runs as in production.

Reproducible in CI: derandomized, no example database. `HYPOTHESIS_PROFILE=long` runs many more
examples (locally, on purpose, with `--timeout=0`: it takes longer than the suite's per-test limit).
"""

import base64
import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.messages import json_text, storable
from profiles.models import Event, QuarantinedMessage
from tests.conftest import FastPathClient
from tests.factories import SourceFactory

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=3000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CALLS = ("track", "identify", "page", "screen", "group", "alias")

nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "x\udfff",
            "null",
            "undefined",
            "0",
            "é",
            "😀",
            "\u2028",
            "x" * 513,
            "y" * 5000,
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFFFF, exclude_categories=()), max_size=8),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, float("inf"), 10**30, 2**63, 2**64, -(2**63) - 1]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(nasty_text, children, max_size=3),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


objects = st.one_of(
    st.dictionaries(nasty_text, json_values, max_size=4),
    st.integers(min_value=1, max_value=1100).map(nested),
    json_values,  # a wrong type, mostly
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))])
timestamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=zones).map(
        lambda moment: moment.isoformat()
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-11-23T10:00:00.123456789Z",
            "2026-13-45T99:00:00Z",
            "yesterday",
            "",
        ]
    ),
    scalars,
)
identities = st.one_of(st.sampled_from(["u-1", "u-2", "anon-1"]), nasty_text, st.integers(), json_values)


@st.composite
def messages(draw: st.DrawFn, *, call: str | None) -> Any:
    """A Segment message, or (in a batch) now and then not a message at all."""
    if call is None and draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    fields: dict[str, Any] = {}
    if call is None:
        fields["type"] = draw(st.one_of(st.sampled_from(CALLS), nasty_text, st.none()))
    optional = {
        "userId": identities,
        "anonymousId": identities,
        "previousId": identities,
        "groupId": identities,
        "event": st.one_of(st.sampled_from(["Viewed", "Order Completed"]), nasty_text, json_values),
        "name": st.one_of(st.sampled_from(["Home"]), nasty_text, json_values),
        "properties": objects,
        "traits": objects,
        "context": objects,
        "integrations": objects,
        "timestamp": timestamps,
        "originalTimestamp": timestamps,
        "sentAt": timestamps,
        "messageId": st.one_of(st.integers(0, 5).map(lambda n: f"m-{n}"), nasty_text, json_values),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    return fields


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, Any]:
    """(path, body): a single call's message or a batch of them, or now and then not JSON."""
    call = draw(st.sampled_from((*CALLS, "batch", "batch")))
    if call != "batch":
        return call, draw(messages(call=call))
    body: dict[str, Any] = {"batch": draw(st.lists(messages(call=None), max_size=8))}
    for name, strategy in {"context": objects, "sentAt": timestamps, "integrations": objects}.items():
        if draw(st.integers(0, 3)) == 0:
            body[name] = draw(strategy)
    return call, body


def with_run(body: Any, run: str) -> Any:
    """The messageIds m-<n> made unique to this example, so examples never share one."""
    if isinstance(body, dict) and "batch" in body:
        return {**body, "batch": [with_run(m, run) for m in body["batch"]]} if isinstance(body["batch"], list) else body
    if isinstance(body, dict) and isinstance(body.get("messageId"), str) and body["messageId"].startswith("m-"):
        return {**body, "messageId": f"{run}-{body['messageId']}"}
    return body


def stored_or_quarantined(source: Any, message: Any) -> bool:
    message_id = message["messageId"]
    kept = storable(message_id)  # as the quarantine keeps one PostgreSQL cannot hold
    return (
        kept == message_id and Event.objects.filter(source_id=source.id, message_id=message_id.strip()).exists()
    ) or QuarantinedMessage.objects.filter(source_id=source.id, message_id=kept[:200]).exists()


@pytest.mark.usefixtures("transactional_db")
@PROFILE
@given(call=calls(), accept=st.sampled_from(["application/json", "application/json; q=1", ""]), twice=st.booleans())
def test_every_answer_is_2xx_or_a_json_4xx_and_every_accepted_message_is_kept(
    call: tuple[str, Any], accept: str, twice: bool
) -> None:
    source: Any = SourceFactory.create()
    path, body = call
    body = with_run(body, str(source.id))
    sent = [body] if path != "batch" else body["batch"] if isinstance(body.get("batch"), list) else []
    text = json_text(body).encode()
    headers: dict[str, Any] = {
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    }
    if accept:
        headers["HTTP_ACCEPT"] = accept  # with parameters: the Django stack, else the fast path

    for _ in range(2 if twice else 1):
        events = Event.objects.filter(source_id=source.id).count()
        quarantined = QuarantinedMessage.objects.filter(source_id=source.id).count()
        response = FastPathClient().post(f"/v1/{path}", data=text, content_type="application/json", **headers)

        answer = response.json()
        assert response.status_code in (200, 400, 413), (response.status_code, answer)
        if response.status_code >= 400:
            assert isinstance(answer["detail"], str) and isinstance(answer["code"], str), answer
        if response.status_code >= 400 and answer["code"] != "all_rejected":
            continue
        accepted, rejected = answer["accepted"], answer.get("rejected", 0)
        assert accepted + answer["duplicates"] + answer["suppressed"] + rejected == len(sent), answer
        assert Event.objects.filter(source_id=source.id).count() - events == accepted, answer
        assert QuarantinedMessage.objects.filter(source_id=source.id).count() - quarantined == rejected, answer
        for message in sent:
            if isinstance(message, dict) and isinstance(message.get("messageId"), str):
                assert stored_or_quarantined(source, message), message
