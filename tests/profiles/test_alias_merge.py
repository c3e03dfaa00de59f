"""alias: the caller's explicit instruction to join two identities (Segment spec), so it merges
even two known users, which implicit evidence never does; the merge is recorded as explicit and
can be undone."""

from typing import Any

import pytest

from profiles.merging import customer_unmerge
from profiles.models import Customer, Identity, MergeRecord, MergeRefusal

pytestmark = pytest.mark.django_db


def _owner(user_id: str) -> Any:
    return Identity.objects.get(kind="user_id", value=user_id).customer_id


def test_alias_merges_two_known_users_as_an_explicit_merge(ingest: Any) -> None:
    ingest.post("identify", {"userId": "crm-88", "traits": {"plan": "pro"}})
    ingest.post("identify", {"userId": "web-1042", "traits": {"name": "Ann"}})
    response = ingest.post("alias", {"previousId": "crm-88", "userId": "web-1042", "messageId": "join-1"})
    assert response.status_code == 200
    assert _owner("crm-88") == _owner("web-1042")
    record = MergeRecord.objects.get()
    assert (record.trigger["explicit"], record.trigger["message_id"], record.actor) == (True, "join-1", "ingestion")
    assert not MergeRefusal.objects.exists()


def test_an_explicit_alias_merge_is_undone_like_any_other(ingest: Any) -> None:
    ingest.post("identify", {"userId": "crm-88"})
    ingest.post("identify", {"userId": "web-1042"})
    ingest.post("alias", {"previousId": "crm-88", "userId": "web-1042"})
    customer_unmerge(record_id=MergeRecord.objects.get().id, actor="support")
    assert _owner("crm-88") != _owner("web-1042")
    assert Customer.objects.filter(merged_into__isnull=True).count() == 2


def test_alias_gives_a_known_user_a_new_user_id(ingest: Any) -> None:
    ingest.post("identify", {"userId": "crm-88"})
    ingest.post("alias", {"previousId": "crm-88", "userId": "web-1042"})
    assert _owner("crm-88") == _owner("web-1042")
    assert not MergeRefusal.objects.exists()


def test_an_identify_joining_two_known_users_is_still_refused(ingest: Any) -> None:
    ingest.post("identify", {"userId": "crm-88", "anonymousId": "tablet"})
    ingest.post("identify", {"userId": "web-1042", "anonymousId": "tablet"})
    assert _owner("crm-88") != _owner("web-1042")
    assert MergeRefusal.objects.exists()
