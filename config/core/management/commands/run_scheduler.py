"""The periodic scheduler of embedded mode: runs CELERY_BEAT_SCHEDULE's tasks in-process.

In production `celery beat` does this through the broker; with no broker there is nothing to
send to, so the tasks run here, each at its interval.
"""

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from config.celery import app

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the periodic tasks in-process (embedded mode)."

    def handle(self, *args: Any, **options: Any) -> None:
        app.loader.import_default_modules()
        entries = {
            name: (entry["task"], float(entry["schedule"])) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        }
        due = {name: time.monotonic() for name in entries}
        try:
            self._loop(entries, due)
        except KeyboardInterrupt:
            return

    def _loop(self, entries: dict[str, tuple[str, float]], due: dict[str, float]) -> None:
        while True:
            now = time.monotonic()
            for name, (task, interval) in entries.items():
                if due[name] <= now:
                    due[name] = now + interval
                    try:
                        app.tasks[task].apply(throw=True)
                    except Exception:
                        logger.exception("periodic task %s failed", name)
                    finally:
                        close_old_connections()
            time.sleep(max(0.1, min(due.values()) - time.monotonic()))
