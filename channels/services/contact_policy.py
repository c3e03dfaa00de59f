"""The workspace's contact policy, as staff set it."""

from typing import Any

from channels import contact, selectors
from channels.models import ContactPolicy
from config.core.errors import BadRequest


def contact_policy_set(
    *,
    caps: list[dict[str, Any]] | None = None,
    quiet_start: Any = None,
    quiet_end: Any = None,
    fallback_timezone: str = "UTC",
    high_priority_bypasses_caps: bool = True,
) -> ContactPolicy:
    """Replace the workspace's contact policy (validated); this process sees it at once, others
    within CHANNELS_CONTACT_POLICY_REFRESH_SECONDS."""
    try:
        rules = contact.parse_caps(caps or [])
    except contact.PolicyError as error:
        raise BadRequest(str(error), code="invalid_policy") from None
    if not contact.valid_zone(fallback_timezone):
        raise BadRequest("fallback_timezone is not a known IANA time zone", code="invalid_policy")
    if (quiet_start is None) != (quiet_end is None):
        raise BadRequest("set both ends of the quiet hours, or neither", code="invalid_policy")
    row, _ = ContactPolicy.objects.update_or_create(
        id=ContactPolicy.SINGLETON_ID,
        defaults={
            "caps": contact.caps_to_json(rules),
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
            "fallback_timezone": fallback_timezone,
            "high_priority_bypasses_caps": high_priority_bypasses_caps,
        },
    )
    selectors.contact_policy_forget()
    return row
