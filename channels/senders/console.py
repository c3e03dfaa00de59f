"""The console provider: writes the rendered message to the log instead of sending it, as
Django's console email backend does. In embedded mode (`make run`) it stands in for the
providers of every channel that has none configured (channels.selectors.providers_for), so a
newcomer sees a message go out without a provider account. It never fails and calls no one."""

import logging
from typing import Any

from channels.senders.base import Outgoing

logger = logging.getLogger(__name__)

# The content fields shown, in this order, as they are named by each channel's senders.
_FIELDS = ("subject", "title", "body", "text", "html", "image")


def send_console(config: dict[str, str], message: Outgoing) -> str:
    # One record, so the message reads as one block in a terminal and stays one JSON line.
    logger.info(
        "console %s to %s (delivery %s; not sent, no provider configured):\n%s",
        message.channel or "message",
        message.address,
        message.delivery_id,
        content_text(message.content, indent="  "),
        extra={"delivery_id": message.delivery_id, "channel": message.channel},
    )
    return f"console-{message.delivery_id}"


def content_text(content: Any, *, indent: str = "") -> str:
    """A message's content as a person reads it: subject, title and body first, one field a line
    (a value's own lines indented under it). Also the admin's view of a delivery's message."""
    fields: dict[str, Any] = content if isinstance(content, dict) else {"content": content}
    shown = [(name, fields[name]) for name in _FIELDS if fields.get(name) not in (None, "")]
    shown += [(name, value) for name, value in fields.items() if name not in _FIELDS]
    lines = [f"{indent}{name}: {str(value).replace(chr(10), chr(10) + indent + '  ')}" for name, value in shown]
    return "\n".join(lines) or f"{indent}(no content)"
