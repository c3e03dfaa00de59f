"""Is a JSON Schema document one the registry can publish? Pure logic: no Django."""

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

DRAFT_2020_12 = frozenset(
    {"https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2020-12/schema#"}
)


def document_problem(document: Any) -> str | None:
    """What is wrong with `document` as a Draft 2020-12 schema the registry validates with, or
    None. References must stay inside the document: validation never reaches the network."""
    if not isinstance(document, dict | bool):
        return "the document must be a JSON Schema: an object or a boolean"
    if isinstance(document, dict) and "$schema" in document and document["$schema"] not in DRAFT_2020_12:
        return f"$schema must be {sorted(DRAFT_2020_12)[0]} (Draft 2020-12) or left out"
    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as error:
        where = "".join(f"/{part}" for part in error.absolute_path) or "/"
        return f"not a valid Draft 2020-12 schema at {where}: {error.message}"
    remote = _remote_reference(document, "")
    if remote is not None:
        return f"only references inside the document (#/...) are allowed; {remote}"
    return None


def _remote_reference(node: Any, path: str) -> str | None:
    if isinstance(node, dict):
        for keyword in ("$ref", "$dynamicRef"):
            target = node.get(keyword)
            if isinstance(target, str) and not target.startswith("#"):
                return f"{path}/{keyword} is {target!r}"
        for key, value in node.items():
            found = _remote_reference(value, f"{path}/{key}")
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _remote_reference(value, f"{path}/{index}")
            if found is not None:
                return found
    return None
