"""The schema registry through the management API: define, version, publish, deprecate, validate."""

from typing import Any

import orjson
import pytest
from django.test import Client

from profiles.models import EventSchemaVersion, SchemaStatus
from tests.factories import EventSchemaFactory, EventSchemaVersionFactory, SourceFactory

ORDER_V1 = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "coupon": {"type": ["string", "null"]}},
    "required": ["total"],
}


class Api:
    def __init__(self, client: Client, token: str):
        self.client = client
        self.auth = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, HTTP_AUTHORIZATION=self.auth)

    def post(self, path: str, body: Any = None) -> Any:
        data = b"" if body is None else orjson.dumps(body)
        return self.client.post(path, data, content_type="application/json", HTTP_AUTHORIZATION=self.auth)

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(path, orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=self.auth)


@pytest.fixture
def mgmt(api_token: Any, client: Client) -> Api:
    return Api(client, api_token.secret)


def published(document: Any = None, version: str = "1-0-0", **schema: Any) -> EventSchemaVersion:
    return EventSchemaVersionFactory.create(
        schema=EventSchemaFactory.create(event_name="Order Completed", **schema),
        version=version,
        document=document or ORDER_V1,
        status=SchemaStatus.ACTIVE,
    )


def versions_url(version: EventSchemaVersion) -> str:
    return f"/api/v1/schemas/{version.schema_id}/versions"


def test_a_schema_is_created(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/schemas", {"event_type": "track", "event_name": "Order Completed"})
    assert response.status_code == 201
    assert (response.json()["event_name"], response.json()["active_version"]) == ("Order Completed", None)


def test_a_schema_can_belong_to_one_source(mgmt: Api) -> None:
    source = SourceFactory.create()
    response = mgmt.post("/api/v1/schemas", {"event_type": "identify", "source_id": str(source.id)})
    assert response.json()["source_id"] == str(source.id)


def test_a_track_schema_needs_an_event_name(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/schemas", {"event_type": "track"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_event_name")


def test_an_identify_schema_takes_no_event_name(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/schemas", {"event_type": "identify", "event_name": "x"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_event_name")


def test_an_unknown_event_type_is_refused(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/schemas", {"event_type": "alias"})
    assert response.status_code == 400


def test_a_schema_for_an_unknown_source_is_refused(mgmt: Api) -> None:
    response = mgmt.post(
        "/api/v1/schemas", {"event_type": "identify", "source_id": "00000000-0000-0000-0000-000000000000"}
    )
    assert (response.status_code, response.json()["code"]) == (404, "source_not_found")


def test_the_same_global_schema_cannot_be_created_twice(mgmt: Api) -> None:
    mgmt.post("/api/v1/schemas", {"event_type": "page", "event_name": ""})
    response = mgmt.post("/api/v1/schemas", {"event_type": "page", "event_name": ""})
    assert (response.status_code, response.json()["code"]) == (409, "schema_exists")


def test_schemas_are_listed_with_their_active_version(mgmt: Api) -> None:
    version = published()
    EventSchemaFactory.create(event_name="Other")
    response = mgmt.get("/api/v1/schemas", event_name="Order Completed")
    assert [(s["id"], s["active_version"]) for s in response.json()["results"]] == [(str(version.schema_id), "1-0-0")]


def test_a_bad_filter_is_a_400(mgmt: Api) -> None:
    assert mgmt.get("/api/v1/schemas", source_id="nope").status_code == 400


def test_an_unknown_schema_is_a_404(mgmt: Api) -> None:
    assert mgmt.get("/api/v1/schemas/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_draft_version_is_added(mgmt: Api) -> None:
    schema = EventSchemaFactory.create()
    response = mgmt.post(f"/api/v1/schemas/{schema.id}/versions", {"version": "1-0-0", "document": ORDER_V1})
    assert (response.status_code, response.json()["status"]) == (201, "draft")


def test_a_version_that_is_not_schemaver_is_refused(mgmt: Api) -> None:
    schema = EventSchemaFactory.create()
    response = mgmt.post(f"/api/v1/schemas/{schema.id}/versions", {"version": "1.0.0", "document": ORDER_V1})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_version")


def test_a_document_that_is_not_a_json_schema_is_refused(mgmt: Api) -> None:
    schema = EventSchemaFactory.create()
    document = {"type": "object", "properties": {"total": {"type": "money"}}}
    response = mgmt.post(f"/api/v1/schemas/{schema.id}/versions", {"version": "1-0-0", "document": document})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_schema_document")


def test_a_document_of_another_draft_is_refused(mgmt: Api) -> None:
    schema = EventSchemaFactory.create()
    document = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}
    response = mgmt.post(f"/api/v1/schemas/{schema.id}/versions", {"version": "1-0-0", "document": document})
    assert response.json()["code"] == "invalid_schema_document"


def test_a_document_referring_outside_itself_is_refused(mgmt: Api) -> None:
    schema = EventSchemaFactory.create()
    document = {"properties": {"a": {"$ref": "https://example.com/a.json"}}}
    response = mgmt.post(f"/api/v1/schemas/{schema.id}/versions", {"version": "1-0-0", "document": document})
    assert response.json()["code"] == "invalid_schema_document"


def test_a_version_cannot_be_added_twice(mgmt: Api) -> None:
    version = published()
    response = mgmt.post(versions_url(version), {"version": "1-0-0", "document": ORDER_V1})
    assert (response.status_code, response.json()["code"]) == (409, "version_exists")


def test_a_draft_document_can_be_replaced(mgmt: Api) -> None:
    draft = EventSchemaVersionFactory.create()
    response = mgmt.put(f"{versions_url(draft)}/1-0-0", {"document": ORDER_V1})
    assert response.json()["document"] == ORDER_V1


def test_a_published_document_cannot_change(mgmt: Api) -> None:
    version = published()
    response = mgmt.put(f"{versions_url(version)}/1-0-0", {"document": {"type": "object"}})
    assert (response.status_code, response.json()["code"]) == (409, "not_a_draft")


def test_the_first_version_is_published(mgmt: Api) -> None:
    draft = EventSchemaVersionFactory.create(document=ORDER_V1)
    response = mgmt.post(f"{versions_url(draft)}/1-0-0/publish")
    assert (response.status_code, response.json()["version"]["status"], response.json()["bump"]) == (
        200,
        "active",
        None,
    )


def test_a_compatible_addition_is_published_and_replaces_the_active_version(mgmt: Api) -> None:
    active = published()
    wider = {**ORDER_V1, "properties": {**ORDER_V1["properties"], "items": {"type": "array"}}}  # type: ignore[dict-item]
    EventSchemaVersionFactory.create(schema=active.schema, version="1-0-1", document=wider)
    response = mgmt.post(f"{versions_url(active)}/1-0-1/publish")
    active.refresh_from_db()
    assert (response.json()["bump"], response.json()["previous"], active.status) == ("addition", "1-0-0", "deprecated")


def test_an_incompatible_addition_is_refused_naming_each_rule_and_where(mgmt: Api) -> None:
    active = published()
    narrower = {
        "type": "object",
        "properties": {"total": {"type": "integer"}, "coupon": {"type": "string"}},
        "required": ["total", "coupon"],
    }
    EventSchemaVersionFactory.create(schema=active.schema, version="1-0-1", document=narrower)
    response = mgmt.post(f"{versions_url(active)}/1-0-1/publish")
    assert response.status_code == 409
    assert (response.json()["code"], [(b["rule"], b["path"]) for b in response.json()["breaking_changes"]]) == (
        "incompatible_version",
        [
            ("type_narrowed", "/properties/coupon/type"),
            ("type_narrowed", "/properties/total/type"),
            ("required_added", "/required/1"),
        ],
    )


def test_a_refused_addition_leaves_the_active_version_active(mgmt: Api) -> None:
    active = published()
    EventSchemaVersionFactory.create(
        schema=active.schema, version="1-0-1", document={**ORDER_V1, "required": ["coupon"]}
    )
    mgmt.post(f"{versions_url(active)}/1-0-1/publish")
    assert list(active.schema.versions.order_by("version").values_list("status", flat=True)) == ["active", "draft"]


def test_a_breaking_change_is_published_as_a_revision_and_reported(mgmt: Api) -> None:
    active = published()
    EventSchemaVersionFactory.create(
        schema=active.schema, version="1-1-0", document={**ORDER_V1, "required": ["coupon"]}
    )
    response = mgmt.post(f"{versions_url(active)}/1-1-0/publish")
    assert (response.status_code, response.json()["bump"], len(response.json()["breaking_changes"])) == (
        200,
        "revision",
        1,
    )


def test_a_breaking_change_is_published_as_a_model_bump(mgmt: Api) -> None:
    active = published()
    EventSchemaVersionFactory.create(
        schema=active.schema, version="2-0-0", document={"type": "object", "required": ["x"]}
    )
    response = mgmt.post(f"{versions_url(active)}/2-0-0/publish")
    assert (response.status_code, response.json()["bump"]) == (200, "model")


def test_a_version_must_come_after_the_published_ones(mgmt: Api) -> None:
    active = published(version="1-1-0")
    EventSchemaVersionFactory.create(schema=active.schema, version="1-0-5", document=ORDER_V1)
    response = mgmt.post(f"{versions_url(active)}/1-0-5/publish")
    assert (response.status_code, response.json()["code"]) == (409, "version_not_increasing")


def test_a_version_must_come_after_a_deprecated_one(mgmt: Api) -> None:
    old = published(version="2-0-0")
    old.status = SchemaStatus.DEPRECATED
    old.save()
    EventSchemaVersionFactory.create(schema=old.schema, version="1-5-0", document=ORDER_V1)
    response = mgmt.post(f"{versions_url(old)}/1-5-0/publish")
    assert response.json()["code"] == "version_not_increasing"


def test_an_active_version_cannot_be_published_again(mgmt: Api) -> None:
    active = published()
    response = mgmt.post(f"{versions_url(active)}/1-0-0/publish")
    assert (response.status_code, response.json()["code"]) == (409, "not_a_draft")


def test_the_active_version_is_deprecated(mgmt: Api) -> None:
    active = published()
    response = mgmt.post(f"{versions_url(active)}/1-0-0/deprecate")
    assert (response.status_code, response.json()["status"]) == (200, "deprecated")


def test_a_draft_cannot_be_deprecated(mgmt: Api) -> None:
    draft = EventSchemaVersionFactory.create()
    response = mgmt.post(f"{versions_url(draft)}/1-0-0/deprecate")
    assert (response.status_code, response.json()["code"]) == (409, "not_active")


def test_versions_are_listed_newest_first(mgmt: Api) -> None:
    active = published(version="1-0-0")
    for version in ("1-0-1", "1-10-0", "1-2-0"):
        EventSchemaVersionFactory.create(schema=active.schema, version=version)
    response = mgmt.get(versions_url(active))
    assert [v["version"] for v in response.json()] == ["1-10-0", "1-2-0", "1-0-1", "1-0-0"]


def test_an_unknown_version_is_a_404(mgmt: Api) -> None:
    active = published()
    assert mgmt.get(f"{versions_url(active)}/9-9-9").status_code == 404


def test_a_sample_message_is_validated_against_the_active_version(mgmt: Api) -> None:
    active = published()
    sample = {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": "ten"}}
    response = mgmt.post("/api/v1/schemas/validate", {"message": sample})
    assert response.json() == {
        "valid": False,
        "event_type": "track",
        "event_name": "Order Completed",
        "schema_id": str(active.schema_id),
        "version": "1-0-0",
        "violations": [{"path": "/total", "keyword": "type", "message": "'ten' is not of type 'number'"}],
    }


def test_a_valid_sample_message_is_valid(mgmt: Api) -> None:
    published()
    sample = {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": 10}}
    assert mgmt.post("/api/v1/schemas/validate", {"message": sample}).json()["valid"] is True


def test_a_sample_is_checked_against_its_sources_own_schema(mgmt: Api) -> None:
    source = SourceFactory.create()
    published()
    own = published(document={"type": "object"}, source=source)
    sample = {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"total": "ten"}}
    response = mgmt.post("/api/v1/schemas/validate", {"message": sample, "source_id": str(source.id)})
    assert (response.json()["valid"], response.json()["schema_id"]) == (True, str(own.schema_id))


def test_a_sample_that_no_schema_covers_is_valid(mgmt: Api) -> None:
    sample = {"type": "track", "event": "Anything", "userId": "u"}
    assert mgmt.post("/api/v1/schemas/validate", {"message": sample}).json()["schema_id"] is None


def test_a_sample_that_is_not_a_message_is_a_400(mgmt: Api) -> None:
    response = mgmt.post("/api/v1/schemas/validate", {"message": {"type": "track", "event": "X"}})
    assert (response.status_code, response.json()["code"]) == (400, "missing_identity")


def test_the_registry_needs_a_token(client: Client, db: Any) -> None:
    assert client.get("/api/v1/schemas").status_code == 401
