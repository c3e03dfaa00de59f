"""Real local stand-ins for providers: an HTTP server that records requests and answers with a
scripted status, and an SMTP server (aiosmtpd) that records messages."""

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpSink:
    """Answers each request with the next scripted (status, headers, body), then `default`."""

    server: ThreadingHTTPServer
    requests: list[Recorded] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    default: tuple[int, dict[str, str], bytes] = (200, {}, b'{"sid": "SM0000000000000000000000000000000"}')
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0
    # Fixed answers for some paths (a provider's token endpoint beside its API), before the script.
    by_path: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(request)
            if request.path in self.by_path:
                return self.by_path[request.path]
            return self.script.pop(0) if self.script else self.default

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_http_sink(tls: ssl.SSLContext | None = None) -> HttpSink:
    """Listening on 127.0.0.1; with `tls`, over HTTPS with that server context."""
    sink: HttpSink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorded = Recorded("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
            status, headers, body = sink.respond(recorded)
            time.sleep(sink.delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            # A legacy feed: the path with its query string picks the page (by_path).
            status, headers, body = sink.respond(Recorded("GET", self.path, dict(self.headers.items()), b""))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    sink = HttpSink(server=server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink


class SmtpRecorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(list(envelope.rcpt_tos))
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def start_smtp() -> tuple[Controller, SmtpRecorder]:
    recorder = SmtpRecorder()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, recorder
