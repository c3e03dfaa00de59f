"""The WSGI fast path for GET and PATCH /v1/sessions/{id} gives the Django view's answers.

Every case is sent twice, to the fast path and to the lean Django stack it stands in for
(config.core.wsgi.SourceApiHandler), and the two answers must be the same: status, headers in
order and body, byte for byte. The rest of the sessions suite also goes through the fast path
(tests/conftest.py: SessionsClient).
"""

import base64
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.test import override_settings
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config.core import observability
from config.core import redis as tl_redis
from config.core.fast_path import MIRRORED_MIDDLEWARE, FastPath
from config.core.wsgi import SourceApiHandler, fast_path, source_api_middleware
from sessions.fast_path import ROUTE
from tests.conftest import SessionsClient
from tests.factories import SourceFactory
from tests.wsgi import Answer, Recorder, call, environ

pytestmark = pytest.mark.django_db(transaction=True)


def _call(app: Callable[..., Any], method: str, path: str, body: bytes = b"", **headers: str) -> Answer:
    return call(app, environ(method, path, body, headers))


@pytest.fixture
def web(source: Any, sessions_for: Any) -> SessionsClient:
    return sessions_for(source)


@pytest.fixture
def session_id(web: SessionsClient) -> str:
    response = web.start({"userId": "u-1", "device": "laptop", "state": {"form": {"step": 1}, "cart": ["A1"]}})
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


@pytest.fixture
def both(django_stack: SourceApiHandler, fast: FastPath) -> Callable[..., tuple[Answer, Answer]]:
    def send(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[Answer, Answer]:
        return _call(django_stack, method, path, body, **headers), _call(fast, method, path, body, **headers)

    return send


def _auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


# Requests that change nothing, each answered the same by both. (method, headers, body); the
# Authorization header is the source's own unless given.
SAME_ANSWER_CASES = {
    "get": ("GET", {}, b""),
    "get with accept json": ("GET", {"HTTP_ACCEPT": "application/json"}, b""),
    "get not modified": ("GET", {"HTTP_IF_NONE_MATCH": '"1"'}, b""),
    "get with a stale if-none-match": ("GET", {"HTTP_IF_NONE_MATCH": '"7"'}, b""),
    "get without a key": ("GET", {"HTTP_AUTHORIZATION": ""}, b""),
    "get with an unknown key": ("GET", {"HTTP_AUTHORIZATION": _auth("tlw_nobody")}, b""),
    "get with a bearer token": ("GET", {"HTTP_AUTHORIZATION": "Bearer abc"}, b""),
    "get with malformed basic": ("GET", {"HTTP_AUTHORIZATION": "Basic !!!"}, b""),
    "patch with a stale version": ("PATCH", {"HTTP_IF_MATCH": '"7"', "CONTENT_TYPE": "application/json"}, b"{}"),
    "patch without if-match": ("PATCH", {"CONTENT_TYPE": "application/json"}, b'{"a":1}'),
    "patch with a junk if-match": ("PATCH", {"HTTP_IF_MATCH": "7", "CONTENT_TYPE": "application/json"}, b"{}"),
    "patch with malformed json": ("PATCH", {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/json"}, b"{nope"),
    "patch with no body": ("PATCH", {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/json"}, b""),
    "patch that is not an object": ("PATCH", {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/json"}, b"[1]"),
    "patch form encoded": (
        "PATCH",
        {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/x-www-form-urlencoded"},
        b"a=1",
    ),
    "patch over the body limit": (
        "PATCH",
        {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/json"},
        orjson.dumps({"blob": "x" * 100_000}),
    ),
    "patch with a non-ascii error": (
        "PATCH",
        {"HTTP_IF_MATCH": '"1"', "CONTENT_TYPE": "application/json"},
        '{"é'.encode(),
    ),
}


@pytest.mark.parametrize("case", list(SAME_ANSWER_CASES))
def test_the_fast_path_answers_as_the_django_view(
    case: str, both: Callable[..., tuple[Answer, Answer]], session_id: str, web: SessionsClient
) -> None:
    method, headers, body = SAME_ANSWER_CASES[case]
    django_answer, fast_answer = both(
        method, f"/v1/sessions/{session_id}", body, **{"HTTP_AUTHORIZATION": web.auth, **headers}
    )
    assert fast_answer == django_answer


def test_an_unknown_session_is_the_same_404(both: Callable[..., tuple[Answer, Answer]], web: SessionsClient) -> None:
    django_answer, fast_answer = both(
        "GET", "/v1/sessions/00000000-0000-4000-8000-000000000000", HTTP_AUTHORIZATION=web.auth
    )
    assert (fast_answer, fast_answer[0]) == (django_answer, "404 Not Found")


def test_another_sources_session_is_the_same_404(both: Callable[..., tuple[Answer, Answer]], session_id: str) -> None:
    other: Any = SourceFactory(channel="pos")
    django_answer, fast_answer = both("GET", f"/v1/sessions/{session_id}", HTTP_AUTHORIZATION=_auth(other.write_key))
    assert (fast_answer, fast_answer[0]) == (django_answer, "404 Not Found")


def test_a_disabled_source_is_the_same_403(both: Callable[..., tuple[Answer, Answer]], session_id: str) -> None:
    disabled: Any = SourceFactory(enabled=False)
    django_answer, fast_answer = both("GET", f"/v1/sessions/{session_id}", HTTP_AUTHORIZATION=_auth(disabled.write_key))
    assert (fast_answer, fast_answer[0]) == (django_answer, "403 Forbidden")


@override_settings(SESSIONS_RATE_LIMIT_PER_SECOND=0)
def test_over_the_rate_limit_is_the_same_429_with_retry_after(
    both: Callable[..., tuple[Answer, Answer]], session_id: str, web: SessionsClient
) -> None:
    django_answer, fast_answer = both("GET", f"/v1/sessions/{session_id}", HTTP_AUTHORIZATION=web.auth)
    assert (fast_answer, ("Retry-After", "1") in fast_answer[1]) == (django_answer, True)


def test_patching_an_ended_session_is_the_same_409(
    both: Callable[..., tuple[Answer, Answer]], session_id: str, web: SessionsClient
) -> None:
    web.end(session_id)
    django_answer, fast_answer = both(
        "PATCH", f"/v1/sessions/{session_id}", b'{"a":1}', HTTP_AUTHORIZATION=web.auth, HTTP_IF_MATCH="*"
    )
    assert (fast_answer, fast_answer[0]) == (django_answer, "409 Conflict")


def test_a_corrupt_redis_copy_is_the_same_500(
    both: Callable[..., tuple[Answer, Answer]], session_id: str, web: SessionsClient
) -> None:
    tl_redis.client().hset(tl_redis.Keys.session(session_id), "d", b"{}")
    django_answer, fast_answer = both("GET", f"/v1/sessions/{session_id}", HTTP_AUTHORIZATION=web.auth)
    assert (fast_answer, fast_answer[0]) == (django_answer, "500 Internal Server Error")


def test_a_patch_is_written_and_answered_as_the_django_view_answers_it(
    both: Callable[..., tuple[Answer, Answer]], session_id: str, web: SessionsClient
) -> None:
    django_answer, fast_answer = both(
        "PATCH",
        f"/v1/sessions/{session_id}",
        b'{"cart":null,"form":{"step":2}}',
        HTTP_AUTHORIZATION=web.auth,
        HTTP_IF_MATCH="*",
        CONTENT_TYPE="application/merge-patch+json",
    )
    django_body, fast_body = orjson.loads(django_answer[2]), orjson.loads(fast_answer[2])
    assert (fast_answer[0], [name for name, _ in fast_answer[1]]) == (
        django_answer[0],
        [n for n, _ in django_answer[1]],
    )
    assert (fast_body["version"], fast_body["state"], dict(fast_answer[1])["ETag"]) == (
        django_body["version"] + 1,
        django_body["state"],
        '"3"',
    )
    assert web.get(session_id).json()["version"] == 3


def test_a_request_without_a_sane_request_id_gets_a_new_one(
    fast: FastPath, session_id: str, web: SessionsClient
) -> None:
    _, headers, _ = _call(
        fast, "GET", f"/v1/sessions/{session_id}", HTTP_AUTHORIZATION=web.auth, HTTP_X_REQUEST_ID="bad id!"
    )
    request_id = dict(headers)["X-Request-ID"]
    assert (len(request_id), request_id != "bad id!") == (32, True)


def test_a_4xx_is_logged_as_django_logs_it(
    fast: FastPath, web: SessionsClient, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/v1/sessions/00000000-0000-4000-8000-000000000000"
    with caplog.at_level(logging.WARNING, logger="django.request"):
        _call(fast, "GET", path, HTTP_AUTHORIZATION=web.auth)
    assert [(r.levelname, r.getMessage(), r.status_code) for r in caplog.records if r.name == "django.request"] == [  # type: ignore[attr-defined]
        ("WARNING", f"Not Found: {path}", 404)
    ]


# Requests the fast path hands to Django untouched: (method, path, headers).
HANDED_ON = {
    "start": ("POST", "/v1/sessions", {}),
    "end": ("POST", "/v1/sessions/00000000-0000-4000-8000-000000000000/end", {}),
    "head": ("HEAD", "/v1/sessions/00000000-0000-4000-8000-000000000000", {}),
    "options": ("OPTIONS", "/v1/sessions/00000000-0000-4000-8000-000000000000", {}),
    "put": ("PUT", "/v1/sessions/00000000-0000-4000-8000-000000000000", {}),
    "upper-case id": ("GET", "/v1/sessions/00000000-0000-4000-8000-00000000000A", {}),
    "trailing slash": ("GET", "/v1/sessions/00000000-0000-4000-8000-000000000000/", {}),
    "accept html": ("GET", "/v1/sessions/00000000-0000-4000-8000-000000000000", {"HTTP_ACCEPT": "text/html"}),
    "accept with parameters": (
        "GET",
        "/v1/sessions/00000000-0000-4000-8000-000000000000",
        {"HTTP_ACCEPT": "application/json; indent=4"},
    ),
    "ingestion with a trailing slash": ("POST", "/v1/track/", {}),
}


@pytest.mark.parametrize("case", list(HANDED_ON))
def test_other_requests_are_handed_to_django(case: str) -> None:
    method, path, headers = HANDED_ON[case]
    recorder = Recorder()
    _call(fast_path(recorder), method, path, b"", **headers)
    assert recorder.seen == [f"{method} {path}"]


def test_the_fast_path_mirrors_the_lean_stack_of_the_settings() -> None:
    """Failing? A middleware was added to settings.MIDDLEWARE: teach fast_path.py what it does
    (and add it to MIRRORED_MIDDLEWARE), or list it in config.core.wsgi.SOURCE_API_SKIPS."""
    assert tuple(source_api_middleware()) == MIRRORED_MIDDLEWARE


def test_an_unmirrored_middleware_turns_the_fast_path_off(session_id: str) -> None:
    recorder = Recorder()
    fast = FastPath(recorder, [*MIRRORED_MIDDLEWARE, "config.core.logs.SomethingNew"], [ROUTE])
    _call(fast, "GET", f"/v1/sessions/{session_id}")
    assert recorder.seen == [f"GET /v1/sessions/{session_id}"]


@pytest.fixture
def tracing() -> Iterator[None]:
    observability.tracing_start(SimpleSpanProcessor(InMemorySpanExporter()))
    yield
    observability.tracing_stop()


def test_with_tracing_on_requests_go_through_django_for_their_spans(tracing: None, session_id: str) -> None:
    recorder = Recorder()
    _call(fast_path(recorder), "GET", f"/v1/sessions/{session_id}")
    assert recorder.seen == [f"GET /v1/sessions/{session_id}"]
