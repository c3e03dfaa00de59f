"""Liquid templates for personalized content (python-liquid 2). Pure: no Django.

A template sees `profile` (the customer's traits), `event`, `session`, `journey` and `links`
(e.g. `links.resume_url`). Rendering is strict about missing variables in the way that matters
for a message: a variable that is *output* while missing (`{{ profile.first_name }}`, or through
a filter) is recorded, and when any is, the step's default content is rendered instead of a
message with a hole in it. Tests, loops and fallbacks stay quiet on purpose: `{% if profile.nickname
%}`, `{% for item in event.properties.items %}` and `{{ profile.nickname | default: "there" }}` are
how a template says "this may be missing".

Every missing variable is reported, not just the first (`Rendered.missing`, dotted paths), so the
history can say what was missing. Parsed templates are cached by source; rendering is bounded
(loop iterations, output size, nesting) so an admin's template cannot run away.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError
from liquid.undefined import Undefined

CONTEXT_KEYS = ("profile", "event", "session", "journey", "links")
MAX_TEMPLATE_LENGTH = 64 * 1024

_missing: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("liquid_missing", default=None)


class _RecordingUndefined(Undefined):
    """Renders as nothing, and records its name when it is output (directly or through a filter).
    `for` over a missing list is an empty loop, as `if` on a missing value is false."""

    __slots__ = ()

    def _record(self) -> None:
        names = _missing.get()
        if names is not None:
            names.append(_missing_name(self.name, self.hint))

    def __str__(self) -> str:
        self._record()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._record()
        return iter([])


def _missing_name(name: str, hint: str | None) -> str:
    suffix = " is undefined"
    if hint and hint.endswith(suffix):
        return hint[: -len(suffix)].strip("'\"")
    return name


class _Environment(Environment):
    loop_iteration_limit = 10_000
    output_stream_limit = 256 * 1024
    local_namespace_limit = 64 * 1024
    context_depth_limit = 30


_ENV = _Environment(undefined=_RecordingUndefined, strict_filters=True)


@dataclass(frozen=True, slots=True)
class Rendered:
    """`text` is what to send. `missing` names the variables the template lacked (and the default's,
    if it lacked some too); `used_default` says the default content was rendered instead; `errors`
    holds what stopped rendering (a bad filter argument, a limit)."""

    text: str
    missing: list[str] = field(default_factory=list)
    used_default: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors


class TemplateError(ValueError):
    """A template that does not parse."""


@lru_cache(maxsize=2048)
def _parse(source: str) -> BoundTemplate:
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"a template is at most {MAX_TEMPLATE_LENGTH} characters")
    try:
        return _ENV.from_string(source)
    except LiquidError as exc:
        raise TemplateError(_describe(exc)) from exc


def _describe(exc: LiquidError) -> str:
    """The error's first line and where it is (line:column), without the source excerpt."""
    text = str(exc)
    lines = text.splitlines()
    message = lines[0] if lines else type(exc).__name__
    where = next((line.strip() for line in lines[1:] if line.strip().startswith("->")), "")
    line, _, column = where.rsplit(" ", 1)[-1].partition(":")
    if line.isdigit() and column.isdigit():
        return f"{message} (line {line}, column {int(column) + 1})"
    return message


def _render_once(source: str, context: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    names: list[str] = []
    token = _missing.set(names)
    try:
        text = _parse(source).render(**{str(k): v for k, v in context.items()})
    except TemplateError as exc:
        return "", [], [str(exc)]
    except LiquidError as exc:
        return "", list(dict.fromkeys(names)), [_describe(exc)]
    finally:
        _missing.reset(token)
    return text, list(dict.fromkeys(names)), []


def render(template: str, context: Mapping[str, Any], default: str | None = None) -> Rendered:
    """Render `template`; if it lacks a variable or fails, render `default` instead (when given)."""
    text, missing, errors = _render_once(template, context)
    if (not missing and not errors) or default is None:
        return Rendered(text, missing, False, errors)
    default_text, default_missing, default_errors = _render_once(default, context)
    return Rendered(default_text, list(dict.fromkeys(missing + default_missing)), True, errors + default_errors)


@dataclass(frozen=True, slots=True)
class RenderedContent:
    """A rendered content object (e.g. {"subject": ..., "body": ...}), rendered as a whole: if any
    field lacks a variable, the whole default content is used so a message never mixes the two."""

    content: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    used_default: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors


def _render_tree(value: Any, context: Mapping[str, Any], missing: list[str], errors: list[str]) -> Any:
    if isinstance(value, str):
        if "{" not in value:
            return value
        text, lacked, failed = _render_once(value, context)
        missing.extend(lacked)
        errors.extend(failed)
        return text
    if isinstance(value, Mapping):
        return {k: _render_tree(v, context, missing, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, context, missing, errors) for v in value]
    return value


def render_content(
    content: Mapping[str, Any], context: Mapping[str, Any], default: Mapping[str, Any] | None = None
) -> RenderedContent:
    """Render every string inside `content`; on anything missing, render `default` instead."""
    missing: list[str] = []
    errors: list[str] = []
    rendered = _render_tree(content, context, missing, errors)
    if (not missing and not errors) or default is None:
        return RenderedContent(rendered, list(dict.fromkeys(missing)), False, errors)
    default_missing: list[str] = []
    default_errors: list[str] = []
    fallback = _render_tree(default, context, default_missing, default_errors)
    return RenderedContent(fallback, list(dict.fromkeys(missing + default_missing)), True, errors + default_errors)


def validate_template(source: str, known: Iterable[str] = CONTEXT_KEYS) -> list[str]:
    """What is wrong with a template: syntax errors, unknown filters, variables outside the context."""
    if not isinstance(source, str):
        return ["a template is a string"]
    try:
        template = _parse(source)
    except TemplateError as exc:
        return [str(exc)]
    errors: list[str] = []
    for name in sorted(set(template.filter_names()) - set(_ENV.filters)):
        errors.append(f"unknown filter {name!r}")
    allowed = set(known)
    for name in sorted(set(template.global_variables()) - allowed):
        errors.append(f"unknown variable {name!r}: templates see {', '.join(sorted(allowed))}")
    return errors
