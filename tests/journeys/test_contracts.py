"""journeys.contracts: where orchestration plugs the live session state and links in."""

import uuid
from datetime import UTC, datetime

import pytest

from journeys import contracts

CUSTOMER = uuid.UUID("0d0c7c6e-9f52-4a58-9d0f-5b1d2b9f9a01")


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch):
    monkeypatch.setattr(contracts, "_session_providers", [])
    monkeypatch.setattr(contracts, "_link_providers", {})


def test_the_first_provider_with_a_session_answers():
    contracts.register_session_provider(lambda customer_id: None)
    contracts.register_session_provider(lambda customer_id: {"form": {"step": 2}, "customer": str(customer_id)})
    assert contracts.session_for(CUSTOMER) == {"form": {"step": 2}, "customer": str(CUSTOMER)}


def test_no_provider_means_no_session():
    assert contracts.session_for(CUSTOMER) is None


def test_registering_a_provider_twice_keeps_one():
    def provider(customer_id):
        return {"n": 1}

    contracts.register_session_provider(provider)
    contracts.register_session_provider(provider)
    assert contracts.session_providers() == [provider]


def test_links_by_name_leave_out_providers_without_a_link():
    contracts.register_link_provider("resume_url", lambda customer_id: f"https://example.com/r/{customer_id}")
    contracts.register_link_provider("unsubscribe_url", lambda customer_id: None)
    assert contracts.links_for(CUSTOMER) == {"resume_url": f"https://example.com/r/{CUSTOMER}"}


def test_a_link_name_registered_again_replaces_its_provider():
    contracts.register_link_provider("resume_url", lambda customer_id: "https://old")
    contracts.register_link_provider("resume_url", lambda customer_id: "https://new")
    assert contracts.links_for(CUSTOMER) == {"resume_url": "https://new"}


def test_links_providers_give_one_mapping_per_name():
    contracts.register_link_provider("resume_url", lambda customer_id: "https://r")
    contracts.register_link_provider("help_url", lambda customer_id: None)
    assert [provider(CUSTOMER) for provider in contracts.links_providers()] == [{"resume_url": "https://r"}, {}]


def test_a_segment_change_names_its_event():
    segment = contracts.SegmentRef(key="vip", name="VIP")
    at = datetime(2026, 11, 23, tzinfo=UTC)
    changes = [contracts.SegmentChange(CUSTOMER, segment, entered, at) for entered in (True, False)]
    assert [c.event_name for c in changes] == ["Segment Entered", "Segment Exited"]
