"""Does a new version of a JSON Schema accept everything the previous one accepted? Pure logic.

Publishing an ADDITION requires it. The checker walks both documents side by side (following
local `$ref`s) and reports every place where the new one is stricter, as a `Breach` naming the
rule and the JSON pointer, in the new document, where it is broken.

It is conservative: a keyword it cannot reason about (anyOf, oneOf, allOf, not, if/then/else,
patternProperties, dependentSchemas, contains, ...) counts as a breach whenever it is added or
changed, and only removing it passes. One exception is deliberate and follows SchemaVer: a new
optional property on an object that allowed any additional property is an ADDITION, even though
a historical event could have carried that name with another shape.
"""

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

# Keywords that do not constrain what validates (Draft 2020-12 treats `format` as an annotation).
ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$dynamicAnchor",
        "$comment",
        "$defs",
        "definitions",
        "$vocabulary",
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
# Keywords compared rule by rule below; any other keyword goes to the catch-all.
COMPARED = frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "pattern",
        "multipleOf",
        "uniqueItems",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "prefixItems",
    }
)
# Inclusive lower bounds that default to 0 and upper bounds that default to none, per rule.
_MIN_COUNTS = {
    "minLength": "min_length_raised",
    "minItems": "min_items_raised",
    "minProperties": "min_properties_raised",
}
_MAX_COUNTS = {
    "maxLength": "max_length_lowered",
    "maxItems": "max_items_lowered",
    "maxProperties": "max_properties_lowered",
}
MAX_DEPTH = 64
MAX_REF_HOPS = 32

RULES = (
    "required_added",
    "type_narrowed",
    "enum_narrowed",
    "minimum_raised",
    "maximum_lowered",
    *_MIN_COUNTS.values(),
    *_MAX_COUNTS.values(),
    "pattern_changed",
    "multiple_of_changed",
    "unique_items_added",
    "property_removed",
    "additional_properties_closed",
    "items_closed",
    "schema_closed",
    "keyword_changed",
)


@dataclass(frozen=True, slots=True)
class Breach:
    """One way the new version rejects something the old one accepted."""

    rule: str
    path: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "path": self.path, "detail": self.detail}


def breaking_changes(old: Any, new: Any) -> list[Breach]:
    """Every breach of the ADDITION rules going from document `old` to document `new`, by path;
    empty when `new` accepts everything `old` did."""
    checker = _Checker(old, new)
    checker.compare(old, new, "", closed_rule="schema_closed", depth=0)
    return sorted(checker.breaches, key=lambda breach: breach.path)


def _canonical(value: Any) -> str:
    return json.dumps(_normalise_numbers(value), sort_keys=True, separators=(",", ":"))


def _normalise_numbers(value: Any) -> Any:
    """1 and 1.0 are the same JSON number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_normalise_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalise_numbers(item) for key, item in value.items()}
    return value


def _escape(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _join(path: str, *tokens: str | int) -> str:
    return path + "".join("/" + _escape(token) for token in tokens)


_PYTHON_TO_JSON = ((bool, "boolean"), (int, "integer"), (str, "string"), (list, "array"), (dict, "object"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    return next(name for kind, name in _PYTHON_TO_JSON if isinstance(value, kind))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Checker:
    def __init__(self, old_root: Any, new_root: Any):
        self.old_root = old_root
        self.new_root = new_root
        self.breaches: list[Breach] = []

    def add(self, rule: str, path: str, detail: str) -> None:
        self.breaches.append(Breach(rule=rule, path=path, detail=detail))

    # --- $ref -------------------------------------------------------------------------------

    @staticmethod
    def _pointer(root: Any, ref: str) -> Any:
        """The subschema a local reference (`#` or `#/a/b`) names, or None."""
        if ref == "#":
            return root
        if not ref.startswith("#/"):
            return None
        node = root
        for raw in ref[2:].split("/"):
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def _resolve(self, schema: Any, root: Any) -> Any:
        """Inline local `$ref`s at this level; a reference this cannot follow stays in place
        and is compared by the catch-all."""
        for _ in range(MAX_REF_HOPS):
            if not isinstance(schema, dict) or not isinstance(schema.get("$ref"), str):
                return schema
            target = self._pointer(root, schema["$ref"])
            if target is None:
                return schema
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            if isinstance(target, bool):
                return target if not siblings or target is False else siblings
            schema = {**target, **siblings}
        return schema

    # --- the walk ---------------------------------------------------------------------------

    def compare(self, old: Any, new: Any, path: str, *, closed_rule: str, depth: int) -> None:
        old = self._resolve(old, self.old_root)
        new = self._resolve(new, self.new_root)
        if old is False or new is True or new == {}:
            return
        if new is False:
            self.add(closed_rule, path, "the new version rejects every value here")
            return
        old_schema: dict[str, Any] = {} if old is True else old
        if not isinstance(old_schema, dict) or not isinstance(new, dict):
            return
        if depth >= MAX_DEPTH:
            if _canonical(old_schema) != _canonical(new):
                self.add("keyword_changed", path, "nested too deeply to compare; treated as changed")
            return
        self._types(old_schema, new, path)
        self._enum(old_schema, new, path)
        self._numeric_bounds(old_schema, new, path)
        self._counts(old_schema, new, path)
        self._pattern(old_schema, new, path)
        self._multiple_of(old_schema, new, path)
        self._unique_items(old_schema, new, path)
        self._required(old_schema, new, path)
        self._object(old_schema, new, path, depth)
        self._array(old_schema, new, path, depth)
        self._catch_all(old_schema, new, path)

    def _types(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if "type" not in new:
            return
        new_types = {new["type"]} if isinstance(new["type"], str) else set(new["type"])
        old_types: set[str] | None = None
        if "type" in old:
            old_types = {old["type"]} if isinstance(old["type"], str) else set(old["type"])
        values = self._enum_values(old)
        if values is not None:
            # An enum of strings only ever accepted strings, whatever its `type` said.
            enum_types = {_json_type(value) for value in values}
            old_types = enum_types if old_types is None else {t for t in enum_types if self._covered(t, old_types)}
        if old_types is None:
            self.add("type_narrowed", _join(path, "type"), f"type {sorted(new_types)} added; any type was accepted")
            return
        lost = sorted(t for t in old_types if not self._covered(t, new_types))
        if lost:
            self.add("type_narrowed", _join(path, "type"), f"no longer accepts {', '.join(lost)}")

    @staticmethod
    def _covered(json_type: str, types: set[str]) -> bool:
        return json_type in types or (json_type == "integer" and "number" in types)

    @staticmethod
    def _enum_values(schema: dict[str, Any]) -> list[Any] | None:
        if "const" in schema:
            return [schema["const"]]
        if isinstance(schema.get("enum"), list):
            return list(schema["enum"])
        return None

    def _enum(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        new_values = self._enum_values(new)
        if new_values is None:
            return
        keyword = "const" if "const" in new else "enum"
        old_values = self._enum_values(old)
        if old_values is None:
            self.add("enum_narrowed", _join(path, keyword), f"{keyword} added; any value was accepted")
            return
        allowed = {_canonical(value) for value in new_values}
        lost = [value for value in old_values if _canonical(value) not in allowed]
        if lost:
            shown = ", ".join(json.dumps(value) for value in lost[:10])
            self.add("enum_narrowed", _join(path, keyword), f"no longer accepts {shown}")

    @staticmethod
    def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, *, lower: bool) -> tuple[Any, bool] | None:
        """The effective bound as (value, is_exclusive), the tighter of the two keywords."""
        candidates = []
        if _is_number(schema.get(inclusive)):
            candidates.append((schema[inclusive], False))
        if _is_number(schema.get(exclusive)):
            candidates.append((schema[exclusive], True))
        if not candidates:
            return None
        if lower:
            return max(candidates, key=lambda c: (c[0], c[1]))
        return min(candidates, key=lambda c: (c[0], not c[1]))

    def _numeric_bounds(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        old_low = self._bound(old, "minimum", "exclusiveMinimum", lower=True)
        new_low = self._bound(new, "minimum", "exclusiveMinimum", lower=True)
        if new_low is not None and (old_low is None or (new_low[0], new_low[1]) > (old_low[0], old_low[1])):
            keyword = "exclusiveMinimum" if new_low[1] else "minimum"
            was = "none" if old_low is None else f"{'>' if old_low[1] else '>='} {old_low[0]}"
            self.add("minimum_raised", _join(path, keyword), f"lower bound is now {new_low[0]} (was {was})")
        old_high = self._bound(old, "maximum", "exclusiveMaximum", lower=False)
        new_high = self._bound(new, "maximum", "exclusiveMaximum", lower=False)
        if new_high is not None and (
            old_high is None or (new_high[0], not new_high[1]) < (old_high[0], not old_high[1])
        ):
            keyword = "exclusiveMaximum" if new_high[1] else "maximum"
            was = "none" if old_high is None else f"{'<' if old_high[1] else '<='} {old_high[0]}"
            self.add("maximum_lowered", _join(path, keyword), f"upper bound is now {new_high[0]} (was {was})")

    def _counts(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for keyword, rule in _MIN_COUNTS.items():
            if _is_number(new.get(keyword)) and new[keyword] > (old.get(keyword) or 0):
                self.add(rule, _join(path, keyword), f"{keyword} is now {new[keyword]} (was {old.get(keyword, 0)})")
        for keyword, rule in _MAX_COUNTS.items():
            if _is_number(new.get(keyword)) and (not _is_number(old.get(keyword)) or new[keyword] < old[keyword]):
                was = old.get(keyword, "none")
                self.add(rule, _join(path, keyword), f"{keyword} is now {new[keyword]} (was {was})")

    def _pattern(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if "pattern" in new and new["pattern"] != old.get("pattern"):
            verb = "changed" if "pattern" in old else "added"
            self.add("pattern_changed", _join(path, "pattern"), f"pattern {verb}: {new['pattern']!r}")

    def _multiple_of(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if not _is_number(new.get("multipleOf")):
            return
        if _is_number(old.get("multipleOf")):
            ratio = Fraction(str(old["multipleOf"])) / Fraction(str(new["multipleOf"]))
            if ratio.denominator == 1:
                return  # every multiple of the old divisor is a multiple of the new one
        self.add(
            "multiple_of_changed", _join(path, "multipleOf"), f"values must now be multiples of {new['multipleOf']}"
        )

    def _unique_items(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
            self.add("unique_items_added", _join(path, "uniqueItems"), "items must now be unique")

    def _required(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        before = set(old.get("required") or ())
        for index, name in enumerate(new.get("required") or ()):
            if name not in before:
                self.add("required_added", _join(path, "required", index), f"{name!r} is now required")

    @staticmethod
    def _fallback(schema: dict[str, Any]) -> tuple[Any, str]:
        """What a property the schema does not list must match, and the keyword that says so."""
        if "additionalProperties" in schema:
            return schema["additionalProperties"], "additionalProperties"
        if schema.get("unevaluatedProperties") is False:
            return False, "unevaluatedProperties"
        return True, "additionalProperties"

    def _object(self, old: dict[str, Any], new: dict[str, Any], path: str, depth: int) -> None:
        old_props = old.get("properties") or {}
        new_props = new.get("properties") or {}
        old_rest, _ = self._fallback(old)
        new_rest, new_rest_keyword = self._fallback(new)
        old_rest = self._resolve(old_rest, self.old_root)
        new_rest = self._resolve(new_rest, self.new_root)
        for name, new_prop in new_props.items():
            prop_path = _join(path, "properties", name)
            if name in old_props:
                self.compare(old_props[name], new_prop, prop_path, closed_rule="schema_closed", depth=depth + 1)
            elif isinstance(old_rest, dict):
                # The old version checked this name against its additionalProperties schema.
                self.compare(old_rest, new_prop, prop_path, closed_rule="schema_closed", depth=depth + 1)
        for name, old_prop in old_props.items():
            if name in new_props:
                continue
            if new_rest is False:
                self.add(
                    "property_removed",
                    _join(path, "properties", name),
                    f"{name!r} was removed and {new_rest_keyword} is false, so it is now rejected",
                )
            else:
                self.compare(
                    old_prop, new_rest, _join(path, new_rest_keyword), closed_rule="schema_closed", depth=depth + 1
                )
        if new_rest is False and old_rest is not False:
            self.add(
                "additional_properties_closed",
                _join(path, new_rest_keyword),
                f"{new_rest_keyword} is now false; properties not listed were accepted before",
            )
        elif new_rest is not False:
            self.compare(
                old_rest, new_rest, _join(path, new_rest_keyword), closed_rule="schema_closed", depth=depth + 1
            )

    def _array(self, old: dict[str, Any], new: dict[str, Any], path: str, depth: int) -> None:
        old_prefix = old.get("prefixItems") or []
        new_prefix = new.get("prefixItems") or []
        old_rest = old.get("items", True)
        new_rest = new.get("items", True)
        for index in range(max(len(old_prefix), len(new_prefix))):
            before = old_prefix[index] if index < len(old_prefix) else old_rest
            if index < len(new_prefix):
                after, where = new_prefix[index], _join(path, "prefixItems", index)
            else:
                after, where = new_rest, _join(path, "items")
            self.compare(before, after, where, closed_rule="items_closed", depth=depth + 1)
        self.compare(old_rest, new_rest, _join(path, "items"), closed_rule="items_closed", depth=depth + 1)

    def _catch_all(self, old: dict[str, Any], new: dict[str, Any], path: str) -> None:
        for keyword, value in new.items():
            if keyword in COMPARED or keyword in ANNOTATIONS:
                continue
            if keyword == "unevaluatedProperties" and isinstance(value, bool):
                continue  # compared with additionalProperties in _object
            if keyword in old and _canonical(old[keyword]) == _canonical(value):
                continue
            verb = "changed" if keyword in old else "added"
            self.add(
                "keyword_changed",
                _join(path, keyword),
                f"{keyword} {verb}; this check cannot prove the new value accepts all the old one did",
            )
