import base64
import contextlib
import gzip
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import redis
import requests
from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.http import HttpResponse
from django.test import Client
from django.test.client import ClientHandler
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from config.core import observability
from config.core.server import web_argv
from tests.factories import ApiTokenFactory, SourceFactory
from tests.throwaway import free_port, wait_until

__all__ = ["free_port", "wait_until"]  # used by tests that import them from here

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> None:
    """The test Redis databases start empty: no keys or queued tasks from an earlier run."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


@pytest.fixture
def demo_credentials(settings: Any, tmp_path: Path) -> Path:
    """Where seed_demo keeps the demo's secrets in this test (never the checkout's var/)."""
    settings.DEMO_CREDENTIALS_FILE = str(tmp_path / "demo-credentials.json")
    return tmp_path / "demo-credentials.json"


@pytest.fixture
def source(db: Any) -> Any:
    return SourceFactory()


@pytest.fixture
def api_token(db: Any) -> Any:
    return ApiTokenFactory()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    observability.tracing_start(SimpleSpanProcessor(exporter))
    yield exporter
    observability.tracing_stop()
    exporter.clear()


def client_traceparents(exporter: InMemorySpanExporter) -> set[str]:
    """The traceparent header each finished outbound client span sent."""
    return {
        f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"
        for span in exporter.get_finished_spans()
        if span.kind == SpanKind.CLIENT and span.context is not None
    }


class IngestClient:
    """Posts to /v1 the way Segment's clients do: Basic auth with the write key, JSON body."""

    def __init__(self, client: Client, write_key: str):
        self.client = client
        self.write_key = write_key

    def auth(self, write_key: str | None = None) -> str:
        key = self.write_key if write_key is None else write_key
        return "Basic " + base64.b64encode(f"{key}:".encode()).decode()

    def post(self, call: str, body: Any, *, gzip_body: bool = False, raw: bytes | None = None, **headers: Any) -> Any:
        data = raw if raw is not None else orjson.dumps(body)
        if gzip_body:
            data = gzip.compress(data)
            headers["HTTP_CONTENT_ENCODING"] = "gzip"
        headers.setdefault("HTTP_AUTHORIZATION", self.auth())
        return self.client.post(f"/v1/{call}", data=data, content_type="application/json", **headers)


@pytest.fixture
def ingest(source: Any, client: Client) -> IngestClient:
    return IngestClient(client, source.write_key)


@pytest.fixture
def api(api_token: Any, client: Client) -> Callable[..., Any]:
    def get(path: str, **params: Any) -> Any:
        return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {api_token.secret}")

    return get


class WorkerProcess:
    """A real `celery worker` process against the database at `database_url` (the test
    database for worker_factory; a throwaway cluster for tests/chaos), with `env` over the test
    settings (tests/chaos points REDIS_URL and CELERY_BROKER_URL at its own servers)."""

    def __init__(
        self,
        database_url: str,
        *,
        concurrency: int = 2,
        queues: str = "default,routing,maintenance,journeys",
        env: Mapping[str, str] | None = None,
    ):
        # Its PostgreSQL sessions carry this name (libpq reads PGAPPNAME), so kill() can wait for them.
        self.application_name = f"test-worker-{os.getpid()}-{id(self)}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url,
            "PGAPPNAME": self.application_name,
            # Over the test settings: a test's own broker (a throwaway redis-server it may kill), say.
            **(env or {}),
        }
        self.args = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency), "-Q", queues,
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker, parent and children, as a crash or OOM kill would, and wait
        until PostgreSQL has ended its sessions: a backend notices its client is gone, and rolls
        back and releases its row locks, a moment after the kill. A sweep run before then skips
        the rows still locked (SKIP LOCKED) and finds nothing to do."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        # Asked on a connection of its own to the worker's database: the worker's server may not
        # be the one Django's test connection is on.
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:

            def gone() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.application_name]
                ).fetchone()
                return row == (0,)

            wait_until(gone, timeout=30, message="PostgreSQL ends the killed worker's sessions")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _database_url(name: str) -> str:
    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    password = db.get("PASSWORD") or ""
    credentials = f"{user}:{password}" if password else user
    return f"postgres://{credentials}@{host}:{port}/{name}"


@pytest.fixture
def worker_factory(transactional_db: Any) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(_database_url(connection.settings_dict["NAME"]), **kwargs).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


class FastPathClientHandler(ClientHandler):
    """Django's test handler with the WSGI fast path in front, as production serves /v1
    (config.core.wsgi): the tracking calls, session GETs and PATCHes and decide requests are
    answered by the fast path, the rest by Django. Like ClientHandler, it keeps the request signals from closing the
    test's database connection."""

    def __call__(self, environ: dict[str, Any]) -> Any:
        from config.core.wsgi import fast_path

        fast = fast_path(lambda environ, start_response: [])
        found = fast.find(environ)
        if found is None:
            return super().__call__(environ)
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            answer = fast.answer(environ, found)
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        response = HttpResponse(answer.body, status=answer.status)
        del response["Content-Type"]
        for name, value in answer.headers:
            response[name] = value
        response.wsgi_request = WSGIRequest(environ)  # type: ignore[attr-defined]
        return response


class FastPathClient(Client):
    def __init__(self, **defaults: Any):
        super().__init__(**defaults)
        self.handler = FastPathClientHandler(enforce_csrf_checks=False)


class SessionsClient:
    """Calls the sessions API (/v1/sessions...) as a source: Basic auth with its write key."""

    def __init__(self, client: Client, write_key: str):
        self.client = client
        self.write_key = write_key
        self.auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()

    def _send(self, method: str, path: str, body: Any = None, **headers: Any) -> Any:
        data = b"" if body is None else orjson.dumps(body)
        headers.setdefault("HTTP_AUTHORIZATION", self.auth)
        headers.setdefault("content_type", "application/json")
        return getattr(self.client, method)(path, data=data, **headers)

    def start(self, body: Any, **headers: Any) -> Any:
        return self._send("post", "/v1/sessions", body, **headers)

    def get(self, session_id: str, **headers: Any) -> Any:
        headers.setdefault("HTTP_AUTHORIZATION", self.auth)
        return self.client.get(f"/v1/sessions/{session_id}", **headers)

    def patch(self, session_id: str, body: Any, *, version: int | str | None, **headers: Any) -> Any:
        if version is not None:
            headers["HTTP_IF_MATCH"] = version if isinstance(version, str) else f'"{version}"'
        headers.setdefault("content_type", "application/merge-patch+json")
        return self._send("patch", f"/v1/sessions/{session_id}", body, **headers)

    def end(self, session_id: str, body: Any = None, **headers: Any) -> Any:
        return self._send("post", f"/v1/sessions/{session_id}/end", body, **headers)

    def handoff(self, session_id: str, body: Any = None, **headers: Any) -> Any:
        return self._send("post", f"/v1/sessions/{session_id}/handoff", body, **headers)

    def resume(self, body: Any, **headers: Any) -> Any:
        return self._send("post", "/v1/sessions/resume", body, **headers)

    def customer_sessions(self, **params: Any) -> Any:
        return self.client.get("/v1/customers/sessions", params, HTTP_AUTHORIZATION=self.auth)


@pytest.fixture
def sessions_for() -> Callable[[Any], SessionsClient]:
    """A sessions API client for any source: `sessions_for(SourceFactory(channel="pos"))`."""
    return lambda source: SessionsClient(FastPathClient(), source.write_key)


@pytest.fixture
def test_redis() -> redis.Redis:
    """The test run's own Redis database (REDIS_URL), the only one a test may flush."""
    return redis.Redis.from_url(settings.REDIS_URL)


# --- The WSGI fast path beside the Django stack (tests/wsgi.py has the in-process call) -----------


@pytest.fixture(scope="module")
def django_stack() -> Any:
    """The /v1 Django stack a fast path hands requests on to: what the fast path must equal."""
    from config.core.wsgi import SourceApiHandler

    return SourceApiHandler()


@pytest.fixture(scope="module")
def fast() -> Any:
    """The WSGI fast path with a fallback that fails the test if a request reaches it."""
    from config.core.wsgi import fast_path
    from tests.wsgi import refuse

    return fast_path(refuse)


@pytest.fixture
def redis_unreachable(settings: Any) -> Iterator[None]:
    """The app's Redis client pointed at a port where nothing listens."""
    from config.core import redis as tl_redis

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    tl_redis.client.cache_clear()
    yield
    # The settings fixture restores REDIS_URL after this; the next client() call rebuilds.
    tl_redis.client.cache_clear()


def answers(url: str) -> bool:
    """Whether `url` answers 200 now (False while a server is still starting, or gone)."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def web_server(*, threads: int = 2, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The web server as `manage.py serve` starts it (granian and production's WSGI stack) on the
    test database, with `env` over the test settings: its base URL and its process. A test may
    stop it itself; whatever still runs is stopped with SIGTERM, its graceful stop."""
    port = free_port()
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
        **env,
    }
    web = subprocess.Popen(
        web_argv(sys.executable, host="127.0.0.1", port=port, workers=1, threads=threads),
        env=environ,
        cwd=ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), timeout=30, message="the web server starts")
        yield base, web
    finally:
        if web.poll() is None:
            os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)


@pytest.fixture
def server(transactional_db: Any) -> Iterator[str]:
    """The web server (`web_server`) on the test database; its base URL."""
    with web_server() as (base, _):
        yield base
