from typing import Any

from profiles.models import Customer
from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.services import consent_set
from tests.factories import CustomerFactory, IdentityFactory


def customer_with(traits: dict[str, Any] | None = None, **identities: str) -> Customer:
    """A customer holding the given identities, e.g. customer_with(user_id="u1", phone="+1...")."""
    customer = CustomerFactory.create(traits=traits or {})
    for kind, value in identities.items():
        IdentityFactory(customer=customer, kind=kind, value=value)
    return customer


def deny(customer: Customer, *, purpose: str, channel: str) -> Any:
    return consent_set(
        customer_id=customer.id, choices=[ConsentChoice(purpose, channel, "denied")], origin="api", actor="test"
    )


def grant(customer: Customer, *, purpose: str, channel: str = "*") -> Any:
    return consent_set(
        customer_id=customer.id, choices=[ConsentChoice(purpose, channel, "granted")], origin="api", actor="test"
    )
