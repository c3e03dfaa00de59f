"""Outbound senders: one per provider format. Each raises TransientError or PermanentError."""

from collections.abc import Callable

from channels.senders.base import Outgoing
from channels.senders.console import send_console
from channels.senders.email import send_email
from channels.senders.push import send_fcm_push
from channels.senders.sms import send_twilio_sms
from channels.senders.webhook import send_webhook

Sender = Callable[[dict[str, str], Outgoing], str]

SENDERS: dict[str, Sender] = {
    "twilio": send_twilio_sms,
    "smtp": send_email,
    "webhook": send_webhook,
    "fcm": send_fcm_push,
    "console": send_console,
}

__all__ = ["SENDERS", "Outgoing", "Sender"]
