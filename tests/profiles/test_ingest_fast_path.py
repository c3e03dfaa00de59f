"""The WSGI fast path for the tracking calls (/v1/track, identify, ..., batch, import) gives the
Django views' answers.

Every case is sent twice, to the fast path (config.core.wsgi.fast_path, as production serves
/v1) and to the lean Django stack it stands in for (config.core.wsgi.SourceApiHandler), and the
two answers must be the same: status, headers in order and body, byte for byte. The bodies carry
no messageId, so the second call is stored as a new event, not answered as a duplicate.
"""

import base64
import gzip
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from django.test import override_settings

from config.core.fast_path import FastPath
from config.core.wsgi import SourceApiHandler, fast_path
from profiles.models import Event
from tests.factories import SourceFactory
from tests.wsgi import Answer, Recorder, call, environ

pytestmark = pytest.mark.django_db(transaction=True)

TRACK = orjson.dumps({"userId": "u-1", "event": "Viewed", "properties": {"page": "/pricing"}})


def _call(app: Callable[..., Any], path: str, body: bytes, headers: dict[str, Any], method: str = "POST") -> Answer:
    request = environ(method, path, body, {"CONTENT_TYPE": "application/json"})
    request.update(headers)
    return call(app, request)


def _auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture
def both(django_stack: SourceApiHandler, fast: FastPath, source: Any) -> Callable[..., tuple[Answer, Answer]]:
    def send(path: str, body: bytes, **headers: Any) -> tuple[Answer, Answer]:
        headers = {"HTTP_AUTHORIZATION": _auth(source.write_key), **headers}
        return _call(django_stack, path, body, headers), _call(fast, path, body, headers)

    return send


# Calls answered 200 by both: (path, body).
ACCEPTED_CASES: dict[str, tuple[str, bytes]] = {
    "track": ("/v1/track", TRACK),
    "identify": ("/v1/identify", orjson.dumps({"userId": "u-1", "traits": {"email": "ann@example.com"}})),
    "page": ("/v1/page", orjson.dumps({"anonymousId": "a-1", "name": "Pricing"})),
    "screen": ("/v1/screen", orjson.dumps({"anonymousId": "a-1", "name": "Home"})),
    "group": ("/v1/group", orjson.dumps({"userId": "u-1", "groupId": "g-1"})),
    "alias": ("/v1/alias", orjson.dumps({"userId": "u-2", "previousId": "u-1"})),
    "batch": ("/v1/batch", orjson.dumps({"batch": [{"type": "track", "userId": "u-1", "event": "A"}]})),
    "import": ("/v1/import", orjson.dumps({"batch": [{"type": "page", "anonymousId": "a-1"}]})),
    "a batch with one invalid message": (
        "/v1/batch",
        orjson.dumps({"batch": [{"type": "track", "userId": "u-1", "event": "A"}, {"type": "track"}]}),
    ),
}


@pytest.mark.parametrize("case", list(ACCEPTED_CASES))
def test_an_accepted_call_is_the_same(case: str, both: Callable[..., tuple[Answer, Answer]]) -> None:
    path, body = ACCEPTED_CASES[case]
    django_answer, fast_answer = both(path, body)
    assert (fast_answer, fast_answer[0]) == (django_answer, "200 OK")


# Requests answered the same by both: (path, body, headers); the source's Authorization unless given.
SAME_ANSWER_CASES: dict[str, tuple[str, bytes, dict[str, Any]]] = {
    "accept json": ("/v1/track", TRACK, {"HTTP_ACCEPT": "application/json"}),
    "gzip": ("/v1/track", gzip.compress(TRACK), {"HTTP_CONTENT_ENCODING": "gzip"}),
    "chunked": ("/v1/track", TRACK, {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}),
    "malformed json": ("/v1/track", b"{nope", {}),
    "not an object": ("/v1/track", b"[1]", {}),
    "missing identity": ("/v1/track", orjson.dumps({"event": "X"}), {}),
    "a batch whose every message is invalid": ("/v1/batch", orjson.dumps({"batch": [{"type": "track"}]}), {}),
    "a batch that is not a list": ("/v1/batch", orjson.dumps({"batch": {}}), {}),
    "no write key": ("/v1/track", TRACK, {"HTTP_AUTHORIZATION": ""}),
    "unknown write key": ("/v1/track", TRACK, {"HTTP_AUTHORIZATION": _auth("tlw_nobody")}),
    "bearer token": ("/v1/track", TRACK, {"HTTP_AUTHORIZATION": "Bearer abc"}),
    "malformed basic": ("/v1/track", TRACK, {"HTTP_AUTHORIZATION": "Basic !!!"}),
    "over the message limit": ("/v1/track", orjson.dumps({"userId": "u", "event": "x" * 40_000}), {}),
    "chunked over the message limit": (
        "/v1/track",
        orjson.dumps({"userId": "u", "event": "x" * 40_000}),
        {"CONTENT_LENGTH": "", "wsgi.input_terminated": True},
    ),
    "a declared length over the limit": ("/v1/track", TRACK, {"CONTENT_LENGTH": "100000"}),
    "an invalid content length": ("/v1/track", TRACK, {"CONTENT_LENGTH": "abc"}),
    "not gzip": ("/v1/track", b"\x1f\x8bnot really gzip", {"HTTP_CONTENT_ENCODING": "gzip"}),
    "an unknown encoding": ("/v1/track", TRACK, {"HTTP_CONTENT_ENCODING": "br"}),
    "https behind the proxy": ("/v1/track", TRACK, {"wsgi.url_scheme": "https"}),
    # What a web page's SDK sends: the short paths, text/plain, an Origin (CORS headers added).
    "a page's call": ("/v1/t", TRACK, {"HTTP_ORIGIN": "https://shop.example", "CONTENT_TYPE": "text/plain"}),
    "a page's batch": (
        "/v1/b",
        orjson.dumps({"batch": [orjson.loads(TRACK)]}),
        {"HTTP_ORIGIN": "https://shop.example"},
    ),
    "a page's refused call": ("/v1/t", b"{nope", {"HTTP_ORIGIN": "https://shop.example"}),
}


@pytest.mark.parametrize("case", list(SAME_ANSWER_CASES))
def test_the_fast_path_answers_as_the_django_view(case: str, both: Callable[..., tuple[Answer, Answer]]) -> None:
    path, body, headers = SAME_ANSWER_CASES[case]
    django_answer, fast_answer = both(path, body, **headers)
    assert fast_answer == django_answer


def test_a_write_key_in_the_body_is_the_same(both: Callable[..., tuple[Answer, Answer]], source: Any) -> None:
    body = orjson.dumps({"userId": "u-1", "event": "X", "writeKey": source.write_key})
    django_answer, fast_answer = both("/v1/track", body, HTTP_AUTHORIZATION="")
    assert (fast_answer, fast_answer[0]) == (django_answer, "200 OK")


def test_a_page_on_an_origin_the_source_does_not_allow_is_the_same_403(
    both: Callable[..., tuple[Answer, Answer]],
) -> None:
    guarded: Any = SourceFactory(allowed_origins=["https://shop.example"])
    django_answer, fast_answer = both(
        "/v1/t", TRACK, HTTP_AUTHORIZATION=_auth(guarded.write_key), HTTP_ORIGIN="https://elsewhere.example"
    )
    assert (fast_answer, fast_answer[0]) == (django_answer, "403 Forbidden")
    assert ("access-control-allow-origin", "*") in fast_answer[1]


def test_a_disabled_source_is_the_same_403(both: Callable[..., tuple[Answer, Answer]]) -> None:
    disabled: Any = SourceFactory(enabled=False)
    django_answer, fast_answer = both("/v1/track", TRACK, HTTP_AUTHORIZATION=_auth(disabled.write_key))
    assert (fast_answer, fast_answer[0]) == (django_answer, "403 Forbidden")


@override_settings(INGEST_RATE_LIMIT_PER_SECOND=0)
def test_over_the_rate_limit_is_the_same_429_with_retry_after(both: Callable[..., tuple[Answer, Answer]]) -> None:
    django_answer, fast_answer = both("/v1/track", TRACK)
    assert (fast_answer, ("Retry-After", "1") in fast_answer[1]) == (django_answer, True)


def test_a_chunked_body_from_a_server_that_does_not_end_the_input_is_the_same_411(
    both: Callable[..., tuple[Answer, Answer]],
) -> None:
    django_answer, fast_answer = both("/v1/track", TRACK, CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked")
    assert (fast_answer, fast_answer[0], orjson.loads(fast_answer[2])["code"]) == (
        django_answer,
        "411 Length Required",
        "length_required",
    )


def test_the_fast_paths_call_is_stored(fast: FastPath, source: Any) -> None:
    body = orjson.dumps({"userId": "u-1", "event": "Fast", "messageId": "fast-1"})
    status, _, _ = _call(fast, "/v1/track", body, {"HTTP_AUTHORIZATION": _auth(source.write_key)})
    assert (status, Event.objects.get(message_id="fast-1").name) == ("200 OK", "Fast")


def test_a_4xx_is_logged_as_django_logs_it(fast: FastPath, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        _call(fast, "/v1/batch", TRACK, {"HTTP_AUTHORIZATION": _auth("tlw_nobody")})
    assert [(r.levelname, r.getMessage(), r.status_code) for r in caplog.records if r.name == "django.request"] == [  # type: ignore[attr-defined]
        ("WARNING", "Unauthorized: /v1/batch", 401)
    ]


# Requests the fast path hands to Django untouched: (method, path, headers).
HANDED_ON = {
    "get": ("GET", "/v1/track", {}),
    "options": ("OPTIONS", "/v1/batch", {}),
    "trailing slash": ("POST", "/v1/track/", {}),
    "an unknown call": ("POST", "/v1/tracks", {}),
    "accept html": ("POST", "/v1/track", {"HTTP_ACCEPT": "text/html"}),
    "accept with parameters": ("POST", "/v1/identify", {"HTTP_ACCEPT": "application/json; indent=4"}),
}


@pytest.mark.parametrize("case", list(HANDED_ON))
def test_other_requests_are_handed_to_django(case: str) -> None:
    method, path, headers = HANDED_ON[case]
    recorder = Recorder()
    _call(fast_path(recorder), path, TRACK, headers, method=method)
    assert recorder.seen == [f"{method} {path}"]
