"""Reading list and mapping settings from the environment in the format .env.example and the
docs show (`web=1800,pos=900`, `sms,webhook`), refusing a bad value at start-up with a message
that names the variable.

django-environ's own `dict` wants `;` between pairs and its `list` keeps the spaces around items,
so `SESSIONS_INACTIVITY_SECONDS=web=1800,pos=900` crashed start-up with a bare ValueError and
`sms, webhook` named a channel " webhook" that matched nothing. Pure: no Django beyond the
exception it raises.
"""

import ipaddress
import os
import re

from django.core.exceptions import ImproperlyConfigured

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None or not value.strip() else value


def _refuse(name: str, raw: str, problem: str, example: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={raw!r}: {problem} (expected e.g. {name}={example})")


def env_items(name: str, *, default: list[str]) -> list[str]:
    """A comma-separated list; spaces around items are dropped, and so are empty items."""
    raw = _raw(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_names(name: str, *, default: list[str], example: str) -> list[str]:
    """A comma-separated list of names (purposes, channels, queues): lower-case letters, digits
    and underscores, starting with a letter, as the code compares them."""
    items = env_items(name, default=default)
    for item in items:
        if not _NAME.match(item):
            raise _refuse(name, os.environ[name], f"{item!r} is not a name (a-z, 0-9, _)", example)
    return items


def env_networks(name: str, *, example: str) -> list[str]:
    """A comma-separated list of IP addresses or CIDR networks."""
    items = env_items(name, default=[])
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _refuse(name, os.environ[name], f"{item!r} is not an IP address or network", example) from None
    return items


def env_mapping(name: str, *, default: dict[str, int], example: str) -> dict[str, int]:
    """`key=value,key=value` over `default`: the keys given replace the default's, the others stay.
    Every value must be a positive integer."""
    raw = _raw(name)
    if raw is None:
        return dict(default)
    given: dict[str, int] = {}
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or not _NAME.match(key):
            raise _refuse(name, raw, f"{pair.strip()!r} is not name=value", example)
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number <= 0:
            raise _refuse(name, raw, f"{key}={text!r} is not a positive whole number", example)
        given[key] = number
    return {**default, **given}
