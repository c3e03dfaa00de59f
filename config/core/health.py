"""Liveness and readiness probes."""

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from config.core.errors import DependencyUnavailable


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    from config.core import redis as tl_redis

    tl_redis.client().ping()


def _check_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    if settings.BROKER_CONFIGURED:
        checks["broker"] = _check_broker
    results: dict[str, str] = {}
    failing: list[str] = []
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", named in the body
            results[name] = f"failing: {type(exc).__name__}"
            failing.append(name)
    if not failing:
        return JsonResponse({"status": "ok", "checks": results, "failing": failing})
    # The API's 503 (config.core.errors.DependencyUnavailable), with the probe's own keys.
    error = DependencyUnavailable(", ".join(failing))
    body = {**error.as_body(), "status": "unavailable", "checks": results, "failing": failing}
    return JsonResponse(body, status=error.status_code, headers=error.headers())
