"""A fast yes/no check for the common shape of event schemas. Pure logic: no Django.

`jsonschema`'s Draft202012Validator is the validator of record, but it costs some 300 us for a
message with a handful of properties and a list of line items, more than storing the event.
Most event schemas use a small set of keywords (type, properties, required, enum, bounds,
items, additionalProperties), so a document made only of those is compiled here into nested
closures that answer "valid?" in a few microseconds. Ingestion asks them first and goes to the
validator of record only for a message they refuse, to say why; a document using anything else
(`$ref`, anyOf, patternProperties, multipleOf, ...) is not compiled and always goes there.

The semantics are the validator's own, keyword by keyword (bool is not a number, 1.0 is an
integer, enum equality tells true from 1, `format` is an annotation), and the tests compare the
two on a grid of schemas and instances.
"""

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
COMPILED = frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "prefixItems",
    }
)


class _Unsupported(Exception):
    """The document uses something this module does not compile."""


def compile_check(document: Any) -> Check | None:
    """A function telling whether an instance is valid against `document`, or None when the
    document uses a keyword this module does not compile."""
    try:
        return _compile(document)
    except (_Unsupported, re.error, TypeError, KeyError):
        return None


_EXACT = frozenset({dict, list, str, int, float, bool, type(None)})
_TYPE_OF = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _type_matches(names: frozenset[str], value: Any, kind: type) -> bool:
    if kind is int:
        return "integer" in names or "number" in names
    if kind is float:
        return "number" in names or ("integer" in names and value.is_integer())
    return _TYPE_OF[kind] in names


def equal(one: Any, two: Any) -> bool:
    """JSON equality as the validator has it: 1 == 1.0, but true != 1."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(equal(one[key], two[key]) for key in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return False
    return bool(one == two)


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _compile(schema: Any) -> Check:
    """One function per (sub)schema, dispatching on the value's exact JSON type, with plain
    loops: generators and a closure per keyword cost more than the checks themselves."""
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or set(schema) - COMPILED - ANNOTATIONS:
        raise _Unsupported
    raw_type = schema.get("type")
    types = None if raw_type is None else frozenset([raw_type] if isinstance(raw_type, str) else raw_type)
    if types is not None and types - {"null", "boolean", "string", "object", "array", "number", "integer"}:
        raise _Unsupported
    options = list(schema["enum"]) if "enum" in schema else None
    has_const, const = "const" in schema, schema.get("const")
    low, high = schema.get("minimum"), schema.get("maximum")
    low_x, high_x = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")
    search = re.compile(schema["pattern"]).search if "pattern" in schema else None
    min_items, max_items = schema.get("minItems"), schema.get("maxItems")
    prefix = [_compile(item) for item in schema.get("prefixItems", [])]
    rest = _compile(schema["items"]) if "items" in schema else None
    min_props, max_props = schema.get("minProperties"), schema.get("maxProperties")
    required = list(schema.get("required") or ())
    properties = [(name, _compile(sub)) for name, sub in (schema.get("properties") or {}).items()]
    listed = frozenset(name for name, _ in properties)
    extra = _compile(schema["additionalProperties"]) if "additionalProperties" in schema else None
    numbers = low is not None or high is not None or low_x is not None or high_x is not None
    strings = min_len is not None or max_len is not None or search is not None
    arrays = min_items is not None or max_items is not None or bool(prefix) or rest is not None
    objects = min_props is not None or max_props is not None or bool(required) or bool(properties) or extra is not None

    def check(value: Any) -> bool:  # noqa: PLR0911 - one early exit per keyword is the point
        kind = type(value)
        if kind not in _EXACT:
            return False  # not plain JSON: let the validator of record decide
        if types is not None and not _type_matches(types, value, kind):
            return False
        if options is not None:
            for option in options:
                if equal(value, option):
                    break
            else:
                return False
        if has_const and not equal(value, const):
            return False
        if kind is dict:
            return not objects or check_object(value)
        if kind is list:
            return not arrays or check_array(value)
        if kind is str:
            return not strings or check_string(value)
        if kind is int or kind is float:
            return not numbers or check_number(value)
        return True

    def check_number(value: Any) -> bool:
        return not (
            (low is not None and value < low)
            or (high is not None and value > high)
            or (low_x is not None and value <= low_x)
            or (high_x is not None and value >= high_x)
        )

    def check_string(value: str) -> bool:
        return not (
            (min_len is not None and len(value) < min_len)
            or (max_len is not None and len(value) > max_len)
            or (search is not None and search(value) is None)
        )

    def check_array(value: list[Any]) -> bool:
        if (min_items is not None and len(value) < min_items) or (max_items is not None and len(value) > max_items):
            return False
        for item_check, item in zip(prefix, value, strict=False):
            if not item_check(item):
                return False
        if rest is not None:
            for item in value[len(prefix) :]:
                if not rest(item):
                    return False
        return True

    def check_object(value: dict[str, Any]) -> bool:
        if (min_props is not None and len(value) < min_props) or (max_props is not None and len(value) > max_props):
            return False
        for name in required:
            if name not in value:
                return False
        for name, property_check in properties:
            if name in value and not property_check(value[name]):
                return False
        if extra is not None:
            for key, item in value.items():
                if key not in listed and not extra(item):
                    return False
        return True

    return check
