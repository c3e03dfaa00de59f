"""Redis keys of the channels app, under the project's `tl:` namespace; every write has a TTL."""

import hashlib

from config.core.redis import NAMESPACE


def webhook_signature_seen(source_id: str, signature: str) -> str:
    digest = hashlib.sha256(signature.encode()).hexdigest()[:32]
    return f"{NAMESPACE}:channels:webhook-seen:{source_id}:{digest}"
