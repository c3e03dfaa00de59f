"""The test settings with ingestion's "no suppression in force" cached as in production, for
servers the tests start."""

from config.settings.test import *  # noqa: F403

SUPPRESSION_CHECK_SECONDS = 3.0
