"""gunicorn settings: `gunicorn -c python:config.gunicorn config.wsgi` (what `manage.py serve` runs).

Only what the metrics need; bind, workers and threads are given on the command line or in
GUNICORN_CMD_ARGS.
"""

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (restart, crash, max_requests): drop its live gauges so they do
    not linger in PROMETHEUS_MULTIPROC_DIR; its counters still count in the totals."""
    from config.core.prometheus import process_dead

    process_dead(worker.pid)
