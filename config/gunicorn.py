"""gunicorn settings: `gunicorn -c python:config.gunicorn config.wsgi` (what `manage.py serve` runs).

Only what the metrics need; bind, workers and threads are given on the command line or in
GUNICORN_CMD_ARGS.

The hook runs in gunicorn's master, inside its SIGCHLD handler. It must not import Django or
prometheus_client there: importing them in a signal handler made the master create metric
files of its own and, when the signal landed while the master held a lock, hang on it for good
(seen as a master that no longer answered SIGTERM). So it removes the files itself, with the
standard library only, the way prometheus_client's `mark_process_dead` does.
"""

import os
from pathlib import Path
from typing import Any

# The multiprocess modes prometheus_client drops for a dead process (its `mark_process_dead`).
_LIVE_MODES = ("liveall", "livesum", "livemax", "livemin", "livemostrecent")


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (restart, crash, max_requests): drop its live gauges so they do
    not linger in PROMETHEUS_MULTIPROC_DIR; its counters still count in the totals."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for mode in _LIVE_MODES:
        for stale in Path(directory).glob(f"gauge_{mode}_{worker.pid}.db"):
            stale.unlink(missing_ok=True)
