"""The traffic the benchmarks send, for the Python side (bench/load.lua is the same for wrk)."""

import random
from typing import Any

import orjson

PATHS = ["/", "/pricing", "/products/shoes", "/cart", "/checkout", "/blog/launch"]
EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Search"]
PLANS = ["free", "pro", "team"]

# A schema for every message the traffic sends, for the runs with schemas active: the
# properties of each track event and of pages, and identify traits, as a tracking plan would
# have them (typed, bounded, an enum, required keys).
_PRODUCT = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "pattern": "^SKU-[0-9]+$", "maxLength": 32},
        "price": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "GBP", "USD"]},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
    },
    "required": ["sku", "price", "currency"],
}
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    **{("track", name): _PRODUCT for name in EVENTS},
    ("page", ""): {
        "type": "object",
        "properties": {"path": {"type": "string", "maxLength": 2048}},
        "required": ["path"],
    },
    ("identify", ""): {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "plan": {"type": "string", "enum": PLANS},
            "name": {"type": "string", "maxLength": 200},
        },
    },
}


def publish_schemas(policy: str) -> int:
    """Publish SCHEMAS (version 1-0-0, active) and set every source's schema policy; returns how
    many schemas. Needs Django set up (it uses the registry's services, as the API does)."""
    from profiles.models import Source
    from profiles.schemas import services

    for (event_type, event_name), document in SCHEMAS.items():
        schema = services.event_schema_create(event_type=event_type, event_name=event_name)
        version = services.event_schema_version_create(schema=schema, version="1-0-0", document=document)
        services.event_schema_version_publish(version=version)
    for source_id in Source.objects.values_list("id", flat=True):
        services.source_schema_policy_set(source_id=source_id, policy=policy)
    return len(SCHEMAS)


class Messages:
    """The same mix as bench/load.lua: anonymous browsing, signed-in activity, identify calls."""

    def __init__(self, run: str, people: int, seed: int = 7):
        self.run = run
        self.people = people
        self.seq = 0
        self.rng = random.Random(seed)

    def context(self, p: int) -> dict[str, Any]:
        path = PATHS[p % len(PATHS)]
        return {
            "ip": f"10.{p % 250}.{p * 7 % 250}.{p * 13 % 250}",
            "locale": "en-GB",
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "page": {"path": path, "referrer": "https://www.google.com/", "url": f"https://shop.example.com{path}"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
        }

    def message(self, with_type: bool) -> dict[str, Any]:
        self.seq += 1
        p = self.rng.randint(1, self.people)
        r = self.rng.randint(1, 100)
        base: dict[str, Any] = {
            "messageId": f"{self.run}-{self.seq}",
            "originalTimestamp": "2026-11-23T10:00:00.500Z",
        }
        if with_type and r <= 10:
            return {
                "type": "identify",
                **base,
                "anonymousId": f"anon-{p}",
                "userId": f"user-{p}",
                "traits": {"email": f"person{p}@example.com", "plan": PLANS[p % 3], "name": f"Person {p}"},
                "context": self.context(p),
            }
        if r <= 60:
            who = {"anonymousId": f"anon-{p}"}
        elif r <= 90:
            who = {"userId": f"user-{p}"}
        else:
            who = {"anonymousId": f"anon-{p}", "userId": f"user-{p}"}
        if with_type and r % 5 == 0:
            path = PATHS[p % len(PATHS)]
            return {
                "type": "page",
                **base,
                **who,
                "name": path,
                "properties": {"path": path},
                "context": self.context(p),
            }
        body = {
            **base,
            **who,
            "event": EVENTS[self.seq % len(EVENTS)],
            "properties": {"sku": f"SKU-{p % 5000}", "price": p % 300 + 0.99, "currency": "EUR", "quantity": r % 3 + 1},
            "context": self.context(p),
        }
        return {"type": "track", **body} if with_type else body

    def decide(self) -> dict[str, Any]:
        """A /v1/decide request for one of the population (bench/decide.py made every tenth a VIP)."""
        p = self.rng.randint(1, self.people)
        return {
            "userId": f"user-{p}",
            "channel": "web",
            "placement": "support_entry",
            "context": {"page": PATHS[p % len(PATHS)], "locale": "en-GB"},
        }

    def body(self, kind: str, batch: int) -> bytes:
        if kind == "decide":
            return orjson.dumps(self.decide())
        if kind == "batch":
            return orjson.dumps({"batch": [self.message(True) for _ in range(batch)], "sentAt": "2026-11-23T10:00:02Z"})
        return orjson.dumps({**self.message(False), "sentAt": "2026-11-23T10:00:02Z"})
