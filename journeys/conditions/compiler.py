"""The condition language compiled to closures. Pure: no Django.

A condition (JSON, see schema.json) is checked and compiled once -- into nested closures with
every path split, every regex compiled and every constant's type settled -- so evaluating it is a
few attribute reads and comparisons. Nothing is ever `eval`ed; regexes are RE2 (linear time, memory
bounded, pattern length bounded, subject truncated).

Missing fields compare false: every operator except `exists` is false when the field is absent,
so `{"not": {"field": "traits.plan", "op": "equals", "value": "pro"}}` is how a rule includes
customers without a plan.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import re2

from journeys.conditions.context import EvalContext, _as_datetime

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()

MAX_DEPTH = 32
MAX_NODES = 2000
MAX_IN_VALUES = 10_000
MAX_REGEX_LENGTH = 256
MAX_SUBJECT_BYTES = 4096
REGEX_MAX_MEM = 1 << 20
MAX_DURATION = timedelta(days=36500)

OPERATORS = frozenset(
    {"equals", "not_equals", "in", "contains", "exists", "gt", "gte", "lt", "lte", "regex", "within_last"}
)
COMPOUNDS = ("all", "any", "not")
KINDS = ("all", "any", "not", "field", "segment", "performed", "consent")
EVENT_KEYS = frozenset({"name", "type", "channel", "timestamp", "properties", "context"})
NOW_KEYS = frozenset({"hour", "minute", "weekday", "date", "time"})
DURATION_UNITS = {"days": 86400, "hours": 3600, "minutes": 60}
TIMES_OPS = ("gte", "lte", "eq")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class ConditionError(Exception):
    """A condition that cannot compile; `path` is a JSON pointer inside the condition."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConditionError) and (self.path, self.message) == (other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.message))


Fn = Callable[[Any], bool]
Explain = Callable[[Any], dict[str, Any]]


class _EventOnly:
    """The context `performed.where` sees: one past event and nothing else."""

    __slots__ = ("event",)
    traits: Mapping[str, Any] = {}
    computed: Mapping[str, Any] = {}
    session = None
    consent: Mapping[str, Any] = {}
    segments: frozenset[str] = frozenset()
    customer_id = None
    timezone = None
    fallback_timezone = "UTC"
    now = datetime(1970, 1, 1, tzinfo=UTC)

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event


class Condition:
    """A compiled condition. `needs` names the context roots it reads, so callers load only those."""

    __slots__ = ("_explain", "_fn", "needs", "spec")

    def __init__(self, spec: Any, fn: Fn, explain: Explain, needs: frozenset[str]) -> None:
        self.spec = spec
        self.needs = needs
        self._fn = fn
        self._explain = explain

    def evaluate(self, ctx: EvalContext) -> bool:
        return self._fn(ctx)

    def explain(self, ctx: EvalContext) -> dict[str, Any]:
        """The tree with what each leaf saw and each node's result, JSON-ready. Every branch is
        evaluated (no short circuit) so the explanation is complete."""
        return self._explain(ctx)

    def matches_event(self, event: Mapping[str, Any]) -> bool:
        """Evaluate against one event alone (how histories apply `performed.where`)."""
        return self._fn(_EventOnly(event))

    def __repr__(self) -> str:
        return f"Condition({self.spec!r})"


def compile_condition(spec: Any) -> Condition:
    """Compile a condition, raising the first ConditionError it finds."""
    compiler = _Compiler()
    node = compiler.node(spec, "", 0)
    if compiler.errors or node is None:
        raise compiler.errors[0]
    fn, explain, needs = node
    return Condition(spec, fn, explain, needs)


def validate_condition(spec: Any) -> list[ConditionError]:
    """Every error in a condition (empty when it compiles), each with its JSON pointer."""
    compiler = _Compiler()
    compiler.node(spec, "", 0)
    return compiler.errors


# --- helpers -------------------------------------------------------------------------------------


def _ptr(path: str, token: str | int) -> str:
    return f"{path}/{str(token).replace('~', '~0').replace('/', '~1')}"


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


@lru_cache(maxsize=1024)
def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


_last_local: list[tuple[datetime, str | None, str, tuple[datetime, str]]] = []


def local_now(ctx: Any) -> tuple[datetime, str]:
    """`ctx.now` in the customer's zone, else the fallback zone, else UTC; and the zone used.

    A rule often reads now.* more than once for one context (`hour >= 9 and hour < 17`): the
    last answer is kept as one tuple, read and replaced whole, so threads never mix two."""
    if _last_local:
        now, timezone, fallback, result = _last_local[0]
        if now is ctx.now and timezone == ctx.timezone and fallback == ctx.fallback_timezone:
            return result
    result = _local_now(ctx)
    _last_local[:] = [(ctx.now, ctx.timezone, ctx.fallback_timezone, result)]
    return result


def _local_now(ctx: Any) -> tuple[datetime, str]:
    zone = _zone(ctx.timezone)
    name = ctx.timezone
    if zone is None:
        zone = _zone(ctx.fallback_timezone)
        name = ctx.fallback_timezone
    if zone is None:
        return ctx.now.astimezone(UTC), "UTC"
    now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=UTC)
    return now.astimezone(zone), str(name)


def _re2_finder(pattern: str) -> Callable[[bytes], bool]:
    """Whether the RE2 `pattern` matches anywhere in a UTF-8 subject.

    The module's public `search` decodes match offsets back to str positions and builds a match
    object through a generator: about 6 us for an email-sized subject. A condition needs only
    "matched or not", so this asks the compiled RE2 object directly (0.7 us); google-re2 is pinned,
    and the test suite checks this agrees with `search`. Without captures RE2 can use its faster
    DFA for the whole match.
    """
    options = re2.Options()
    options.max_mem = REGEX_MAX_MEM
    options.log_errors = False
    options.never_capture = True
    compiled = re2.compile(pattern.encode(), options)
    regexp = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(regexp, "Anchor", None), "UNANCHORED", None)
    if regexp is None or anchor is None:
        return lambda subject: compiled.search(subject) is not None
    match = regexp.Match
    no_match = (-1, -1)
    return lambda subject: match(anchor, subject, 0, len(subject))[0] != no_match


def _walk(obj: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if type(obj) is dict or isinstance(obj, Mapping):
            obj = obj.get(key, MISSING)
            if obj is MISSING:
                return MISSING
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        else:
            return MISSING
    return obj


def _jsonable(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 -- one return per case of the spec
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 256 else value[:256] + "..."
    if isinstance(value, datetime):
        return value.isoformat()
    if depth > 4:
        return "..."
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in list(value)[:50]]
    return str(value)


def _same(expected: Any) -> Callable[[Any], bool]:
    """Type-aware equality with `expected`: 1 equals 1.0, but true never equals 1."""
    if isinstance(expected, bool):
        return (lambda v: v is True) if expected else (lambda v: v is False)
    if expected is None:
        return lambda v: v is None
    if _is_number(expected):
        return lambda v: type(v) in (int, float) and v == expected
    if isinstance(expected, str):
        return lambda v: v == expected
    return lambda v: _deep_equal(v, expected)


def _deep_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _member_of(values: list[Any]) -> Callable[[Any], bool]:
    """Type-aware membership of a scalar in `values` (hash lookups per type)."""
    strings = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(v for v in values if _is_number(v))
    bools = frozenset(v for v in values if isinstance(v, bool))
    has_null = any(v is None for v in values)

    def member(v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return v in strings
        if kind is bool:
            return v in bools
        if kind is int or kind is float:
            return v in numbers
        if v is None:
            return has_null
        if isinstance(v, str):
            return v in strings
        return False

    return member


# --- the compiler --------------------------------------------------------------------------------


_Node = tuple[Fn, Explain, frozenset[str]]


class _Compiler:
    def __init__(self) -> None:
        self.errors: list[ConditionError] = []
        self.nodes = 0

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConditionError(path, message))

    def node(self, spec: Any, path: str, depth: int, event_only: bool = False) -> _Node | None:  # noqa: PLR0911 -- one return per case of the spec
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.error(path, f"a condition may hold at most {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            self.error(path, f"conditions nest at most {MAX_DEPTH} deep")
            return None
        if not isinstance(spec, dict):
            self.error(path, "a condition is an object")
            return None
        kinds = [k for k in KINDS if k in spec]
        if len(kinds) != 1:
            self.error(path, "a condition has exactly one of: " + ", ".join(KINDS))
            return None
        kind = kinds[0]
        if kind in COMPOUNDS:
            return self.compound(kind, spec, path, depth, event_only)
        if kind == "field":
            return self.leaf(spec, path, event_only)
        if event_only:
            self.error(_ptr(path, kind), "inside `performed.where` only event.* fields may be used")
            return None
        if kind == "segment":
            return self.segment(spec, path)
        if kind == "consent":
            return self.consent(spec, path)
        return self.performed(spec, path, depth)

    def extra_keys(self, spec: dict[str, Any], allowed: set[str], path: str) -> None:
        for key in spec:
            if key not in allowed:
                self.error(_ptr(path, key), f"unknown key {key!r}")

    # all / any / not

    def compound(self, kind: str, spec: dict[str, Any], path: str, depth: int, event_only: bool) -> _Node | None:
        self.extra_keys(spec, {kind}, path)
        body = spec[kind]
        here = _ptr(path, kind)
        if kind == "not":
            child = self.node(body, here, depth + 1, event_only)
            if child is None:
                return None
            inner, inner_explain, needs = child

            def explain_not(ctx: Any) -> dict[str, Any]:
                seen = inner_explain(ctx)
                return {"not": seen, "result": not seen["result"]}

            return (lambda ctx: not inner(ctx)), explain_not, needs
        if not isinstance(body, list) or not body:
            self.error(here, f"`{kind}` takes a non-empty list of conditions")
            return None
        children = [self.node(item, _ptr(here, i), depth + 1, event_only) for i, item in enumerate(body)]
        if any(child is None for child in children):
            return None
        fns = tuple(c[0] for c in children if c is not None)
        explains = tuple(c[1] for c in children if c is not None)
        needs = frozenset().union(*(c[2] for c in children if c is not None))
        fn = _all(fns) if kind == "all" else _any(fns)
        combine = all if kind == "all" else any

        def explain_compound(ctx: Any) -> dict[str, Any]:
            seen = [e(ctx) for e in explains]
            return {kind: seen, "result": combine(s["result"] for s in seen)}

        return fn, explain_compound, needs

    # {"field": ..., "op": ..., "value": ...}

    def leaf(self, spec: dict[str, Any], path: str, event_only: bool) -> _Node | None:
        self.extra_keys(spec, {"field", "op", "value"}, path)
        field = spec["field"]
        getter_needs = self.field(field, _ptr(path, "field"), event_only)
        op = spec.get("op")
        if op not in OPERATORS:
            self.error(_ptr(path, "op"), "op is one of: " + ", ".join(sorted(OPERATORS)))
            return None
        if "value" not in spec and op != "exists":
            self.error(path, f"`{op}` needs a value")
            return None
        value = spec.get("value", True)
        predicate_needs = self.predicate(op, value, _ptr(path, "value"))
        if getter_needs is None or predicate_needs is None:
            return None
        get, root, needs = getter_needs
        predicate, extra_needs = predicate_needs
        needs = needs | extra_needs
        is_now = root == "now"

        if op == "exists":
            want = bool(value)

            def fn(ctx: Any) -> bool:
                v = get(ctx)
                return (v is not MISSING and v is not None) is want

        else:

            def fn(ctx: Any) -> bool:
                v = get(ctx)
                return v is not MISSING and predicate(v, ctx)

        def explain_leaf(ctx: Any) -> dict[str, Any]:
            seen = get(ctx)
            out: dict[str, Any] = {"field": field, "op": op, "value": _jsonable(value)}
            if seen is MISSING:
                out["missing"] = True
            else:
                out["saw"] = _jsonable(seen)
            if is_now:
                out["timezone"] = local_now(ctx)[1]
            out["result"] = fn(ctx)
            return out

        return fn, explain_leaf, needs

    def field(  # noqa: PLR0911 -- one return per case of the spec
        self, field: Any, path: str, event_only: bool
    ) -> tuple[Callable[[Any], Any], str, frozenset[str]] | None:
        if not isinstance(field, str) or not field:
            self.error(path, "field is a dotted path such as traits.plan or event.properties.total")
            return None
        root, *keys = field.split(".")
        if any(not k for k in keys):
            self.error(path, f"{field!r} has an empty path segment")
            return None
        if event_only and root != "event":
            self.error(path, "inside `performed.where` only event.* fields may be used")
            return None
        rest = tuple(keys)
        if root == "event":
            if not keys or keys[0] not in EVENT_KEYS:
                self.error(path, "event fields: " + ", ".join(f"event.{k}" for k in sorted(EVENT_KEYS)))
                return None
            if keys[0] in {"properties", "context"} and len(keys) < 2:
                self.error(path, f"name a key inside event.{keys[0]}, e.g. event.{keys[0]}.total")
                return None
            if keys[0] not in {"properties", "context"} and len(keys) > 1:
                self.error(path, f"event.{keys[0]} has no fields inside it")
                return None
            return _optional_root_getter("event", rest), root, frozenset({"event"})
        if root in {"traits", "computed", "session"}:
            if not keys:
                self.error(path, f"name a key inside {root}, e.g. {root}.plan")
                return None
            if root == "session":
                return _optional_root_getter("session", rest), root, frozenset({"session"})
            return _root_getter(root, rest), root, frozenset({root})
        if root == "consent":
            if len(keys) != 2:
                self.error(path, "consent fields are consent.<purpose>.<channel>")
                return None
            purpose, channel = keys

            def get_consent(ctx: Any) -> Any:
                return ctx.consent.get(purpose, {}).get(channel, MISSING)

            return get_consent, root, frozenset({"consent"})
        if root == "now":
            if len(keys) != 1 or keys[0] not in NOW_KEYS:
                self.error(path, "now fields: " + ", ".join(f"now.{k}" for k in sorted(NOW_KEYS)))
                return None
            return _now_getter(keys[0]), root, frozenset({"now"})
        if root == "customer":
            if keys != ["id"]:
                self.error(path, "the customer field is customer.id")
                return None
            return (lambda ctx: MISSING if ctx.customer_id is None else ctx.customer_id), root, frozenset()
        self.error(path, "a field starts with one of: event, traits, computed, session, consent, now, customer")
        return None

    def predicate(self, op: str, value: Any, path: str) -> tuple[Callable[[Any, Any], bool], frozenset[str]] | None:  # noqa: PLR0911 -- one return per case of the spec
        none: frozenset[str] = frozenset()
        if op in {"equals", "not_equals"}:
            same = _same(value)
            if op == "equals":
                return (lambda v, ctx: same(v)), none
            return (lambda v, ctx: not same(v)), none
        if op == "in":
            if not isinstance(value, list):
                self.error(path, "`in` takes a list of values")
                return None
            if len(value) > MAX_IN_VALUES:
                self.error(path, f"`in` takes at most {MAX_IN_VALUES} values")
                return None
            for i, item in enumerate(value):
                if not (item is None or isinstance(item, str | bool | int | float)):
                    self.error(_ptr(path, i), "`in` values are strings, numbers, booleans or null")
                    return None
            member = _member_of(value)

            def is_in(v: Any, ctx: Any) -> bool:
                if isinstance(v, list):
                    return any(member(x) for x in v)
                return member(v)

            return is_in, none
        if op == "contains":
            if not (value is None or isinstance(value, str | bool | int | float)):
                self.error(path, "`contains` takes a string, number, boolean or null")
                return None
            same = _same(value)
            if isinstance(value, str):

                def contains_str(v: Any, ctx: Any) -> bool:
                    if isinstance(v, str):
                        return value in v
                    return isinstance(v, list) and any(same(x) for x in v)

                return contains_str, none
            return (lambda v, ctx: isinstance(v, list) and any(same(x) for x in v)), none
        if op == "exists":
            if not isinstance(value, bool):
                self.error(path, "`exists` takes true (the default) or false")
                return None
            return (lambda v, ctx: True), none
        if op in {"gt", "gte", "lt", "lte"}:
            return self.comparison(op, value, path)
        if op == "regex":
            return self.regex(value, path)
        # within_last
        delta = self.duration(value, path)
        if delta is None:
            return None

        def within(v: Any, ctx: Any) -> bool:
            at = _as_datetime(v)
            if at is None:
                return False
            now = ctx.now
            return now - delta <= at <= now

        return within, frozenset({"now"})

    def comparison(self, op: str, value: Any, path: str) -> tuple[Callable[[Any, Any], bool], frozenset[str]] | None:
        compare: Callable[[Any, Any], bool] = {
            "gt": operator.gt,
            "gte": operator.ge,
            "lt": operator.lt,
            "lte": operator.le,
        }[op]
        none: frozenset[str] = frozenset()
        if _is_number(value):
            return (lambda v, ctx: type(v) in (int, float) and compare(v, value)), none
        if isinstance(value, str):
            if _ISO_DATE.match(value):
                bound = _as_datetime(value)
                if bound is None:
                    self.error(path, f"{value!r} looks like a date but is not ISO 8601")
                    return None

                def temporal(v: Any, ctx: Any) -> bool:
                    at = _as_datetime(v)
                    return at is not None and compare(at, bound)

                return temporal, none
            return (lambda v, ctx: isinstance(v, str) and compare(v, value)), none
        self.error(path, f"`{op}` compares with a number, an ISO date/time or a string")
        return None

    def regex(self, value: Any, path: str) -> tuple[Callable[[Any, Any], bool], frozenset[str]] | None:
        if not isinstance(value, str) or not value:
            self.error(path, "`regex` takes a non-empty pattern string")
            return None
        if len(value) > MAX_REGEX_LENGTH:
            self.error(path, f"a pattern is at most {MAX_REGEX_LENGTH} characters")
            return None
        try:
            found = _re2_finder(value)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            self.error(path, f"not a valid RE2 pattern: {reason}")
            return None

        def matches(v: Any, ctx: Any) -> bool:
            if not isinstance(v, str):
                if type(v) not in (int, float):
                    return False
                v = str(v)
            encoded = v.encode("utf-8", "surrogatepass")
            if len(encoded) > MAX_SUBJECT_BYTES:
                # Cut at a character boundary so the subject stays valid UTF-8.
                encoded = encoded[:MAX_SUBJECT_BYTES].decode("utf-8", "ignore").encode()
            return found(encoded)

        return matches, frozenset()

    def duration(self, value: Any, path: str) -> timedelta | None:
        if not isinstance(value, dict) or not value:
            self.error(path, "a duration is an object such as {'days': 7} (days, hours, minutes)")
            return None
        seconds = 0.0
        for unit, amount in value.items():
            if unit not in DURATION_UNITS:
                self.error(_ptr(path, unit), "a duration's units are days, hours and minutes")
                return None
            if not _is_number(amount) or amount <= 0:
                self.error(_ptr(path, unit), "a duration amount is a positive number")
                return None
            seconds += amount * DURATION_UNITS[unit]
        delta = timedelta(seconds=seconds)
        if delta > MAX_DURATION:
            self.error(path, "a duration is at most 100 years")
            return None
        return delta

    # {"segment": "vip"}

    def segment(self, spec: dict[str, Any], path: str) -> _Node | None:
        self.extra_keys(spec, {"segment"}, path)
        key = spec["segment"]
        if not isinstance(key, str) or not key:
            self.error(_ptr(path, "segment"), "a segment is named by its key")
            return None

        def fn(ctx: Any) -> bool:
            return key in ctx.segments

        def explain(ctx: Any) -> dict[str, Any]:
            return {"segment": key, "result": fn(ctx)}

        return fn, explain, frozenset({"segments"})

    # {"consent": {"purpose": "marketing", "channel": "sms"}}

    def consent(self, spec: dict[str, Any], path: str) -> _Node | None:
        self.extra_keys(spec, {"consent"}, path)
        body = spec["consent"]
        here = _ptr(path, "consent")
        if not isinstance(body, dict):
            self.error(here, "consent is an object with a purpose and a channel")
            return None
        self.extra_keys(body, {"purpose", "channel"}, here)
        purpose, channel = body.get("purpose"), body.get("channel")
        for key, item in (("purpose", purpose), ("channel", channel)):
            if not isinstance(item, str) or not item:
                self.error(_ptr(here, key), f"consent needs a {key}")
                return None

        def fn(ctx: Any) -> bool:
            return ctx.consent.get(purpose, {}).get(channel) is True

        def explain(ctx: Any) -> dict[str, Any]:
            saw = ctx.consent.get(purpose, {}).get(channel)
            return {"consent": {"purpose": purpose, "channel": channel}, "saw": saw, "result": saw is True}

        return fn, explain, frozenset({"consent"})

    # {"performed": {"event": ..., "where": ..., "times": {"gte": n}, "within": {"days": n}}}

    def performed(self, spec: dict[str, Any], path: str, depth: int) -> _Node | None:  # noqa: PLR0911 -- one return per case of the spec
        self.extra_keys(spec, {"performed"}, path)
        body = spec["performed"]
        here = _ptr(path, "performed")
        if not isinstance(body, dict):
            self.error(here, "performed is an object with an event name")
            return None
        self.extra_keys(body, {"event", "where", "times", "within"}, here)
        name = body.get("event")
        if not isinstance(name, str) or not name:
            self.error(_ptr(here, "event"), "performed needs an event name")
            return None
        where: Condition | None = None
        if "where" in body:
            node = self.node(body["where"], _ptr(here, "where"), depth + 1, event_only=True)
            if node is None:
                return None
            where = Condition(body["where"], node[0], node[1], node[2])
        times = body.get("times", {"gte": 1})
        times_path = _ptr(here, "times")
        if not isinstance(times, dict) or len(times) != 1 or next(iter(times)) not in TIMES_OPS:
            self.error(times_path, "times is one of {'gte': n}, {'lte': n}, {'eq': n}")
            return None
        times_op, times_n = next(iter(times.items()))
        if type(times_n) is not int or times_n < 0:
            self.error(_ptr(times_path, times_op), "times counts with a whole number, 0 or more")
            return None
        delta: timedelta | None = None
        if "within" in body:
            delta = self.duration(body["within"], _ptr(here, "within"))
            if delta is None:
                return None
        check: Callable[[int], bool] = {
            "gte": lambda n: n >= times_n,
            "lte": lambda n: n <= times_n,
            "eq": lambda n: n == times_n,
        }[times_op]

        def count(ctx: Any) -> int:
            since = None if delta is None else ctx.now - delta
            return int(ctx.history.count(name, since, where))

        def fn(ctx: Any) -> bool:
            return check(count(ctx))

        def explain(ctx: Any) -> dict[str, Any]:
            seen = count(ctx)
            return {"performed": _jsonable(body), "count": seen, "result": check(seen)}

        needs = frozenset({"history", "now"}) if delta is not None else frozenset({"history"})
        return fn, explain, needs


def _all(fns: tuple[Fn, ...]) -> Fn:
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda ctx: a(ctx) and b(ctx)

    def fn(ctx: Any) -> bool:
        # A plain loop: all() over a generator costs a frame per evaluation on this hot path.
        for f in fns:  # noqa: SIM110
            if not f(ctx):
                return False
        return True

    return fn


def _any(fns: tuple[Fn, ...]) -> Fn:
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        a, b = fns
        return lambda ctx: a(ctx) or b(ctx)

    def fn(ctx: Any) -> bool:
        for f in fns:  # noqa: SIM110 -- as in _all
            if f(ctx):
                return True
        return False

    return fn


def _root_getter(root: str, keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """Getter for a root that is always a mapping (traits, computed)."""
    if len(keys) == 1:
        (key,) = keys
        if root == "traits":
            return lambda ctx: ctx.traits.get(key, MISSING)
        return lambda ctx: ctx.computed.get(key, MISSING)
    if root == "traits":
        return lambda ctx: _walk(ctx.traits, keys)
    return lambda ctx: _walk(ctx.computed, keys)


def _optional_root_getter(root: str, keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """Getter for a root that may be None (event, session)."""
    if len(keys) == 1:
        (key,) = keys
        if root == "event":
            return lambda ctx: MISSING if ctx.event is None else ctx.event.get(key, MISSING)
        return lambda ctx: MISSING if ctx.session is None else ctx.session.get(key, MISSING)
    if root == "event":
        return lambda ctx: MISSING if ctx.event is None else _walk(ctx.event, keys)
    return lambda ctx: MISSING if ctx.session is None else _walk(ctx.session, keys)


def _now_getter(part: str) -> Callable[[Any], Any]:
    def get(ctx: Any) -> Any:
        local = local_now(ctx)[0]
        if part == "hour":
            return local.hour
        if part == "minute":
            return local.minute
        if part == "weekday":
            return local.weekday()
        if part == "date":
            return local.date().isoformat()
        return local.strftime("%H:%M")

    return get
