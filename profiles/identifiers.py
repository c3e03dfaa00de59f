"""Normalising identifiers so the same person is found whatever the channel typed.

Pure functions: no Django, no database.
"""

from collections.abc import Sequence
from typing import Any

import phonenumbers

IdentityKey = tuple[str, str]

MAX_IDENTIFIER_LENGTH = 512


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email or len(email) > MAX_IDENTIFIER_LENGTH:
        return None
    return email


def normalize_phone(value: object, default_region: str | None = None) -> str | None:
    """E.164, or None when the number cannot be a real one."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        number = phonenumbers.parse(str(value), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_id(value: object) -> str | None:
    """userId, anonymousId and other opaque ids: strings or integers, trimmed."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > MAX_IDENTIFIER_LENGTH:
        return None
    return text


def normalize(kind: str, value: object, default_region: str | None = None) -> str | None:
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, default_region)
    return normalize_id(value)


def message_ids(customer_id: object, identities: Sequence[IdentityKey]) -> dict[str, Any]:
    """userId / anonymousId (else email and phone) that make ingestion resolve a message to the
    person holding these identities (oldest first): the newest user id, else the newest anonymous
    id, else the newest email and phone as `context.traits` beside an anonymousId naming the
    customer (ingestion finds the person by the email or phone and records that id on it).
    Empty when the person holds none of them: nothing would resolve to it, so nothing is sent."""
    newest = dict(identities)
    if "user_id" in newest:
        return {"userId": newest["user_id"]}
    if "anonymous_id" in newest:
        return {"anonymousId": newest["anonymous_id"]}
    traits = {kind: newest[kind] for kind in ("email", "phone") if kind in newest}
    return {"anonymousId": f"tl-customer-{customer_id}", "context": {"traits": traits}} if traits else {}
