from typing import Any

from profiles import facade as profiles


def ids_from(customer: object, *, prefix: str) -> dict[str, Any]:
    """userId/anonymousId and context traits from a provider's customer block.

    With only an email or phone, the anonymousId is derived from it so the message is valid and
    ingestion still links the person through the email/phone identity it carries.
    """
    block = customer if isinstance(customer, dict) else {}
    ids: dict[str, Any] = {}
    traits = {}
    email = profiles.normalize_email(block.get("email")) if block.get("email") else None
    phone = profiles.normalize_phone(block.get("phone")) if block.get("phone") else None
    if email:
        traits["email"] = email
    if phone:
        traits["phone"] = phone
    if block.get("user_id"):
        ids["userId"] = str(block["user_id"])
    if block.get("anonymous_id"):
        ids["anonymousId"] = str(block["anonymous_id"])
    if not ids and (email or phone):
        ids["anonymousId"] = f"{prefix}:{email or phone}"
    if traits:
        ids["context"] = {"traits": traits}
    return ids
