"""The WSGI application: /v1 through the lean middleware stack, everything else through
settings.MIDDLEWARE, one URLconf for both."""

import base64
import os
import subprocess
import sys
from typing import Any

import orjson
import pytest
from django.conf import settings

from config.core.wsgi import SOURCE_API_SKIPS, Dispatcher, application, source_api_middleware
from profiles.models import Event
from tests.wsgi import call, environ

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def app() -> Dispatcher:
    return application()


def _call(app: Dispatcher, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[str, dict[str, str]]:
    request_headers = {"CONTENT_TYPE": "application/json", **{f"HTTP_{n.upper()}": v for n, v in headers.items()}}
    status, response_headers, _ = call(app, environ(method, path, body, request_headers))
    return status, dict(response_headers)


def test_the_source_api_stack_is_settings_middleware_without_the_browser_layers() -> None:
    lean = source_api_middleware()
    assert lean == [path for path in settings.MIDDLEWARE if path not in SOURCE_API_SKIPS]
    assert "django.middleware.security.SecurityMiddleware" in lean
    assert not SOURCE_API_SKIPS & set(lean)


def test_a_v1_call_is_served_by_the_lean_stack(app: Dispatcher, source: Any) -> None:
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()
    body = orjson.dumps({"userId": "u-1", "event": "Lean", "messageId": "lean-1"})
    status, headers = _call(app, "POST", "/v1/track", body, authorization=auth)
    assert status == "200 OK"
    assert Event.objects.filter(message_id="lean-1").exists()
    # XFrameOptionsMiddleware and the session middleware (Vary: Cookie) did not run; CORS's
    # Vary: origin is the view's own (profiles/browser.py).
    assert "X-Frame-Options" not in headers and "cookie" not in headers.get("Vary", "").lower()


def test_an_error_on_the_lean_stack_is_the_usual_json(app: Dispatcher) -> None:
    status, headers = _call(app, "POST", "/v1/track", b"{}")
    assert (status, headers["Content-Type"]) == ("401 Unauthorized", "application/json")


def test_everything_else_goes_through_settings_middleware(app: Dispatcher) -> None:
    status, headers = _call(app, "GET", "/healthz")
    assert status == "200 OK"
    assert headers["X-Frame-Options"] == "DENY"


def test_process_environment_variables_are_taken_out_of_the_request_environ(monkeypatch: Any) -> None:
    """granian, like wsgiref, builds each environ on top of os.environ: secrets in the server's
    environment would otherwise be in request.META."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "not-for-requests")
    seen: dict[str, Any] = {}

    def handler(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        return [b""]

    dispatcher = Dispatcher(handler, handler)  # type: ignore[arg-type] # a WSGI callable stands in for Django's
    request = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/x", "HTTP_HOST": "h", "REMOTE_ADDR": "127.0.0.1"}
    dispatcher({**os.environ, **request}, lambda *a: None)

    assert "DJANGO_SECRET_KEY" not in seen
    assert {k: seen[k] for k in request} == request


def test_the_served_module_leaves_its_startup_objects_to_the_permanent_generation() -> None:
    # In its own interpreter: the freeze is per process and would change this one's collector.
    script = (
        "import gc, sys\n"
        "import config.wsgi\n"
        "print(gc.get_freeze_count(), len(gc.get_objects(2)), 'profiles.ingest_apis' in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.test")}
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    frozen, oldest, views_loaded = done.stdout.split()
    assert int(frozen) > 50_000  # the application and every view module, not just Django
    assert int(oldest) < 1_000  # left for a full collection to walk
    assert views_loaded == "True"  # the URLconf was resolved before the freeze
