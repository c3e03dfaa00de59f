"""The one bounded reader of a /v1 request body (ingestion, decide, sessions, webhooks).

It reads the WSGI environ's `wsgi.input` itself, not Django's request stream, for two reasons:
the WSGI fast path (config/core/fast_path.py) builds no Django request, and Django's stream is
cut at Content-Length, so a chunked body (no Content-Length) read through it is empty. Such a
body is read when the server says the input ends where the body does (`wsgi.input_terminated`,
which granian sets on every request); from a server that does not say so it cannot be read
without risking a read that never returns, so it is refused with 411.

Limits: `limit` bytes of content. A body sent with a Content-Encoding (gzip or deflate) may take
up to max(limit, INGEST_MAX_WIRE_BYTES) on the wire and is inflated with a hard cap: a
decompression bomb is refused after limit + 1 bytes, never inflated in full. Every refusal is a
JSON 4xx: 400 for a malformed Content-Length or compressed stream, 411, 413 and 415.
"""

import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings

from config.core.errors import ApplicationError, BadRequest, PayloadTooLarge, UnsupportedMediaType

_INFLATED = ("gzip", "deflate", "x-gzip")


class LengthRequired(ApplicationError):
    status_code = 411
    code = "length_required"


def read_body(environ: Mapping[str, Any], *, limit: int) -> bytes:
    """The request's content, decompressed, at most `limit` bytes (413 past it)."""
    encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
    compressed = encoding not in ("identity", "")
    if compressed and encoding not in _INFLATED:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    wire_limit = max(limit, settings.INGEST_MAX_WIRE_BYTES) if compressed else limit
    raw = _read_wire(environ, wire_limit)
    if not compressed:
        return raw
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise BadRequest(f"body is not valid {encoding}", code="invalid_encoding") from None
    if len(body) > limit:
        raise PayloadTooLarge(f"decompressed body is over the {_size(limit)} limit", code="body_too_large")
    if not inflater.eof and not inflater.unconsumed_tail:
        raise BadRequest(f"body is a truncated {encoding} stream", code="invalid_encoding")
    return body


def read_json(environ: Mapping[str, Any], *, limit: int) -> Any:
    """The body decoded as JSON (400 when it is not), within read_body's limits."""
    raw = read_body(environ, limit=limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}", code="malformed_json") from None


def _read_wire(environ: Mapping[str, Any], wire_limit: int) -> bytes:
    """The bytes as sent, at most `wire_limit` (413 past it, before reading when declared)."""
    stream = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length") from None
        if length < 0:
            raise BadRequest("invalid Content-Length")
        if length > wire_limit:
            raise PayloadTooLarge(f"body is over the {_size(wire_limit)} limit", code="body_too_large")
        return _read_up_to(stream, length)
    if not environ.get("wsgi.input_terminated"):
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise LengthRequired("send Content-Length: this server cannot read a chunked body")
        return b""
    raw = _read_up_to(stream, wire_limit + 1)
    if len(raw) > wire_limit:
        raise PayloadTooLarge(f"body is over the {_size(wire_limit)} limit", code="body_too_large")
    return raw


def _read_up_to(stream: Any, size: int) -> bytes:
    """At most `size` bytes, fewer only at the end of the input (a read may return less)."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _size(limit: int) -> str:
    return f"{limit // 1024} KB" if limit % 1024 == 0 else f"{limit} byte"
