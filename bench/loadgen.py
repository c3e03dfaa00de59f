"""The fallback load generator, for machines where wrk cannot be installed.

Same contract as bench/load.lua: configured by the BENCH_* environment variables, writes the
same JSON summary to BENCH_OUT. asyncio over raw HTTP/1.1 keep-alive connections; closed loop
when BENCH_RATE is 0, otherwise each connection sends on a fixed schedule and latency counts
from when a request was due if the connection was still busy then. It costs far more CPU than
wrk, and that CPU comes out of what the service has on a small machine: figures taken with it
are lower bounds.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.traffic import Messages

# The browser-shaped kinds (bench/load.lua says how they are sent) and the bodies they carry.
BROWSER_SHAPES = {"t": "track", "b": "batch"}


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.status_errors = 0
        self.read_errors = 0
        self.connect_errors = 0
        self.bytes = 0


async def connection(
    host: str, port: int, path: str, deadline: float, stats: Stats, messages: Messages, kind: str, interval: float
) -> None:
    auth = os.environ.get("BENCH_AUTH", "")
    write_key = os.environ.get("BENCH_WRITE_KEY", "")
    batch = int(os.environ.get("BENCH_BATCH", "100"))
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        stats.connect_errors += 1
        return
    next_at = time.monotonic() + interval * random.random()  # spread the first sends
    answered_at = 0.0
    while True:
        now = time.monotonic()
        if interval:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            now = time.monotonic()
            start = next_at if answered_at > next_at else now
            next_at += interval
        else:
            start = now
        if now >= deadline:
            break
        if kind == "noop":
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        elif kind in BROWSER_SHAPES:
            # As analytics-next sends it: text/plain, writeKey in the body, no Authorization.
            body = b'{"writeKey":' + orjson.dumps(write_key) + b"," + messages.body(BROWSER_SHAPES[kind], batch)[1:]
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
                f"Origin: https://shop.example.com\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            request = head.encode() + body
        else:
            body = messages.body(kind, batch)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            request = head.encode() + body
        try:
            writer.write(request)
            status_line = await reader.readline()
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            payload = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            stats.read_errors += 1
            break
        answered_at = time.monotonic()
        stats.latencies.append(answered_at - start)
        stats.bytes += len(status_line) + length + len(payload)
        if not status_line.split(b" ")[1].startswith(b"2"):
            stats.status_errors += 1
        if close:
            writer.close()
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                stats.connect_errors += 1
                return
    writer.close()


async def run(url: str, seconds: float, connections: int) -> dict[str, object]:
    parts = urlsplit(url)
    kind = os.environ.get("BENCH_KIND", "track")
    path = {
        "batch": "/v1/batch",
        "track": "/v1/track",
        "noop": "/bench/noop",
        "decide": "/v1/decide",
        "t": "/v1/t",
        "b": "/v1/b",
    }[kind]
    rate = float(os.environ.get("BENCH_RATE", "0") or 0)
    interval = 1 / rate if rate else 0.0
    stats = Stats()
    messages = Messages(run=os.environ.get("BENCH_RUN", "py"), people=int(os.environ.get("BENCH_PEOPLE", "20000")))
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(
            connection(parts.hostname or "127.0.0.1", parts.port or 80, path, deadline, stats, messages, kind, interval)
            for _ in range(connections)
        )
    )
    duration = time.monotonic() - started
    ordered = sorted(stats.latencies)

    def pct(p: float) -> int:
        return int(ordered[max(0, int(len(ordered) * p / 100 + 0.999999) - 1)] * 1e6) if ordered else -1

    latency = {"p50": pct(50), "p90": pct(90), "p95": pct(95), "p99": pct(99), "max": pct(100)}
    return {
        "requests": len(ordered),
        "duration_us": int(duration * 1e6),
        "bytes": stats.bytes,
        "errors": {
            "connect": stats.connect_errors,
            "read": stats.read_errors,
            "write": 0,
            "status": stats.status_errors,
            "timeout": 0,
        },
        "latency_us": {**latency, "mean": sum(ordered) / len(ordered) * 1e6 if ordered else -1},
        "open_loop_latency_us": {"count": len(ordered) if interval else 0, **latency},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, required=True)
    args = parser.parse_args()
    summary = asyncio.run(run(args.url, args.seconds, args.connections))
    Path(os.environ["BENCH_OUT"]).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
