"""The Redis broker transport, with one fix to kombu 5.7.0 that keeps workers alive when the
broker connection drops (CELERY_BROKER_TRANSPORT names it for redis:// and rediss:// URLs).

A worker spends its idle time in a BRPOP on the broker. When the connection drops, Celery's
consumer closes the connection twice: `collect()`, then `close()`. kombu's Redis channel, closed
while its BRPOP is outstanding, first reads that BRPOP's reply; on a dead connection the read
raises a ConnectionError, which aborts the close before it marks the channel closed or gives
back its unacknowledged messages. `collect()` ignores the error and detaches the transport from
its connection, so the second close finds a channel still open, with unacknowledged messages
(prefetched tasks, countdown and ETA tasks: with acks_late every reserved task is one), tries to
give them back through a connection that no longer exists, and fails with
`AttributeError: 'NoneType' object has no attribute 'hostname'` (kombu.transport.redis
`_connparams`). That error is not a connection error: Celery calls it unrecoverable and the
worker exits (tests/core/test_supervision.py reproduces it on every drop).

Here the close treats a BRPOP whose reply is lost like one that got no reply: the close goes on
while the connection is still attached, so the channel is closed once, its messages are given
back if the broker answers (else they return after the visibility timeout, as for a killed
worker), and the second close finds nothing to do."""

from queue import Empty
from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self) -> None:
        channel: Any = self  # the type stubs leave out the Redis channel's internals
        if channel._in_poll:
            try:
                channel._brpop_read()
            except (Empty, *channel.connection_errors):
                pass  # its reply went with the connection: close as if it had none
        super().close()


class RedisTransport(redis.Transport):
    Channel = Channel
