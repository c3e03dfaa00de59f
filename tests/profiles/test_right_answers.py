"""Answers that must be right, not nearly: consent at the same instant, what an undo gives back,
erasing while the person's events are routed, and suppression in force when the erase answers."""

from datetime import UTC, datetime
from uuid import UUID

import pytest

from profiles.privacy.conventions import ConsentChoice
from profiles.privacy.models import Consent, ConsentChange
from profiles.privacy.services import consent_set
from tests.factories import CustomerFactory
from tests.profiles.concurrency import held_open, started_and_waiting

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _consent(customer_id: UUID, status: str, at: datetime = T0, origin: str = "api") -> list[ConsentChange]:
    return consent_set(
        customer_id=customer_id,
        choices=[ConsentChoice("marketing", "email", status)],
        origin=origin,
        actor="token:test",
        changed_at=at,
    )


def _current(customer_id: UUID) -> tuple[str, datetime]:
    row = Consent.objects.get(customer_id=customer_id, purpose="marketing", channel="email")
    return row.status, row.changed_at


# --- Consent: at the same instant, a denial wins ----------------------------------------------


@pytest.mark.django_db
def test_a_grant_at_the_same_instant_does_not_overwrite_a_denial() -> None:
    customer = CustomerFactory()
    _consent(customer.id, "denied")
    [grant] = _consent(customer.id, "granted")
    assert _current(customer.id) == ("denied", T0)
    assert grant.applied is False


@pytest.mark.django_db
def test_a_denial_at_the_same_instant_overwrites_a_grant() -> None:
    customer = CustomerFactory()
    _consent(customer.id, "granted")
    [denial] = _consent(customer.id, "denied")
    assert _current(customer.id) == ("denied", T0)
    assert denial.applied is True


@pytest.mark.django_db
def test_one_call_with_a_grant_and_a_denial_at_one_instant_denies() -> None:
    customer = CustomerFactory()
    consent_set(
        customer_id=customer.id,
        choices=[ConsentChoice("marketing", "email", "denied"), ConsentChoice("marketing", "email", "granted")],
        origin="api",
        actor="token:test",
        changed_at=T0,
    )
    assert _current(customer.id) == ("denied", T0)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["granted", "denied"])
def test_repeating_a_choice_at_the_same_instant_stays_applied(status: str) -> None:
    customer = CustomerFactory()
    _consent(customer.id, status)
    [again] = _consent(customer.id, status)
    assert _current(customer.id) == (status, T0)
    assert again.applied is True
    assert Consent.objects.get(customer_id=customer.id).change_id == again.id


@pytest.mark.django_db(transaction=True)
def test_concurrent_grant_and_denial_at_one_instant_deny_and_say_so_in_the_history() -> None:
    """The denial's transaction is still open when the grant is written: neither read the
    other's state; the grant waits, and must neither win nor be recorded as applied."""
    customer = CustomerFactory()
    with held_open(lambda: _consent(customer.id, "denied")):
        grant = started_and_waiting(lambda: _consent(customer.id, "granted"))
    [granted] = grant.join()
    assert _current(customer.id) == ("denied", T0)
    assert granted.applied is False
    assert ConsentChange.objects.get(id=granted.id).applied is False
