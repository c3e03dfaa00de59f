"""Every compatibility rule an ADDITION must keep, one test each, and the changes it may make."""

from typing import Any

from profiles.schemas.compat import breaking_changes


def broken(old: Any, new: Any) -> list[tuple[str, str]]:
    return [(breach.rule, breach.path) for breach in breaking_changes(old, new)]


def obj(properties: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **keywords}


STRING = {"type": "string"}

# --- what an ADDITION may do ------------------------------------------------------------------


def test_identical_documents_are_compatible() -> None:
    document = obj({"price": {"type": "number", "minimum": 0}}, required=["price"])
    assert broken(document, document) == []


def test_a_new_optional_property_is_an_addition() -> None:
    assert broken(obj({"a": STRING}), obj({"a": STRING, "b": {"type": "integer"}})) == []


def test_a_new_optional_property_on_a_closed_object_is_an_addition() -> None:
    before = obj({"a": STRING}, additionalProperties=False)
    after = obj({"a": STRING, "b": STRING}, additionalProperties=False)
    assert broken(before, after) == []


def test_widening_a_type_is_compatible() -> None:
    assert broken(obj({"a": STRING}), obj({"a": {"type": ["string", "null"]}})) == []


def test_integer_to_number_is_compatible() -> None:
    assert broken(obj({"n": {"type": "integer"}}), obj({"n": {"type": "number"}})) == []


def test_adding_enum_values_is_compatible() -> None:
    assert broken(obj({"c": {"enum": ["a", "b"]}}), obj({"c": {"enum": ["a", "b", "c"]}})) == []


def test_loosening_every_bound_is_compatible() -> None:
    before = obj(
        {"n": {"minimum": 1, "maximum": 9}, "s": {"minLength": 2, "maxLength": 5}, "l": {"minItems": 1, "maxItems": 3}}
    )
    after = obj({"n": {"minimum": 0}, "s": {"maxLength": 10}, "l": {"minItems": 0, "maxItems": 4}})
    assert broken(before, after) == []


def test_removing_a_required_property_is_compatible() -> None:
    assert broken(obj({"a": STRING}, required=["a"]), obj({"a": STRING})) == []


def test_removing_a_property_from_an_open_object_is_compatible() -> None:
    assert broken(obj({"a": STRING, "b": STRING}), obj({"a": STRING})) == []


def test_opening_a_closed_object_is_compatible() -> None:
    assert broken(obj({"a": STRING}, additionalProperties=False), obj({"a": STRING})) == []


def test_a_multiple_of_that_divides_the_old_one_is_compatible() -> None:
    assert broken(obj({"n": {"multipleOf": 0.5}}), obj({"n": {"multipleOf": 0.25}})) == []


def test_an_enum_keeps_its_values_when_numbers_are_written_differently() -> None:
    assert broken(obj({"n": {"enum": [1, 2.5]}}), obj({"n": {"enum": [1.0, 2.5]}})) == []


def test_typing_an_enum_of_strings_as_string_is_compatible() -> None:
    assert broken(obj({"c": {"enum": ["a", "b"]}}), obj({"c": {"type": "string", "enum": ["a", "b"]}})) == []


def test_annotations_and_format_do_not_count() -> None:
    before = obj({"email": STRING})
    after = obj({"email": {"type": "string", "format": "email", "description": "work email", "examples": ["a@b.c"]}})
    assert broken(before, after) == []


def test_removing_a_keyword_it_cannot_reason_about_is_compatible() -> None:
    assert broken(obj({"x": {"anyOf": [STRING, {"type": "integer"}]}}), obj({"x": {}})) == []


def test_anything_is_compatible_with_a_schema_that_accepted_nothing() -> None:
    assert broken(False, obj({"a": STRING}, required=["a"])) == []


# --- what an ADDITION may not do: one test per rule --------------------------------------------


def test_required_added() -> None:
    assert broken(obj({"a": STRING}), obj({"a": STRING}, required=["a"])) == [("required_added", "/required/0")]


def test_type_narrowed_by_dropping_null() -> None:
    before = obj({"a": {"type": ["string", "null"]}})
    assert broken(before, obj({"a": STRING})) == [("type_narrowed", "/properties/a/type")]


def test_type_narrowed_from_number_to_integer() -> None:
    before = obj({"n": {"type": "number"}})
    assert broken(before, obj({"n": {"type": "integer"}})) == [("type_narrowed", "/properties/n/type")]


def test_type_narrowed_by_adding_a_type_where_there_was_none() -> None:
    assert broken(obj({"a": {}}), obj({"a": STRING})) == [("type_narrowed", "/properties/a/type")]


def test_enum_narrowed() -> None:
    before = obj({"c": {"enum": ["a", "b"]}})
    assert broken(before, obj({"c": {"enum": ["a"]}})) == [("enum_narrowed", "/properties/c/enum")]


def test_enum_added_where_any_value_was_accepted() -> None:
    assert broken(obj({"c": STRING}), obj({"c": {"type": "string", "enum": ["a"]}})) == [
        ("enum_narrowed", "/properties/c/enum")
    ]


def test_const_added_is_a_narrowed_enum() -> None:
    assert broken(obj({"c": STRING}), obj({"c": {"type": "string", "const": "a"}})) == [
        ("enum_narrowed", "/properties/c/const")
    ]


def test_minimum_raised() -> None:
    before = obj({"n": {"minimum": 0}})
    assert broken(before, obj({"n": {"minimum": 1}})) == [("minimum_raised", "/properties/n/minimum")]


def test_minimum_added() -> None:
    assert broken(obj({"n": {}}), obj({"n": {"minimum": 0}})) == [("minimum_raised", "/properties/n/minimum")]


def test_exclusive_minimum_at_the_old_minimum_is_tighter() -> None:
    before = obj({"n": {"minimum": 0}})
    assert broken(before, obj({"n": {"exclusiveMinimum": 0}})) == [("minimum_raised", "/properties/n/exclusiveMinimum")]


def test_maximum_lowered() -> None:
    before = obj({"n": {"maximum": 10}})
    assert broken(before, obj({"n": {"maximum": 9}})) == [("maximum_lowered", "/properties/n/maximum")]


def test_exclusive_maximum_lowered() -> None:
    before = obj({"n": {"exclusiveMaximum": 10}})
    assert broken(before, obj({"n": {"exclusiveMaximum": 5}})) == [
        ("maximum_lowered", "/properties/n/exclusiveMaximum")
    ]


def test_min_length_raised() -> None:
    before = obj({"s": {"minLength": 1}})
    assert broken(before, obj({"s": {"minLength": 2}})) == [("min_length_raised", "/properties/s/minLength")]


def test_max_length_lowered() -> None:
    before = obj({"s": {"maxLength": 10}})
    assert broken(before, obj({"s": {"maxLength": 5}})) == [("max_length_lowered", "/properties/s/maxLength")]


def test_max_length_added() -> None:
    assert broken(obj({"s": STRING}), obj({"s": {"type": "string", "maxLength": 5}})) == [
        ("max_length_lowered", "/properties/s/maxLength")
    ]


def test_min_items_raised() -> None:
    before = obj({"l": {"type": "array"}})
    assert broken(before, obj({"l": {"type": "array", "minItems": 1}})) == [
        ("min_items_raised", "/properties/l/minItems")
    ]


def test_max_items_lowered() -> None:
    before = obj({"l": {"maxItems": 3}})
    assert broken(before, obj({"l": {"maxItems": 2}})) == [("max_items_lowered", "/properties/l/maxItems")]


def test_min_properties_raised() -> None:
    assert broken(obj({}), obj({}, minProperties=1)) == [("min_properties_raised", "/minProperties")]


def test_max_properties_lowered() -> None:
    assert broken(obj({}, maxProperties=5), obj({}, maxProperties=4)) == [("max_properties_lowered", "/maxProperties")]


def test_pattern_added() -> None:
    assert broken(obj({"s": STRING}), obj({"s": {"type": "string", "pattern": "^a"}})) == [
        ("pattern_changed", "/properties/s/pattern")
    ]


def test_pattern_changed() -> None:
    before = obj({"s": {"pattern": "^a"}})
    assert broken(before, obj({"s": {"pattern": "^a+"}})) == [("pattern_changed", "/properties/s/pattern")]


def test_multiple_of_added() -> None:
    assert broken(obj({"n": {}}), obj({"n": {"multipleOf": 2}})) == [
        ("multiple_of_changed", "/properties/n/multipleOf")
    ]


def test_multiple_of_changed_to_a_non_divisor() -> None:
    before = obj({"n": {"multipleOf": 2}})
    assert broken(before, obj({"n": {"multipleOf": 3}})) == [("multiple_of_changed", "/properties/n/multipleOf")]


def test_unique_items_added() -> None:
    before = obj({"l": {"type": "array"}})
    assert broken(before, obj({"l": {"type": "array", "uniqueItems": True}})) == [
        ("unique_items_added", "/properties/l/uniqueItems")
    ]


def test_property_removed_where_additional_properties_are_closed() -> None:
    before = obj({"a": STRING, "b": STRING}, additionalProperties=False)
    after = obj({"a": STRING}, additionalProperties=False)
    assert broken(before, after) == [("property_removed", "/properties/b")]


def test_additional_properties_closed() -> None:
    before = obj({"a": STRING}, additionalProperties=True)
    after = obj({"a": STRING}, additionalProperties=False)
    assert broken(before, after) == [("additional_properties_closed", "/additionalProperties")]


def test_additional_properties_closed_where_they_were_left_open() -> None:
    assert broken(obj({"a": STRING}), obj({"a": STRING}, additionalProperties=False)) == [
        ("additional_properties_closed", "/additionalProperties")
    ]


def test_unevaluated_properties_closed() -> None:
    assert broken(obj({"a": STRING}), obj({"a": STRING}, unevaluatedProperties=False)) == [
        ("additional_properties_closed", "/unevaluatedProperties")
    ]


def test_additional_properties_schema_narrowed() -> None:
    before = obj({}, additionalProperties={"type": ["string", "number"]})
    after = obj({}, additionalProperties=STRING)
    assert broken(before, after) == [("type_narrowed", "/additionalProperties/type")]


def test_new_property_narrower_than_the_additional_properties_it_was_checked_against() -> None:
    before = obj({}, additionalProperties={"type": ["string", "number"]})
    after = obj({"a": STRING}, additionalProperties={"type": ["string", "number"]})
    assert broken(before, after) == [("type_narrowed", "/properties/a/type")]


def test_nested_object_checked_recursively() -> None:
    before = obj({"address": obj({"zip": {"type": ["string", "integer"]}})})
    after = obj({"address": obj({"zip": STRING}, required=["zip"])})
    assert broken(before, after) == [
        ("type_narrowed", "/properties/address/properties/zip/type"),
        ("required_added", "/properties/address/required/0"),
    ]


def test_array_items_checked_recursively() -> None:
    before = obj({"tags": {"type": "array", "items": {"type": "string", "maxLength": 20}}})
    after = obj({"tags": {"type": "array", "items": {"type": "string", "maxLength": 10}}})
    assert broken(before, after) == [("max_length_lowered", "/properties/tags/items/maxLength")]


def test_objects_inside_array_items_checked_recursively() -> None:
    before = obj({"lines": {"type": "array", "items": obj({"sku": STRING})}})
    after = obj({"lines": {"type": "array", "items": obj({"sku": STRING}, required=["sku"])}})
    assert broken(before, after) == [("required_added", "/properties/lines/items/required/0")]


def test_prefix_items_checked_by_position() -> None:
    before = obj({"pair": {"type": "array", "prefixItems": [STRING, {"type": "number"}]}})
    after = obj({"pair": {"type": "array", "prefixItems": [STRING, {"type": "integer"}]}})
    assert broken(before, after) == [("type_narrowed", "/properties/pair/prefixItems/1/type")]


def test_items_closed() -> None:
    before = obj({"pair": {"type": "array", "prefixItems": [STRING]}})
    after = obj({"pair": {"type": "array", "prefixItems": [STRING], "items": False}})
    assert broken(before, after) == [("items_closed", "/properties/pair/items")]


def test_schema_closed() -> None:
    assert broken(obj({"a": STRING}), obj({"a": False})) == [("schema_closed", "/properties/a")]


def test_keyword_it_cannot_reason_about_added() -> None:
    before = obj({"x": {}})
    after = obj({"x": {"anyOf": [STRING, {"type": "integer"}]}})
    assert broken(before, after) == [("keyword_changed", "/properties/x/anyOf")]


def test_narrowing_behind_a_reference_is_found_where_it_is_used() -> None:
    before = {"$defs": {"money": {"type": "number"}}, **obj({"total": {"$ref": "#/$defs/money"}})}
    after = {"$defs": {"money": {"type": "integer"}}, **obj({"total": {"$ref": "#/$defs/money"}})}
    assert broken(before, after) == [("type_narrowed", "/properties/total/type")]


def test_property_names_are_escaped_in_the_pointer() -> None:
    before = obj({"a/b~c": {"type": "number"}})
    after = obj({"a/b~c": {"type": "integer"}})
    assert broken(before, after) == [("type_narrowed", "/properties/a~1b~0c/type")]


def test_every_breach_is_reported() -> None:
    before = obj({"a": STRING, "n": {"type": "number"}})
    after = obj({"a": {"type": "string", "pattern": "x"}, "n": {"type": "integer"}}, required=["a"])
    assert len(broken(before, after)) == 3
