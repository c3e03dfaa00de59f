"""Production settings plus one bench-only route: the no-op DRF view that gives the ceiling.

Everything else is config.settings.production unchanged, so ingestion is measured as deployed.
"""

from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
