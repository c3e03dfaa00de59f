"""Developer laptop: `make run`. Works with no configuration at all (embedded mode)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "local-only-not-secret")
os.environ.setdefault("DJANGO_DEBUG", "true")
# A laptop's receivers are on localhost.
os.environ.setdefault("OUTBOUND_ALLOW_PRIVATE_HOSTS", "true")
# A terminal: key=value lines, and the console provider's messages read as blocks.
os.environ.setdefault("LOG_FORMAT", "console")

from config.settings.base import *  # noqa: F403
