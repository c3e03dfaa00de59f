"""The WSGI fast path for POST /v1/decide gives the Django view's answers.

Every case is sent twice, to the fast path (config.core.wsgi.fast_path, as production serves
/v1) and to the lean Django stack it stands in for (config.core.wsgi.SourceApiHandler), and the
two answers must be the same: status, headers in order and body, byte for byte; an answer's
decision_id, new for each decision, is the one thing left out of the comparison. The rest of
the decide suite also goes through the fast path (tests/journeys/test_decide.py: `post`).
"""

import base64
import copy
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.core import signals
from django.test import override_settings

from config.core.fast_path import FastPath
from config.core.wsgi import SourceApiHandler, fast_path
from journeys import decide_journeys, decide_recorder
from journeys.demo import VIP_ROUTING
from journeys.models import Decision
from journeys.services import journey_publish
from tests.factories import CustomerFactory, IdentityFactory, SourceFactory
from tests.journeys.factories import JourneyFactory, JourneyVersionFactory
from tests.wsgi import Answer, Recorder, call, environ

pytestmark = pytest.mark.django_db(transaction=True)


def _call(
    app: Callable[..., Any], body: bytes, headers: dict[str, str], method: str = "POST", path: str = "/v1/decide"
) -> Answer:
    return call(app, environ(method, path, body, {"CONTENT_TYPE": "application/json", **headers}))


def _without_decision_id(answer: Answer) -> Answer:
    """The answer with its decision_id (new for every decision) blanked, when it has one."""
    status, headers, body = answer
    if not status.startswith("200"):
        return answer
    parsed = orjson.loads(body)
    return status, headers, orjson.dumps({**parsed, "decision_id": "-"})


def _auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture(autouse=True)
def vip_journey(transactional_db: Any) -> Iterator[Any]:
    decide_journeys.forget_compiled()
    version = JourneyVersionFactory.create(
        journey=JourneyFactory.create(key="vip-routing"), number=1, definition=copy.deepcopy(VIP_ROUTING)
    )
    journey_publish(version=version)
    decide_journeys.forget_compiled()
    yield version
    decide_journeys.forget_compiled()


@pytest.fixture(autouse=True)
def customers(transactional_db: Any) -> None:
    for user_id, vip in (("u-vip", True), ("u-plain", False)):
        IdentityFactory.create(customer=CustomerFactory.create(traits={"vip": vip}), kind="user_id", value=user_id)


@pytest.fixture
def both(django_stack: SourceApiHandler, fast: FastPath, source: Any) -> Callable[..., tuple[Answer, Answer]]:
    def send(body: bytes, **headers: str) -> tuple[Answer, Answer]:
        headers = {"HTTP_AUTHORIZATION": _auth(source.write_key), **headers}
        django_answer, fast_answer = _call(django_stack, body, headers), _call(fast, body, headers)
        return _without_decision_id(django_answer), _without_decision_id(fast_answer)

    return send


def ask(user_id: str = "u-vip", **extra: Any) -> bytes:
    body = {"userId": user_id, "channel": "web", "placement": "support_entry", "context": {"page": "/help"}, **extra}
    return orjson.dumps(body)


def test_a_vip_answer_is_the_same(both: Callable[..., tuple[Answer, Answer]]) -> None:
    django_answer, fast_answer = both(ask("u-vip"))
    assert (fast_answer, orjson.loads(fast_answer[2])["route"]) == (django_answer, "premium_support")


def test_anyone_elses_answer_is_the_same(both: Callable[..., tuple[Answer, Answer]]) -> None:
    django_answer, fast_answer = both(ask("u-plain"))
    assert (fast_answer, orjson.loads(fast_answer[2])["route"]) == (django_answer, "self_service")


def test_the_fast_paths_decision_is_recorded(fast: FastPath, source: Any) -> None:
    _, _, body = _call(fast, ask("u-vip"), {"HTTP_AUTHORIZATION": _auth(source.write_key)})
    decide_recorder.recorder.flush()
    decision = Decision.objects.get(id=orjson.loads(body)["decision_id"])
    assert (decision.result["route"], decision.degraded) == ("premium_support", False)


# Requests answered the same by both: (body, headers); the source's Authorization unless given.
SAME_ANSWER_CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    "accept json": (ask(), {"HTTP_ACCEPT": "application/json"}),
    "an anonymous id only": (orjson.dumps({"anonymousId": "a-1", "placement": "support_entry"}), {}),
    "malformed json": (b"{nope", {}),
    "a non-ascii json error": ('{"é'.encode(), {}),
    "not an object": (b"[1]", {}),
    "missing identity": (orjson.dumps({"placement": "support_entry"}), {}),
    "missing placement": (orjson.dumps({"userId": "u-vip"}), {}),
    "an id too long": (ask("x" * 600), {}),
    "context not an object": (ask(context=[1]), {}),
    "unknown placement": (ask(placement="nowhere"), {}),
    "no write key": (ask(), {"HTTP_AUTHORIZATION": ""}),
    "unknown write key": (ask(), {"HTTP_AUTHORIZATION": _auth("tlw_nobody")}),
    "bearer token": (ask(), {"HTTP_AUTHORIZATION": "Bearer abc"}),
    "malformed basic": (ask(), {"HTTP_AUTHORIZATION": "Basic !!!"}),
    "over the body limit": (ask(context={"blob": "x" * 40_000}), {}),
    "a declared length over the limit": (ask(), {"CONTENT_LENGTH": "100000"}),
    "an invalid content length": (ask(), {"CONTENT_LENGTH": "abc"}),
    "compressed": (ask(), {"HTTP_CONTENT_ENCODING": "gzip"}),
    "https behind the proxy": (ask(), {"wsgi.url_scheme": "https"}),
}


@pytest.mark.parametrize("case", list(SAME_ANSWER_CASES))
def test_the_fast_path_answers_as_the_django_view(case: str, both: Callable[..., tuple[Answer, Answer]]) -> None:
    body, headers = SAME_ANSWER_CASES[case]
    django_answer, fast_answer = both(body, **headers)
    assert fast_answer == django_answer


def test_a_write_key_in_the_body_is_the_same(both: Callable[..., tuple[Answer, Answer]], source: Any) -> None:
    django_answer, fast_answer = both(ask(writeKey=source.write_key), HTTP_AUTHORIZATION="")
    assert (fast_answer, fast_answer[0]) == (django_answer, "200 OK")


def test_a_disabled_source_is_the_same_403(both: Callable[..., tuple[Answer, Answer]]) -> None:
    disabled: Any = SourceFactory(enabled=False)
    django_answer, fast_answer = both(ask(), HTTP_AUTHORIZATION=_auth(disabled.write_key))
    assert (fast_answer, fast_answer[0]) == (django_answer, "403 Forbidden")


def test_an_unknown_placement_is_the_same_404(both: Callable[..., tuple[Answer, Answer]]) -> None:
    django_answer, fast_answer = both(ask(placement="nowhere"))
    assert (fast_answer, orjson.loads(fast_answer[2])["code"]) == (django_answer, "unknown_placement")


@override_settings(INGEST_RATE_LIMIT_PER_SECOND=0)
def test_over_the_rate_limit_is_the_same_429_with_retry_after(both: Callable[..., tuple[Answer, Answer]]) -> None:
    django_answer, fast_answer = both(ask())
    assert (fast_answer, ("Retry-After", "1") in fast_answer[1]) == (django_answer, True)


def test_a_degraded_answer_is_the_same(both: Callable[..., tuple[Answer, Answer]], redis_unreachable: None) -> None:
    django_answer, fast_answer = both(ask("u-vip"))
    body = orjson.loads(fast_answer[2])
    assert (fast_answer, body["degraded"], body["reason"]) == (django_answer, True, "redis_unavailable")


def test_an_unexpected_error_is_the_same_500(
    both: Callable[..., tuple[Answer, Answer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("journeys.decide_apis.decision_make", broken)
    django_answer, fast_answer = both(ask())
    assert (fast_answer, fast_answer[0]) == (django_answer, "500 Internal Server Error")


def test_a_4xx_is_logged_as_django_logs_it(fast: FastPath, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        _call(fast, ask(), {"HTTP_AUTHORIZATION": _auth("tlw_nobody")})
    assert [(r.levelname, r.getMessage(), r.status_code) for r in caplog.records if r.name == "django.request"] == [  # type: ignore[attr-defined]
        ("WARNING", "Unauthorized: /v1/decide", 401)
    ]


def test_the_request_signals_are_sent_once_each(fast: FastPath, source: Any) -> None:
    sent: list[str] = []

    def started(**kwargs: Any) -> None:
        sent.append("started")

    def finished(**kwargs: Any) -> None:
        sent.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        _call(fast, ask(), {"HTTP_AUTHORIZATION": _auth(source.write_key)})
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert sent == ["started", "finished"]


# Requests the fast path hands to Django untouched: (method, path, headers).
HANDED_ON = {
    "get": ("GET", "/v1/decide", {}),
    "options": ("OPTIONS", "/v1/decide", {}),
    "trailing slash": ("POST", "/v1/decide/", {}),
    "accept html": ("POST", "/v1/decide", {"HTTP_ACCEPT": "text/html"}),
    "accept with parameters": ("POST", "/v1/decide", {"HTTP_ACCEPT": "application/json; indent=4"}),
    "a session start": ("POST", "/v1/sessions", {}),
}


@pytest.mark.parametrize("case", list(HANDED_ON))
def test_other_requests_are_handed_to_django(case: str) -> None:
    method, path, headers = HANDED_ON[case]
    recorder = Recorder()
    _call(fast_path(recorder), ask(), headers, method=method, path=path)
    assert recorder.seen == [f"{method} {path}"]
