"""A source's schema policy through the management API, and its effect on ingestion."""

from typing import Any

import orjson
import pytest
from django.test import Client

from profiles.models import QuarantinedMessage, SchemaStatus, Source
from tests.conftest import IngestClient
from tests.factories import EventSchemaFactory, EventSchemaVersionFactory, SourceFactory

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, client: Client, token: str):
        self.client = client
        self.auth = f"Bearer {token}"

    def get(self, path: str) -> Any:
        return self.client.get(path, HTTP_AUTHORIZATION=self.auth)

    def patch(self, path: str, body: Any) -> Any:
        return self.client.patch(
            path, orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=self.auth
        )


@pytest.fixture
def mgmt(api_token: Any, client: Client) -> Api:
    return Api(client, api_token.secret)


def _url(source: Any) -> str:
    return f"/api/v1/sources/{source.id}/schema-policy"


def test_a_new_source_allows_everything(mgmt: Api, source: Any) -> None:
    body = mgmt.get(_url(source)).json()
    assert (body["source_id"], body["source_name"], body["policy"]) == (str(source.id), source.name, "allow")


def test_patch_sets_the_policy(mgmt: Api, source: Any) -> None:
    response = mgmt.patch(_url(source), {"policy": "enforce"})
    assert (response.status_code, response.json()["policy"]) == (200, "enforce")
    assert Source.objects.get(id=source.id).schema_policy == "enforce"


def test_an_unknown_policy_is_refused_with_a_400(mgmt: Api, source: Any) -> None:
    response = mgmt.patch(_url(source), {"policy": "strict"})
    assert response.status_code == 400
    assert set(response.json()) >= {"detail", "code"}
    assert Source.objects.get(id=source.id).schema_policy == "allow"


def test_a_missing_policy_is_refused_with_a_400(mgmt: Api, source: Any) -> None:
    assert mgmt.patch(_url(source), {}).status_code == 400


def test_an_unknown_source_is_a_404(mgmt: Api) -> None:
    missing = SourceFactory.create()
    Source.objects.filter(id=missing.id).delete()
    response = mgmt.get(_url(missing))
    assert (response.status_code, response.json()["code"]) == (404, "source_not_found")
    assert mgmt.patch(_url(missing), {"policy": "warn"}).status_code == 404


def test_the_policy_needs_a_staff_token(client: Client, source: Any) -> None:
    assert client.get(_url(source)).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_enforce_set_through_the_api_quarantines_a_violation(mgmt: Api, ingest: IngestClient, source: Any) -> None:
    EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_name="Order Completed"),
        version="1-0-0",
        document={"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]},
        status=SchemaStatus.ACTIVE,
    )
    assert mgmt.patch(_url(source), {"policy": "enforce"}).status_code == 200
    response = ingest.post("track", {"userId": "u-1", "event": "Order Completed", "properties": {"total": "ten"}})
    assert response.status_code == 400
    assert QuarantinedMessage.objects.get().reason == "schema_violation"
