"""What every inbound adapter shares: the result types they hand to the channels services."""

from dataclasses import dataclass

# The kinds of an email provider's report (SendGrid's event names) that change a delivery or a
# consent: a bounce or a drop makes the address undeliverable, a spam report or an unsubscribe
# denies email consent. Other kinds (opens, clicks) are events only.
DELIVERED = "delivered"
UNDELIVERABLE = frozenset({"bounce", "dropped"})
OPT_OUT = frozenset({"spamreport", "unsubscribe"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """A provider's report on one message: its kind, the delivery it names (our delivery_id,
    when it carries one), the address and the provider's reason."""

    kind: str
    delivery_id: str
    email: str
    reason: str
