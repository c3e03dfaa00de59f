"""The web server: how `manage.py serve` (and the benchmarks and the tests that start one) run
the WSGI application, and what a web worker does when it stops.

Granian serves it: the HTTP parsing, keep-alive and the connections' I/O run in Rust threads, and
Python is entered only to call the application, on a pool of blocking threads per worker
process. Measured on the 2-core benchmark machine (docs/benchmarks.md, 2026-11-23), against
gunicorn's gthread worker with the same processes and threads: a WSGI callable that does
nothing answered 2,000 req/s with p99 0.49 ms instead of 2.75 ms and saturated at 47,000 req/s
instead of 8,200, and a session GET cost 0.28 ms of web CPU instead of 0.85. gunicorn's own
tail was half of the session GET's 5 ms budget.

Granian ends a worker through multiprocessing, whose child processes leave with `os._exit`:
`atexit` handlers do not run there. `at_worker_exit` registers a function for both ways out (a
multiprocessing finalizer and atexit), to run once per process, so the decide recorder and the
routing dispatcher write what they hold on a graceful stop whichever server runs them.
"""

import atexit
import os
import threading
from collections.abc import Callable
from multiprocessing import util

# Every web process's threads share one GIL. Two blocking threads let a request that waits on
# PostgreSQL or Redis give way to another; more queue for the GIL instead. Measured with
# bench/sessions.py at 2,000 req/s (80% GET) on 2 workers, six alternating runs: GET p99 3.5-19.6
# ms (median of runs 8) with 2 threads, 9.1-23.3 ms (median 15) with 4; decide at 1,000 req/s was
# alike with either (p99 5.0 and 4.7 ms).
DEFAULT_THREADS = 2


def web_argv(
    python: str, *, app: str = "config.wsgi:application", host: str, port: int, workers: int, threads: int
) -> list[str]:
    """The command that serves `app` on host:port with `workers` processes of `threads` threads."""
    return [
        python, "-m", "granian", "--interface", "wsgi",
        "--host", host, "--port", str(port),
        "--workers", str(workers), "--blocking-threads", str(threads),
        "--backlog", "2048",
        # A worker that dies (OOM, a crash in an extension) is replaced, as gunicorn's arbiter did.
        "--respawn-failed-workers",
        "--no-ws",
        app,
    ]  # fmt: skip


def at_worker_exit(function: Callable[[], object]) -> None:
    """Run `function` when this process ends cleanly: interpreter exit, or a granian (or any
    multiprocessing) worker's graceful stop. Once per process, whichever comes first."""
    done: set[int] = set()
    lock = threading.Lock()

    def once() -> None:
        with lock:
            if os.getpid() in done:
                return
            done.add(os.getpid())
        function()

    atexit.register(once)
    # Finalize(None, ...) with an exit priority is run by multiprocessing's exit function, which
    # a multiprocessing child calls before os._exit; ordinary processes run it from atexit.
    util.Finalize(None, once, exitpriority=10)
