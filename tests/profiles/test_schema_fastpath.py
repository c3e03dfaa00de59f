"""The fast check agrees with the validator of record, keyword by keyword, on tricky values."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from profiles.schemas.fastpath import compile_check

ORDER = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "minLength": 1},
        "total": {"type": "number", "minimum": 0},
        "currency": {"enum": ["EUR", "USD"]},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "exclusiveMinimum": 0}},
                "required": ["sku"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["order_id", "total"],
}

SCHEMAS: list[Any] = [
    True,
    False,
    {},
    {"type": "integer"},
    {"type": "number"},
    {"type": ["string", "null"]},
    {"type": "boolean"},
    {"type": "object"},
    {"type": "array"},
    {"enum": [1, "a", None, True, [1], {"a": 1}]},
    {"enum": [0, False]},
    {"const": 0},
    {"const": False},
    {"const": 1.0},
    {"const": [1, True]},
    {"minimum": 0},
    {"maximum": 10},
    {"exclusiveMinimum": 0},
    {"exclusiveMaximum": 1.5},
    {"minLength": 2},
    {"maxLength": 2},
    {"pattern": "^a+$"},
    {"pattern": "b"},
    {"type": "string", "format": "email"},
    {"minItems": 1},
    {"maxItems": 1},
    {"items": {"type": "integer"}},
    {"prefixItems": [{"type": "integer"}, {"type": "string"}]},
    {"prefixItems": [{"type": "string"}], "items": False},
    {"minProperties": 1},
    {"maxProperties": 1},
    {"required": ["a"]},
    {"properties": {"a": {"type": "string"}}},
    {"properties": {"a": {}}, "additionalProperties": False},
    {"additionalProperties": {"type": "number"}},
    {"properties": {"a": {"properties": {"a": {"type": "integer"}}}}},
    {"title": "t", "description": "d", "$comment": "c", "examples": [1], "default": 2, "deprecated": True},
    ORDER,
]

INSTANCES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    0.0,
    1.0,
    1.5,
    10,
    11,
    10**20,
    "",
    "a",
    "aa",
    "aaa",
    "ab",
    "b",
    "é",
    "not-an-email",
    [],
    [1],
    [1.0],
    [True],
    ["a"],
    ["a", 1],
    [1, "a"],
    [1, True],
    [1, 2],
    [[1]],
    {},
    {"a": "x"},
    {"a": 1},
    {"a": 1.0},
    {"a": True},
    {"b": 1},
    {"a": "x", "b": 2},
    {"a": "x", "b": "y"},
    {"a": {"a": 1}},
    {"a": {"a": "1"}},
    {"order_id": "o", "total": 1, "currency": "EUR", "lines": [{"sku": "s", "quantity": 1}]},
    {"order_id": "", "total": 1},
    {"order_id": "o", "total": -1},
    {"order_id": "o", "total": True},
    {"order_id": "o", "total": 1, "currency": "GBP"},
    {"order_id": "o", "total": 1, "lines": [{"sku": "s", "quantity": 0}]},
    {"order_id": "o", "total": 1, "lines": [{"sku": "s", "quantity": 2.0}]},
    {"order_id": "o", "total": 1, "lines": [{"sku": "s", "colour": "red"}]},
    {"order_id": "o", "total": 1, "lines": [{"quantity": 1}]},
    {"order_id": "o", "total": 1, "lines": "none"},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=[str(i) for i in range(len(SCHEMAS))])
def test_the_fast_check_agrees_with_the_validator(schema: Any) -> None:
    fast = compile_check(schema)
    assert fast is not None
    reference = Draft202012Validator(schema)
    assert [i for i in INSTANCES if fast(i) != reference.is_valid(i)] == []


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}]},
        {"$defs": {"a": {}}, "properties": {"a": {"$ref": "#/$defs/a"}}},
        {"multipleOf": 2},
        {"patternProperties": {"^x": {}}},
        {"uniqueItems": True},
        {"properties": {"a": {"not": {}}}},
        {"items": {"if": {"type": "string"}}},
    ],
)
def test_a_document_beyond_the_compiled_keywords_is_left_to_the_validator(schema: Any) -> None:
    assert compile_check(schema) is None
