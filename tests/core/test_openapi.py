"""The OpenAPI document is valid and describes every route the API serves."""

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


def _served_paths(patterns: list[Any] | None = None, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            paths |= _served_paths(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith(("v1/", "api/v1/")):
            paths.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return paths


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_schema_is_valid_openapi(schema: dict[str, Any]) -> None:
    validate_schema(schema)


def test_every_api_route_is_in_the_schema(schema: dict[str, Any]) -> None:
    assert _served_paths() - set(schema["paths"]) == set()


def test_every_operation_has_an_id_and_a_tag(schema: dict[str, Any]) -> None:
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert all(op.get("operationId") and op.get("tags") for op in operations)


def test_schema_is_served(client: Any) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "/v1/batch" in response.json()["paths"]
