"""The Celery application. Settings come from Django settings under the CELERY_ namespace."""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("throughline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(task: Any = None, **kwargs: Any) -> None:
    """What Django does around a request: close a connection that errored or outlived
    CONN_MAX_AGE, keep the others (CELERY_DB_REUSE_MAX stops Celery closing them all). Not for
    a task run eagerly: it shares its caller's connection and transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
