"""Systems that cannot speak Throughline's format: a source's field mapping, applied to its signed
`mapped` webhook and to the legacy HTTP endpoint it is polled from."""

import logging
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.adapters import mapping
from channels.models import PollingFeed, SourceMapping
from channels.services.webhook_secrets import fernet
from config.core import outbound
from config.core.errors import BadRequest
from profiles import facade as profiles
from profiles.contracts import SourceInfo

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 5


# --- the mapping -------------------------------------------------------------------------------


def source_mapping_set(*, source_id: UUID, spec: dict[str, Any]) -> SourceMapping:
    """Store (or replace) a source's field mapping, validated: 400 naming the faulty part."""
    if profiles.source_info(source_id=source_id) is None:
        raise BadRequest("no such source", code="unknown_source")
    try:
        mapping.compile_mapping(spec)
    except mapping.MappingError as error:
        raise BadRequest(str(error), code="invalid_mapping") from None
    row, _ = SourceMapping.objects.update_or_create(source_id=source_id, defaults={"spec": spec})
    return row


def source_mapping_get(*, source_id: UUID) -> mapping.EventMapping | None:
    spec = SourceMapping.objects.filter(source_id=source_id).values_list("spec", flat=True).first()
    if spec is None:
        return None
    try:
        return mapping.compile_mapping(spec)
    except mapping.MappingError:
        # Validated on the way in; a row edited by hand is treated as no mapping at all.
        logger.warning("the stored mapping of source %s is invalid", source_id)
        return None


def mapped_messages(*, source_id: UUID, payload: object) -> list[dict[str, Any]]:
    compiled = source_mapping_get(source_id=source_id)
    if compiled is None:
        raise BadRequest("this source has no field mapping", code="no_mapping")
    return mapping.to_messages(compiled, payload)


# --- polling -----------------------------------------------------------------------------------


def polling_feed_set(
    *,
    source_id: UUID,
    url: str,
    interval_seconds: int = 60,
    cursor_param: str = "since",
    next_cursor_path: str = "next_cursor",
    auth_header_name: str = "Authorization",
    auth_header_value: str | None = None,
    enabled: bool = True,
) -> PollingFeed:
    """Create or change a source's polling feed; the auth header's value is stored encrypted.
    The first poll is due at once."""
    if len(url) > 1000:
        raise BadRequest("url must be at most 1000 characters", code="invalid_feed")
    try:
        # Where it resolves is checked on every poll (the address may change); this is its form.
        outbound.target_check(url)
    except outbound.Refused as refused:
        raise BadRequest(f"url: {refused}", code="invalid_feed") from None
    if interval_seconds < MIN_INTERVAL_SECONDS:
        raise BadRequest(f"interval_seconds must be at least {MIN_INTERVAL_SECONDS}", code="invalid_feed")
    if not cursor_param or not next_cursor_path:
        raise BadRequest("cursor_param and next_cursor_path are required", code="invalid_feed")
    defaults: dict[str, Any] = {
        "url": url,
        "interval_seconds": interval_seconds,
        "cursor_param": cursor_param,
        "next_cursor_path": next_cursor_path,
        "auth_header_name": auth_header_name,
        "enabled": enabled,
        "next_poll_at": timezone.now(),
    }
    if auth_header_value is not None:
        defaults["auth_header_encrypted"] = fernet().encrypt(auth_header_value.encode()) if auth_header_value else None
    row, _ = PollingFeed.objects.update_or_create(source_id=source_id, defaults=defaults)
    return row


@dataclass(frozen=True, slots=True)
class PollResult:
    pages: int
    accepted: int
    duplicates: int
    rejected: int
    cursor: str
    error: str = ""


def feeds_poll_due(*, limit: int = 10) -> list[PollResult]:
    """Poll the feeds that are due. Each is taken FOR UPDATE SKIP LOCKED and its next poll set
    before the HTTP calls, so two workers never poll one feed at once."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            PollingFeed.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, next_poll_at__lte=now)
            .order_by("next_poll_at")[:limit]
        )
        for feed in due:
            feed.next_poll_at = now + timedelta(seconds=feed.interval_seconds)
            feed.save(update_fields=["next_poll_at", "updated_at"])
    return [feed_poll(feed_id=feed.id) for feed in due]


def feed_poll(*, feed_id: int) -> PollResult:
    """Fetch pages from the cursor on, ingest their records through the source's mapping, and
    advance the cursor after each page is stored. Stops at the last page (no records, or no new
    cursor) or after CHANNELS_POLL_MAX_PAGES."""
    feed = PollingFeed.objects.get(id=feed_id)
    source = _source_info(feed.source_id)
    compiled = source_mapping_get(source_id=feed.source_id)
    pages = accepted = duplicates = rejected = 0
    error = ""
    if source is None or compiled is None:
        error = "the source is disabled or has no field mapping"
    else:
        while pages < settings.CHANNELS_POLL_MAX_PAGES:
            try:
                payload = _fetch(feed)
            except FeedError as failure:
                error = str(failure)
                break
            pages += 1
            messages = mapping.to_messages(compiled, payload)
            next_cursor = mapping.get_path(payload, tuple(feed.next_cursor_path.split(".")))
            next_cursor = str(next_cursor) if isinstance(next_cursor, str | int) and next_cursor != "" else ""
            with transaction.atomic():
                if messages:
                    result = profiles.event_ingest(
                        source=source, raw_messages=messages, call_type=None, received_at=timezone.now()
                    )
                    accepted += result.accepted
                    duplicates += result.duplicates
                    rejected += len(result.rejected)
                advanced = bool(next_cursor) and next_cursor != feed.cursor
                if advanced:
                    feed.cursor = next_cursor[:1000]
                    feed.save(update_fields=["cursor", "updated_at"])
            if not messages or not advanced:
                break
    feed.last_polled_at = timezone.now()
    feed.last_error = error[:2000]
    feed.save(update_fields=["last_polled_at", "last_error", "updated_at"])
    return PollResult(pages, accepted, duplicates, rejected, feed.cursor, error)


class FeedError(Exception):
    pass


def _fetch(feed: PollingFeed) -> object:
    parts = urllib.parse.urlsplit(feed.url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if feed.cursor:
        query.append((feed.cursor_param, feed.cursor))
    url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    headers = {"Accept": "application/json", "User-Agent": "Throughline-Poller"}
    if feed.auth_header_encrypted and feed.auth_header_name:
        headers[feed.auth_header_name] = fernet().decrypt(bytes(feed.auth_header_encrypted)).decode()
    limit = settings.CHANNELS_POLL_MAX_BYTES
    try:
        response = outbound.request(
            "GET", url, headers=headers, timeout=settings.CHANNELS_POLL_TIMEOUT_SECONDS, max_body=limit
        )
    except outbound.Refused as refused:
        raise FeedError(f"refused: {refused}") from None
    except outbound.OutboundError as failure:
        raise FeedError(f"feed unreachable: {failure}") from None
    if not 200 <= response.status < 300:
        # A redirect included: it is not followed (it could lead past the destination check).
        raise FeedError(f"HTTP {response.status} from the feed")
    if response.truncated:
        raise FeedError(f"feed page is larger than {limit} bytes")
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError:
        raise FeedError("feed page is not JSON") from None


def _source_info(source_id: UUID) -> SourceInfo | None:
    """The feed's source, None when it is gone or disabled."""
    source = profiles.source_info(source_id=source_id)
    return source if source is not None and source.enabled else None
