"""Tombstone keys: a keyed hash of an identifier, so an erased person can be recognised again
(to suppress their later events) without keeping who they were.

Why a keyed HMAC-SHA256 of "kind:value" is enough: the identifiers are normalised exactly as
ingestion normalises them, so equal identifiers give equal keys and a lookup is an equality
match on an index. A plain SHA-256 would not do: emails and phone numbers are few enough to be
enumerated, so anyone with a database dump could hash candidates until one matched. With a
secret key that is not stored in the database, a dump alone reveals nothing, and nothing here
ever needs the identifier back.

Pure logic: the key is passed in.
"""

import hashlib
import hmac

from profiles.identifiers import IdentityKey

KEY_LABEL = b"throughline.privacy.tombstone.v1"


def derive_key(secret: str) -> bytes:
    """A key for tombstones derived from a configured secret, separate from its other uses."""
    return hmac.new(secret.encode("utf-8"), KEY_LABEL, hashlib.sha256).digest()


def identity_hash(key: bytes, identity: IdentityKey) -> str:
    kind, value = identity
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
