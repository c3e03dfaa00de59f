"""Email over SMTP through Django's email framework."""

import smtplib
from email.utils import make_msgid

import orjson
from django.core.mail import EmailMultiAlternatives, get_connection

from channels.retry import PermanentError, TransientError
from channels.senders.base import Outgoing


def send_email(config: dict[str, str], message: Outgoing) -> str:
    subject = str(message.content.get("subject") or "")
    text = str(message.content.get("body") or message.content.get("text") or "")
    if not text:
        raise PermanentError("email content needs a body")
    message_id = make_msgid(domain=config.get("message_id_domain") or None)
    connection = get_connection(
        "django.core.mail.backends.smtp.EmailBackend",
        host=config["host"],
        port=int(config["port"]),
        username=config.get("username") or None,
        password=config.get("password") or None,
        use_tls=config.get("use_tls") == "true",
        timeout=message.timeout,
        fail_silently=False,
    )
    email = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=config["from_email"],
        to=[message.address],
        headers={
            "Message-ID": message_id,
            "X-Throughline-Delivery": message.delivery_id,
            # SendGrid's SMTP relay returns unique_args in its Event Webhook: how a bounce or an
            # open finds its way back to this delivery.
            "X-SMTPAPI": orjson.dumps({"unique_args": {"delivery_id": message.delivery_id}}).decode(),
        },
        connection=connection,
    )
    if message.content.get("html"):
        email.attach_alternative(str(message.content["html"]), "text/html")
    try:
        email.send()
    except smtplib.SMTPRecipientsRefused as error:
        raise PermanentError(f"recipient refused: {error.recipients}") from None
    except smtplib.SMTPResponseException as error:
        reason = f"SMTP {error.smtp_code}: {error.smtp_error!r}"
        raise (PermanentError(reason) if error.smtp_code >= 500 else TransientError(reason)) from None
    except (smtplib.SMTPException, OSError) as error:
        raise TransientError(f"SMTP connection failed: {error}") from None
    return message_id
