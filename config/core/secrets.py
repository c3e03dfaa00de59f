"""Credentials: generated with the OS's CSPRNG, stored only as a SHA-256 digest.

Write keys and API tokens carry 256 bits of entropy, so a fast digest is enough (no stretching
is needed against guessing), and lookups by digest keep the secret itself out of the database.
"""

import hashlib
import secrets


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
