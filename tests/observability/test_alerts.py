"""ops/alerts.yml: promtool's check when promtool is installed, and always a structural check that
every rule is complete and names only metrics Throughline exports (or Prometheus's own)."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from config.core import metrics

RULES = Path(__file__).resolve().parents[2] / "ops" / "alerts.yml"
REQUIRED_ALERTS = {
    "ThroughlineRoutingLagHigh",
    "ThroughlineEventsNotConsumed",
    "ThroughlineDeadDeliveries",
    "ThroughlineCircuitBreakerOpen",
    "ThroughlineQuarantineSpike",
    "ThroughlineNotReady",
}
# Series Prometheus itself writes for every target.
STANDARD = {"up", "scrape_duration_seconds", "probe_success"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "clamp_min",
    "clamp_max", "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
    "bool", "absent", "delta", "deriv", "offset", "time", "vector", "scalar", "abs", "e",
}  # fmt: skip


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _exported() -> set[str]:
    names: set[str] = {live.name for live in metrics.LIVE_METRICS}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(f"{value._name}_total")
        elif isinstance(value, Histogram):
            names.update(f"{value._name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def _metric_names(expr: str) -> set[str]:
    """Identifiers of an expression, less label matchers, grouping labels, durations and words."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d*e\d*", t)}


def test_every_alert_the_issue_asks_for_is_there() -> None:
    assert {rule["alert"] for rule in _rules()} >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_rule_is_complete(rule: dict[str, Any]) -> None:
    assert rule["expr"].strip()
    assert re.fullmatch(r"\d+[smh]", str(rule["for"]))
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_each_rule_names_only_exported_metrics(rule: dict[str, Any]) -> None:
    names = _metric_names(rule["expr"])
    assert names, "an alert must watch a metric"
    assert names <= _exported() | STANDARD


def test_the_metric_name_check_catches_a_misspelt_metric() -> None:
    names = _metric_names('sum by (le) (rate(throughline_routing_lag_second_bucket{job="x"}[5m])) > 1e3')
    assert names == {"throughline_routing_lag_second_bucket"}
    assert not names <= _exported()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
