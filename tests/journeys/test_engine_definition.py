"""validate_definition: schema errors and semantic errors, each pointing at the bad part."""

import copy
from typing import Any

from journeys import demo
from journeys.definition import validate_definition


def _paths(defn: dict[str, Any]) -> list[str]:
    return [error.path for error in validate_definition(defn)]


def _cart() -> dict[str, Any]:
    return copy.deepcopy(demo.ABANDONED_CART)


def test_the_demo_journeys_are_valid() -> None:
    assert [validate_definition(d) for _, _, d in demo.JOURNEYS.values()] == [[], [], []]


def test_an_unknown_next_points_at_the_field() -> None:
    defn = _cart()
    defn["steps"]["remind"]["next"] = "nowhere"
    errors = validate_definition(defn)
    assert errors[0].path == "/steps/remind/next"
    assert "nowhere" in errors[0].message


def test_an_unreachable_step_is_reported() -> None:
    defn = _cart()
    defn["steps"]["orphan"] = {"type": "exit"}
    assert _paths(defn) == ["/steps/orphan"]


def test_a_schema_error_points_inside_the_step() -> None:
    defn = _cart()
    defn["steps"]["remind"]["channels"] = ["fax"]
    assert _paths(defn) == ["/steps/remind/channels/0"]


def test_a_missing_required_field_names_the_step() -> None:
    defn = _cart()
    del defn["steps"]["wait_for_order"]["timeout"]
    errors = validate_definition(defn)
    assert errors[0].path == "/steps/wait_for_order"
    assert "timeout" in errors[0].message


def test_random_split_percents_must_add_up_to_100() -> None:
    defn = {
        "trigger": {"type": "api"},
        "start": "split",
        "steps": {
            "split": {
                "type": "random_split",
                "paths": [{"percent": 50, "next": "a"}, {"percent": 30, "next": "a"}],
                "holdout": 10,
            },
            "a": {"type": "exit"},
        },
    }
    errors = validate_definition(defn)
    assert [e.path for e in errors] == ["/steps/split/paths"]
    assert "90" in errors[0].message


def test_a_bad_condition_points_inside_the_condition() -> None:
    defn = copy.deepcopy(demo.VIP_ROUTING)
    defn["steps"]["is_vip"]["branches"][0]["condition"] = {"field": "traits.vip", "op": "bogus", "value": 1}
    paths = _paths(defn)
    assert paths and all(p.startswith("/steps/is_vip/branches/0/condition") for p in paths)


def test_a_bad_template_points_at_the_content_field() -> None:
    defn = _cart()
    defn["steps"]["remind"]["content"]["sms"]["body"] = "Hi {{ profile.first_name "
    assert _paths(defn) == ["/steps/remind/content/sms/body"]


def test_a_loop_without_a_wait_is_refused() -> None:
    defn = {
        "trigger": {"type": "api"},
        "start": "a",
        "steps": {
            "a": {"type": "set_traits", "traits": {"x": 1}, "next": "b"},
            "b": {"type": "emit_event", "event": "E", "next": "a"},
        },
    }
    assert any("without a wait" in e.message for e in validate_definition(defn))


def test_a_decide_journey_needs_a_default_decision() -> None:
    defn = copy.deepcopy(demo.VIP_ROUTING)
    del defn["default_decision"]
    assert _paths(defn) == ["/default_decision"]


def test_a_message_needs_content_for_each_channel() -> None:
    defn = _cart()
    del defn["steps"]["remind"]["content"]["email"]
    del defn["steps"]["remind"]["default_content"]["email"]
    assert _paths(defn) == ["/steps/remind/content"]
