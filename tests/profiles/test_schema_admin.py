"""The schema registry in the admin: versions added, checked, published and deprecated there."""

from typing import Any

import pytest
from django.test import Client

from profiles.models import EventSchemaVersion, SchemaStatus
from tests.factories import EventSchemaFactory, EventSchemaVersionFactory

pytestmark = pytest.mark.django_db

V1 = {"type": "object", "properties": {"total": {"type": "number"}}}
NARROWER = {"type": "object", "properties": {"total": {"type": "integer"}}, "required": ["total"]}
VERSIONS = "/admin/profiles/eventschemaversion/"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_schema_pages_render(admin_client: Client) -> None:
    version = EventSchemaVersionFactory.create(status=SchemaStatus.ACTIVE)
    pages = [
        "/admin/profiles/eventschema/",
        f"/admin/profiles/eventschema/{version.schema_id}/change/",
        "/admin/profiles/eventschema/add/",
        VERSIONS,
        f"{VERSIONS}{version.id}/change/",
        f"{VERSIONS}add/",
    ]
    assert [admin_client.get(page).status_code for page in pages] == [200] * len(pages)


def test_a_version_is_added_as_a_draft(admin_client: Client) -> None:
    schema = EventSchemaFactory.create()
    admin_client.post(f"{VERSIONS}add/", {"schema": schema.id, "version": "1-0-0", "document": '{"type": "object"}'})
    assert list(schema.versions.values_list("version", "model", "status")) == [("1-0-0", 1, "draft")]


def test_a_document_that_is_not_a_json_schema_is_shown_as_a_form_error(admin_client: Client) -> None:
    schema = EventSchemaFactory.create()
    response = admin_client.post(
        f"{VERSIONS}add/", {"schema": schema.id, "version": "1-0-0", "document": '{"type": "money"}'}
    )
    assert "not a valid Draft 2020-12 schema" in str(response.context["adminform"].form.errors["document"])


def test_a_draft_shows_whether_it_is_compatible_with_the_active_version(admin_client: Client) -> None:
    active = EventSchemaVersionFactory.create(document=V1, status=SchemaStatus.ACTIVE)
    draft = EventSchemaVersionFactory.create(schema=active.schema, version="1-0-1", document=NARROWER)
    response = admin_client.get(f"{VERSIONS}{draft.id}/change/")
    assert b"type_narrowed at /properties/total/type" in response.content


def test_publishing_an_incompatible_addition_shows_each_broken_rule(admin_client: Client) -> None:
    active = EventSchemaVersionFactory.create(document=V1, status=SchemaStatus.ACTIVE)
    draft = EventSchemaVersionFactory.create(schema=active.schema, version="1-0-1", document=NARROWER)
    response = admin_client.post(VERSIONS, {"action": "publish", "_selected_action": [draft.id]}, follow=True)
    [message] = messages_of(response)
    assert ("required_added at /required/0" in message, "type_narrowed at /properties/total/type" in message) == (
        True,
        True,
    )


def test_a_draft_is_published_from_the_admin(admin_client: Client) -> None:
    draft = EventSchemaVersionFactory.create(document=V1)
    admin_client.post(VERSIONS, {"action": "publish", "_selected_action": [draft.id]})
    assert EventSchemaVersion.objects.get(id=draft.id).status == SchemaStatus.ACTIVE


def test_the_active_version_is_deprecated_from_the_admin(admin_client: Client) -> None:
    active = EventSchemaVersionFactory.create(status=SchemaStatus.ACTIVE)
    admin_client.post(VERSIONS, {"action": "deprecate", "_selected_action": [active.id]})
    assert EventSchemaVersion.objects.get(id=active.id).status == SchemaStatus.DEPRECATED


def test_a_published_document_cannot_be_edited_in_the_admin(admin_client: Client) -> None:
    active = EventSchemaVersionFactory.create(document=V1, status=SchemaStatus.ACTIVE)
    admin_client.post(f"{VERSIONS}{active.id}/change/", {"document": '{"type": "string"}'})
    assert EventSchemaVersion.objects.get(id=active.id).document == V1
