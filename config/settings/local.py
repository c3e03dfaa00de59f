"""Developer laptop: `make run`. Works with no configuration at all (embedded mode).

Without DATABASE_URL it starts (or finds running) the embedded PostgreSQL in var/postgres and
uses it: the same database, SQL and code as production (config/embedded.py).
"""

import os
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "local-only-not-secret")
os.environ.setdefault("DJANGO_DEBUG", "true")
# A laptop's receivers are on localhost.
os.environ.setdefault("OUTBOUND_ALLOW_PRIVATE_HOSTS", "true")
# Outbound webhooks are always signed and an empty key is refused: a laptop gets a local one.
os.environ.setdefault("CHANNELS_WEBHOOK_SIGNING_SECRET", "local-only-not-secret")
os.environ.setdefault("JOURNEYS_WEBHOOK_SECRET", "local-only-not-secret")
# A terminal: key=value lines, and the console provider's messages read as blocks.
os.environ.setdefault("LOG_FORMAT", "console")
_embedded_database = not os.environ.get("DATABASE_URL")
if _embedded_database:
    from config.embedded import configure_environment

    configure_environment(Path(__file__).resolve().parent.parent.parent)

from config.settings.base import *  # noqa: E402, F403

# `serve` stops the embedded server when it exits.
EMBEDDED_DATABASE = _embedded_database
