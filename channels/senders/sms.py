"""SMS through Twilio's REST format: form-encoded POST with HTTP Basic auth."""

import base64
import urllib.parse

import orjson

from channels.retry import PermanentError
from channels.senders.base import Outgoing, http_post


def send_twilio_sms(config: dict[str, str], message: Outgoing) -> str:
    sid = config["account_sid"]
    url = f"{config['base_url'].rstrip('/')}/2010-04-01/Accounts/{urllib.parse.quote(sid)}/Messages.json"
    text = str(message.content.get("body") or message.content.get("text") or "")
    if not text:
        raise PermanentError("SMS content needs a body")
    form = {"To": message.address, "From": config["from_number"], "Body": text}
    if config.get("status_callback"):
        # Twilio then reports delivered/undelivered to /v1/webhooks/twilio/<source>/status.
        form["StatusCallback"] = config["status_callback"]
    body = urllib.parse.urlencode(form).encode()
    credentials = base64.b64encode(f"{sid}:{config['auth_token']}".encode()).decode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": f"Basic {credentials}",
        "I-Twilio-Idempotency-Token": message.idempotency_key,
    }
    response = http_post(url, body, headers, timeout=message.timeout)
    try:
        return str(orjson.loads(response).get("sid") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
