"""Hands accepted events to Celery in chunks, never one task per event.

A web process accumulates the ids of events it committed and sends one routing task per chunk:
when ROUTING_DISPATCH_MAX_CHUNK ids are waiting or the oldest has waited
ROUTING_DISPATCH_LINGER_MS. Sending happens on a background thread so a request never waits on
the broker. If sending fails, or the process dies with ids in memory, the events are still on
the outbox and the sweeper re-enqueues them: a broker outage delays routing, loses nothing.
"""

import logging
import os
import threading
import time

from django.conf import settings

from config.core import observability
from config.core.server import at_worker_exit

logger = logging.getLogger(__name__)


# After a failed publish, stop trying for this long: each attempt against an unreachable broker
# blocks for the connection timeout, and the events are safe on the outbox meanwhile.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def send_chunks(event_ids: list[int], traces: dict[int, str] | None = None) -> None:
    """Publish one routing task per chunk. On failure the ids are left to the sweeper.

    `traces` maps event ids to the traceparent of the request that stored them (tracing on):
    each chunk carries its events' parents, so routing continues one trace per event."""
    global _broker_down_until  # noqa: PLW0603 - one process-wide back-off
    from orchestration.tasks import route_events

    if time.monotonic() < _broker_down_until:
        return
    size = settings.ROUTING_DISPATCH_MAX_CHUNK
    for start in range(0, len(event_ids), size):
        chunk = event_ids[start : start + size]
        kwargs = {"traces": observability.group_traces(chunk, traces)} if traces else {}
        try:
            route_events.apply_async(args=(chunk,), kwargs=kwargs, retry=False)
        except Exception:
            _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
            logger.warning(
                "routing dispatch failed; %d events wait on the outbox for the sweeper",
                len(event_ids) - start,
                exc_info=True,
            )
            return


class ChunkDispatcher:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: list[int] = []
        # Event id -> the traceparent of its request, only while tracing is on.
        self._traces: dict[int, str] = {}
        self._oldest = 0.0
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, event_ids: list[int]) -> None:
        linger = settings.ROUTING_DISPATCH_LINGER_MS
        parent = observability.traceparent()
        if linger <= 0 or settings.CELERY_TASK_ALWAYS_EAGER:
            send_chunks(event_ids, dict.fromkeys(event_ids, parent) if parent else None)
            return
        with self._lock:
            self._ensure_thread()
            if not self._pending:
                # Wake the sender so the linger starts now; without this a part-filled chunk
                # waited for the next full one (or the sweeper) however long that took.
                self._oldest = time.monotonic()
                self._lock.notify()
            self._pending.extend(event_ids)
            if parent:
                self._traces.update(dict.fromkeys(event_ids, parent))
            if len(self._pending) >= settings.ROUTING_DISPATCH_MAX_CHUNK:
                self._lock.notify()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            traces, self._traces = self._traces, {}
        if pending:
            send_chunks(pending, traces)

    def _ensure_thread(self) -> None:
        # After a fork (web or Celery workers) the parent's thread does not exist in the child.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._pending = []
            self._traces = {}
            self._thread = threading.Thread(target=self._run, name="routing-dispatch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        linger = settings.ROUTING_DISPATCH_LINGER_MS / 1000
        while True:
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                wait = self._oldest + linger - time.monotonic()
                if wait > 0 and len(self._pending) < settings.ROUTING_DISPATCH_MAX_CHUNK:
                    self._lock.wait(wait)
                pending, self._pending = self._pending, []
                traces, self._traces = self._traces, {}
            if pending:
                send_chunks(pending, traces)


dispatcher = ChunkDispatcher()
# A clean stop writes what is held: interpreter exit, or a granian worker's graceful stop.
at_worker_exit(dispatcher.flush)
