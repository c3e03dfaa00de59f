"""The test suite: real PostgreSQL, Redis and Celery, never SQLite, fakeredis or eager mode."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/throughline")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

from config.settings.base import *  # noqa: F403
from config.settings.base import BROKER_CONFIGURED, EMBEDDED_MODE

# Tests decide when chunks are dispatched: at commit, synchronously.
ROUTING_DISPATCH_LINGER_MS = 0
# Tests route exactly the events they name; the backlog claim has its own tests (a worker's, in
# tests/orchestration/test_claim_plan.py, through TEST_ROUTING_CLAIM_BACKLOG).
ROUTING_CLAIM_BACKLOG = int(os.environ.get("TEST_ROUTING_CLAIM_BACKLOG", "0"))
# Decisions are written in the request, inside the test's transaction (the write-behind tests
# set a linger themselves).
DECIDE_RECORD_LINGER_MS = 0
INGEST_RATE_LIMIT_PER_SECOND = 100_000
API_RATE_LIMIT_PER_SECOND = 100_000
SOURCE_CACHE_SECONDS = 0.0
SUPPRESSION_CHECK_SECONDS = 0.0
SCHEMAS_REFRESH_SECONDS = 0.0
# The stand-in providers and webhook receivers listen on 127.0.0.1.
OUTBOUND_ALLOW_PRIVATE_HOSTS = True
# Every deliver publishes its send task (a test's task is never consumed, and its "task queued"
# marker would hold back the next tests' publishes); tests/channels/test_batch.py turns it on.
CHANNELS_SEND_PENDING_SECONDS = 0
JOURNEYS_WEBHOOK_SECRET = "test-only-webhook-secret"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
assert BROKER_CONFIGURED and not EMBEDDED_MODE, "tests run against real PostgreSQL, Redis and a broker"
