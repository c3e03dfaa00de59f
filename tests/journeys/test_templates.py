"""Liquid templates: personalization, missing variables detected and the default content used,
bounded rendering, validation. Pure: no database."""

import subprocess
import sys
from typing import Any

import pytest

from journeys.templates import Rendered, render, render_content, validate_template

CONTEXT: dict[str, Any] = {
    "profile": {"first_name": "Ada", "tier": "vip", "address": {"city": "Lyon"}, "tags": ["beta", "early"]},
    "event": {"name": "Cart Abandoned", "properties": {"total": 120.5, "items": [{"sku": "A"}, {"sku": "B"}]}},
    "session": {"form": {"step": 3}},
    "journey": {"key": "cart", "version": 2},
    "links": {"resume_url": "https://example.com/r/abc"},
}


def test_renders_profile_event_session_journey_and_links():
    source = (
        "Hi {{ profile.first_name }} from {{ profile.address.city }}: {{ event.properties.total }} "
        "step {{ session.form.step }} in {{ journey.key }} v{{ journey.version }} {{ links.resume_url }}"
    )
    assert render(source, CONTEXT) == Rendered("Hi Ada from Lyon: 120.5 step 3 in cart v2 https://example.com/r/abc")


def test_filters_loops_and_conditionals():
    source = (
        "{{ profile.first_name | upcase }} {% for item in event.properties.items %}{{ item.sku }}{% endfor %}"
        "{% if profile.tier == 'vip' %} VIP{% endif %} {{ profile.tags | join: '+' }}"
    )
    assert render(source, CONTEXT).text == "ADA AB VIP beta+early"


def test_a_missing_variable_renders_the_default_and_names_what_was_missing():
    rendered = render("Hi {{ profile.last_name }}, your cart is waiting", CONTEXT, "Hi, your cart is waiting")
    assert rendered == Rendered("Hi, your cart is waiting", ["profile.last_name"], used_default=True)


def test_every_missing_variable_is_reported_once():
    source = "{{ profile.last_name }} {{ profile.address.zip | upcase }} {{ coupon }} {{ profile.last_name }}"
    assert render(source, CONTEXT, "x").missing == ["profile.last_name", "profile.address.zip", "coupon"]


def test_the_default_is_a_template_too():
    assert render("{{ profile.nope }}", CONTEXT, "Hi {{ profile.first_name }}").text == "Hi Ada"


def test_without_a_default_the_text_is_returned_with_missing_named():
    rendered = render("Hi {{ profile.last_name }}!", CONTEXT)
    assert (rendered.text, rendered.missing, rendered.used_default, rendered.ok) == (
        "Hi !",
        ["profile.last_name"],
        False,
        False,
    )


def test_a_missing_value_under_a_default_filter_is_not_missing():
    rendered = render("Hi {{ profile.nickname | default: 'there' }}", CONTEXT, "unused")
    assert (rendered.text, rendered.ok) == ("Hi there", True)


def test_if_and_for_on_a_missing_value_are_not_missing():
    source = (
        "{% if profile.nickname %}{{ profile.nickname }}{% else %}friend{% endif %}"
        "{% for x in event.properties.none %}{{ x }}{% endfor %}"
    )
    rendered = render(source, CONTEXT, "unused")
    assert (rendered.text, rendered.ok) == ("friend", True)


def test_a_missing_root_is_missing():
    assert render("{{ order.id }}", CONTEXT, "d").missing == ["order"]


def test_what_the_default_lacks_is_reported_too():
    rendered = render("{{ profile.a }}", CONTEXT, "Hi {{ profile.b }}")
    assert (rendered.text, rendered.missing, rendered.used_default) == ("Hi ", ["profile.a", "profile.b"], True)


def test_a_render_error_uses_the_default_and_says_why():
    rendered = render("{{ event.properties.total | divided_by: 0 }}", CONTEXT, "fallback")
    assert (rendered.text, rendered.used_default, rendered.errors) == (
        "fallback",
        True,
        ["divided_by: can't divide by 0 (line 1, column 29)"],
    )


def test_loops_are_bounded():
    rendered = render("{% for i in (1..20000) %}x{% endfor %}", CONTEXT, "bounded")
    assert (rendered.text, rendered.errors) == ("bounded", ["loop iteration limit reached (line 1, column 4)"])


def test_output_is_bounded():
    source = "{% for i in (1..9000) %}{{ profile.tags | join: '' }}{{ links.resume_url }}{% endfor %}"
    assert render(source, CONTEXT, "bounded").errors == ["output stream limit reached (line 1, column 4)"]


def test_a_template_that_does_not_parse_uses_the_default():
    rendered = render("Hi {{ profile.first_name", CONTEXT, "Hi")
    assert (rendered.text, rendered.errors) == ("Hi", ["expected '}}', found end of file (line 1, column 4)"])


def test_templates_cannot_reach_python_attributes():
    rendered = render("{{ profile.__class__ }}{{ profile.items }}", CONTEXT, "safe")
    assert rendered.text == "safe"


def test_render_content_renders_every_string_and_keeps_other_values():
    content = {
        "subject": "For {{ profile.first_name }}",
        "body": "{{ links.resume_url }}",
        "badge": 3,
        "tags": ["{{ profile.tier }}"],
    }
    assert render_content(content, CONTEXT).content == {
        "subject": "For Ada",
        "body": "https://example.com/r/abc",
        "badge": 3,
        "tags": ["vip"],
    }


def test_render_content_uses_the_whole_default_when_one_field_lacks_a_variable():
    content = {"subject": "For {{ profile.first_name }}", "body": "{{ profile.coupon }} off"}
    default = {"subject": "For you", "body": "A treat inside"}
    rendered = render_content(content, CONTEXT, default)
    assert (rendered.content, rendered.missing, rendered.used_default) == (default, ["profile.coupon"], True)


VALID = [
    "Hi {{ profile.first_name | default: 'there' }}",
    "{% assign n = event.properties.total %}{{ n }}",
    "plain text",
    "",
]


@pytest.mark.parametrize("source", VALID)
def test_valid_templates_have_no_errors(source):
    assert validate_template(source) == []


@pytest.mark.parametrize(
    ("source", "errors"),
    [
        ("{% if %}x{% endif %}", ["missing expression (line 1, column 4)"]),
        ("Hi\n{{ profile.first_name", ["expected '}}', found end of file (line 2, column 1)"]),
        ("{% unknowntag %}", ["unexpected tag 'unknowntag' (line 1, column 4)"]),
        ("{{ profile.first_name | shout }}", ["unknown filter 'shout'"]),
        (
            "{{ customer.name }}",
            ["unknown variable 'customer': templates see event, journey, links, profile, session"],
        ),
        ("x" * 70_000, ["a template is at most 65536 characters"]),
        (42, ["a template is a string"]),
    ],
)
def test_validation_errors(source, errors):
    assert validate_template(source) == errors


def test_validation_accepts_other_context_keys_when_told():
    assert validate_template("{{ order.id }}", known=["order"]) == []


def test_the_module_is_pure_it_imports_no_django():
    code = "import sys, journeys.templates; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
