"""schema.json describes the same language the compiler accepts: what compiles validates against
the schema, and what the schema refuses the compiler refuses too."""

import jsonschema
import pytest

from journeys.conditions import condition_schema, validate_condition
from tests.journeys.test_conditions import INVALID, LEAF_CASES, VIP

VALIDATOR = jsonschema.Draft202012Validator(condition_schema())

VALID = [spec for spec, _ in LEAF_CASES] + [
    {"all": [VIP, {"any": [{"segment": "vip"}, {"not": {"consent": {"purpose": "marketing", "channel": "sms"}}}]}]},
    {
        "performed": {
            "event": "Order Completed",
            "where": {"any": [{"field": "event.properties.total", "op": "gte", "value": 100}]},
            "times": {"gte": 2},
            "within": {"days": 30},
        }
    },
    {"field": "now.weekday", "op": "in", "value": [5, 6]},
]


def test_the_schema_is_valid_2020_12():
    jsonschema.Draft202012Validator.check_schema(condition_schema())


@pytest.mark.parametrize("spec", VALID)
def test_what_compiles_is_valid_against_the_schema(spec):
    assert validate_condition(spec) == []
    assert list(VALIDATOR.iter_errors(spec)) == []


# What only the compiler can judge (regex syntax, real calendar dates, duration bounds) is left out.
SCHEMA_REFUSES = [
    spec
    for spec, _, _ in INVALID
    if not (
        isinstance(spec, dict) and (spec.get("value") in ("(", "2024-13-45") or spec.get("value") == {"days": 10**7})
    )
]


@pytest.mark.parametrize("spec", SCHEMA_REFUSES, ids=[str(i) for i in range(len(SCHEMA_REFUSES))])
def test_what_the_compiler_refuses_the_schema_refuses(spec):
    assert validate_condition(spec) != []
    assert not VALIDATOR.is_valid(spec)
