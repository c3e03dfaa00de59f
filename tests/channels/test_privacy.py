"""Erase and export reach the deliveries channels keeps."""

import pytest

from channels.models import Delivery
from channels.services.deliveries import deliver
from profiles.models import Customer
from profiles.privacy.selectors import customer_export_chunks
from profiles.privacy.services import customer_erase
from tests.channels.factories import customer_with

pytestmark = pytest.mark.django_db


def test_erasing_a_customer_deletes_their_deliveries() -> None:
    customer = customer_with(user_id="u1", phone="+14155550100")
    deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="k1")
    customer_erase(customer_id=customer.id, suppress=False, reason="request", actor="test")
    assert not Delivery.objects.exists()


def test_export_lists_the_deliveries() -> None:
    customer = customer_with(user_id="u1", phone="+14155550100")
    deliver(channel="sms", customer_id=customer.id, content={"body": "Hi"}, idempotency_key="k1")
    document = b"".join(customer_export_chunks(customer=Customer.objects.get(id=customer.id)))
    assert b'"idempotency_key":"k1"' in document
