"""Push through Firebase Cloud Messaging's HTTP v1 API.

`POST {base_url}/v1/projects/{project_id}/messages:send` with `Authorization: Bearer <token>` and
`{"message": {"token": <device registration token>, "notification": {...}, "data": {...}}}`;
FCM answers `{"name": "projects/<p>/messages/<id>"}`. The bearer token is an OAuth 2.0 access
token obtained with the service account's key (a signed JWT exchanged at `token_uri`, the
"JWT bearer" grant Google documents), cached until shortly before it expires; a fixed
`access_token` may be configured instead.

FCM's errors: UNREGISTERED (404) and an INVALID_ARGUMENT about the token (400) mean the token is
dead: the delivery fails and the token is marked undeliverable. QUOTA_EXCEEDED (429),
UNAVAILABLE (503) and INTERNAL (500) are transient (Retry-After honoured); other 4xx are
permanent. FCM reports acceptance, not arrival on the device, so a push ends as `sent`.
"""

import base64
import threading
import time
import urllib.parse
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.retry import (
    AddressRejected,
    PermanentError,
    SendError,
    TransientError,
    classify_status,
    parse_retry_after,
)
from channels.senders.base import Outgoing, http_post

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
TOKEN_LIFETIME_SECONDS = 3600
REFRESH_MARGIN_SECONDS = 300
MAX_DATA_BYTES = 4096  # FCM's limit on a message's payload

_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_tokens_lock = threading.Lock()


def send_fcm_push(config: dict[str, str], message: Outgoing) -> str:
    content = message.content
    title, text = str(content.get("title") or ""), str(content.get("body") or content.get("text") or "")
    if not title and not text:
        raise PermanentError("push content needs a title or a body")
    data = content.get("data") or {}
    if not isinstance(data, dict):
        raise PermanentError("push data must be an object")
    payload: dict[str, Any] = {
        "token": message.address,
        "notification": {key: value for key, value in (("title", title), ("body", text)) if value},
        # FCM's data values are strings; the delivery id lets the app report opens back.
        "data": {**{str(key): str(value) for key, value in data.items()}, "delivery_id": message.delivery_id},
    }
    if content.get("image"):
        payload["notification"]["image"] = str(content["image"])
    body = orjson.dumps({"message": payload})
    if len(body) > MAX_DATA_BYTES + 1024:
        raise PermanentError("push message is larger than FCM accepts (4 KB)")
    project = urllib.parse.quote(config["project_id"], safe="")
    url = f"{config.get('base_url', 'https://fcm.googleapis.com').rstrip('/')}/v1/projects/{project}/messages:send"
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Authorization": f"Bearer {access_token(config, timeout=message.timeout)}",
    }
    response = http_post(url, body, headers, timeout=message.timeout, classify=_classify_fcm)
    try:
        name = str(orjson.loads(response).get("name") or "")
    except (orjson.JSONDecodeError, AttributeError):
        name = ""
    return name.rsplit("/", 1)[-1]


def _classify_fcm(status: int, body: bytes, retry_after: str | None) -> SendError | None:
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    codes = {str(error.get("status") or "")}
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            codes.add(str(detail["errorCode"]))
    reason = f"HTTP {status} {'/'.join(sorted(code for code in codes if code))}: {str(error.get('message', ''))[:200]}"
    if "UNREGISTERED" in codes or (status == 400 and "token" in str(error.get("message", "")).lower()):
        return AddressRejected(reason)
    if codes & {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}:
        return TransientError(reason, retry_after=parse_retry_after(retry_after))
    return classify_status(status, reason, retry_after)


def access_token(config: dict[str, str], *, timeout: float) -> str:
    """The OAuth 2.0 access token for FCM: the configured one, else a cached one from the
    service account's key (JWT bearer grant)."""
    if config.get("access_token"):
        return config["access_token"]
    token_uri = config.get("token_uri") or "https://oauth2.googleapis.com/token"
    email = config.get("client_email", "")
    if not email or not config.get("private_key"):
        raise PermanentError("push provider needs access_token, or client_email and private_key")
    key = (token_uri, email)
    with _tokens_lock:
        cached = _tokens.get(key)
        if cached is not None and cached[1] - REFRESH_MARGIN_SECONDS > time.time():
            return cached[0]
    now = int(time.time())
    assertion = _jwt(
        {"iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + TOKEN_LIFETIME_SECONDS},
        config["private_key"],
    )
    form = urllib.parse.urlencode(
        {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    ).encode()
    answer = http_post(token_uri, form, {"Content-Type": "application/x-www-form-urlencoded"}, timeout=timeout)
    try:
        grant = orjson.loads(answer)
        token, lifetime = str(grant["access_token"]), float(grant.get("expires_in", TOKEN_LIFETIME_SECONDS))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise PermanentError("the token endpoint answered without an access_token") from None
    with _tokens_lock:
        _tokens[key] = (token, time.time() + lifetime)
    return token


def access_tokens_forget() -> None:
    with _tokens_lock:
        _tokens.clear()


def _jwt(claims: dict[str, Any], private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PermanentError("the service account key must be an RSA private key")
    header = _b64(orjson.dumps({"alg": "RS256", "typ": "JWT"}))
    payload = _b64(orjson.dumps(claims))
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
