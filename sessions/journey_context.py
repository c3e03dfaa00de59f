"""What sessions give the journey engine through journeys.contracts: the customer's live
session state (`session.*` in conditions and templates) and a resume link (`links.resume_url`)
that picks the session up on another channel.

Registered from OrchestrationConfig.ready(): journeys never imports sessions.
"""

from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from sessions.documents import SessionDoc
from sessions.selectors import customer_sessions, source_info


def _latest(customer_id: UUID) -> SessionDoc | None:
    docs = customer_sessions(customer_id=customer_id, active=True, limit=1)
    return docs[0] if docs else None


def live_session_state(customer_id: UUID) -> dict[str, Any] | None:
    """The state of the customer's most recently active session, with its channel."""
    doc = _latest(customer_id)
    if doc is None:
        return None
    return {**doc.state, "channel": doc.channel, "started_channel": doc.started_channel}


def resume_url(customer_id: UUID) -> str | None:
    """A single-use resume link for the customer's most recent active session, issued on behalf
    of the source that started it (as its own handoff would be): SESSIONS_RESUME_URL with the
    token, else the resume endpoint under CHANNELS_PUBLIC_BASE_URL; None when there is no active
    session or no URL to build (the message then uses its default content)."""
    from sessions.services import session_handoff

    doc = _latest(customer_id)
    if doc is None or not doc.source_ids:
        return None
    source = source_info(source_id=doc.source_ids[0])
    template = settings.SESSIONS_RESUME_URL
    base = str(getattr(settings, "CHANNELS_PUBLIC_BASE_URL", "") or "").rstrip("/")
    if source is None or not (template or base):
        return None
    secret, _ = session_handoff(source=source, session_id=doc.id, ttl_seconds=None, now=timezone.now())
    return template.replace("{token}", secret) if template else f"{base}/v1/sessions/resume?token={secret}"
