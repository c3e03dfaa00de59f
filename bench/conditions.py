"""`make bench-conditions`: what one condition evaluation costs, in nanoseconds.

A micro-benchmark of journeys.conditions (pure Python, no services): each rule is compiled once,
then evaluated `--number` times per repeat against a fixed context; the figure is the best and
the median repeat divided by the number of evaluations (timeit's convention: the best repeat is
the machine's cost with the least interference, the median says how noisy the run was).

Rules:
- vip: the VIP routing rule (tier in a list, or lifetime value over a bound);
- nested: all/any/not over traits, computed traits, the event, segments, consent and now.hour
  in the customer's time zone;
- regex: an RE2 pattern over an email trait;
- performed: "ordered at least 3 times over 100 in the last 30 days" against a list history of
  `--history` events (200 by default), half of them orders;
- compile: compiling the nested rule (what publishing a version pays per condition).
"""

import argparse
import json
import platform
import statistics
import sys
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journeys.conditions import EvalContext, ListEventHistory, compile_condition

NOW = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)

VIP: dict[str, Any] = {
    "any": [
        {"field": "traits.tier", "op": "in", "value": ["vip", "gold", "platinum"]},
        {"field": "computed.lifetime_value", "op": "gte", "value": 1000},
    ]
}

NESTED: dict[str, Any] = {
    "all": [
        {"field": "event.name", "op": "equals", "value": "Checkout Started"},
        {"any": [{"segment": "vip"}, {"field": "computed.orders", "op": "gte", "value": 5}]},
        {"not": {"field": "traits.unsubscribed", "op": "equals", "value": True}},
        {"consent": {"purpose": "marketing", "channel": "sms"}},
        {"field": "event.properties.total", "op": "gt", "value": 50},
        {"field": "now.hour", "op": "gte", "value": 9},
        {"field": "now.hour", "op": "lt", "value": 21},
    ]
}

REGEX: dict[str, Any] = {"field": "traits.email", "op": "regex", "value": r"^[^@\s]+@(example|throughline)\.(com|io)$"}

PERFORMED: dict[str, Any] = {
    "performed": {
        "event": "Order Completed",
        "where": {"field": "event.properties.total", "op": "gt", "value": 100},
        "times": {"gte": 3},
        "within": {"days": 30},
    }
}


def context(history_size: int) -> EvalContext:
    events = [
        {
            "name": "Order Completed" if i % 2 else "Product Viewed",
            "type": "track",
            "timestamp": NOW - timedelta(hours=6 * i),
            "properties": {"total": 40 + (i * 7) % 120, "sku": f"SKU-{i % 17}"},
        }
        for i in range(history_size)
    ]
    return EvalContext(
        now=NOW,
        event={"name": "Checkout Started", "type": "track", "channel": "web", "properties": {"total": 80}},
        traits={"tier": "standard", "email": "ada.lovelace@example.com", "unsubscribed": False},
        computed={"lifetime_value": 1250, "orders": 7},
        segments=frozenset({"buyers", "vip"}),
        consent={"marketing": {"sms": True, "email": True}},
        timezone="Europe/Paris",
        customer_id="0d0c7c6e-9f52-4a58-9d0f-5b1d2b9f9a01",
        history=ListEventHistory(events),
    )


def per_call_ns(fn: Any, number: int, repeat: int) -> dict[str, float]:
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return {
        "best_ns": round(min(times) / number * 1e9, 1),
        "median_ns": round(statistics.median(times) / number * 1e9, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=100_000, help="evaluations per repeat")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--history", type=int, default=200, help="events in the performed rule's history")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    ctx = context(args.history)
    results: dict[str, Any] = {}
    for name, spec in (("vip", VIP), ("nested", NESTED), ("regex", REGEX)):
        condition = compile_condition(spec)
        results[name] = {
            "result": condition.evaluate(ctx),
            **per_call_ns(lambda c=condition: c.evaluate(ctx), args.number, args.repeat),
        }
    performed = compile_condition(PERFORMED)
    # A history scan is ~history times the cost of a leaf: fewer evaluations keep the run short.
    performed_number = max(1, args.number // max(1, args.history // 4))
    results["performed"] = {
        "result": performed.evaluate(ctx),
        "history_events": args.history,
        **per_call_ns(lambda: performed.evaluate(ctx), performed_number, args.repeat),
    }
    compile_number = max(1, args.number // 50)
    results["compile_nested"] = per_call_ns(lambda: compile_condition(NESTED), compile_number, args.repeat)

    print(
        f"journeys.conditions on {platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    )
    print(f"{'rule':<16}{'best ns/eval':>14}{'median ns/eval':>16}  result")
    for name, figures in results.items():
        result = figures.get("result", "")
        print(f"{name:<16}{figures['best_ns']:>14,.0f}{figures['median_ns']:>16,.0f}  {result}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "args": vars(args) | {"json": str(args.json)},
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
