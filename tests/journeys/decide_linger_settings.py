"""The test settings with decisions written behind the answer, for a server the tests start."""

from config.settings.test import *  # noqa: F403

DECIDE_RECORD_LINGER_MS = 60_000
