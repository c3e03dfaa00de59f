"""The journey definition: its JSON Schema (schema.json) and its validation."""

from journeys.definition.validate import DefinitionError, pointer, schema, validate_definition

__all__ = ["DefinitionError", "pointer", "schema", "validate_definition"]
