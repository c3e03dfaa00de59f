"""The official browser SDKs, unchanged, in real Chromium, on a page of another origin.

Each page makes the calls a site makes (a page view and a track while anonymous, an identify that
names the visitor, an alias joining the visitor's web user id to a user id the CRM sent before)
with the npm packages pinned by browser-sdks/package-lock.json, pointed at Throughline the way
their documentation says. Everything must land on one stitched profile, each call stored exactly
once with the browser's own context, and no request may leave for any host but the page's and
Throughline's (no vendor CDN, no vendor API).
"""

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from profiles.models import Customer, Event, Identity, MergeRefusal, Source
from tests.browser.conftest import CHROMIUM, LOCALE, NODE_MODULES, Exchange, Site, Visit
from tests.conftest import wait_until
from tests.factories import SourceFactory

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make test installs it)"),
    pytest.mark.skipif(not NODE_MODULES.is_dir(), reason="browser-sdks not installed (scripts/browser-sdks)"),
]

WEB_USER = "web-1042"
CRM_USER = "crm-88"
CALL_TYPES = ["alias", "identify", "page", "track"]
DELIVERY_TIMEOUT_SECONDS = 30
RETRY_WINDOW_SECONDS = 3

# The calls, in each SDK's own terms; `analytics` is the SDK's instance.
SEGMENT_CALLS = f"""
  await analytics.page("Pricing", {{plan: "pro"}});
  await analytics.track("Plan Chosen", {{plan: "pro", seats: 3}});
  await analytics.identify("{WEB_USER}", {{email: "ann@example.com"}});
  await analytics.alias("{WEB_USER}", "{CRM_USER}");
"""


def _crm_profile(throughline: str, write_key: str) -> None:
    """The CRM's earlier identify of the same person, through Segment's HTTP API."""
    response = requests.post(
        f"{throughline}/v1/identify",
        json={"userId": CRM_USER, "traits": {"plan": "pro"}},
        auth=(write_key, ""),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def _settings(throughline: str, write_key: str) -> dict[str, Any]:
    response = requests.get(f"{throughline}/v1/projects/{write_key}/settings", timeout=10)
    assert response.status_code == 200, response.text
    settings: dict[str, Any] = response.json()
    return settings


def _analytics_next_page(body: str) -> str:
    return (
        "<!doctype html><html><head><title>Pricing</title></head><body><h1>Pricing</h1>"
        '<script src="/node_modules/@segment/analytics-next/dist/umd/index.js"></script>'
        f"<script>(async () => {{ {body} }})();</script></body></html>"
    )


def _ingestion(visit: Visit, throughline: str) -> list[Exchange]:
    return [e for e in visit.exchanges if e.url.startswith(f"{throughline}/v1/") and "/projects/" not in e.url]


def _messages(exchange: Exchange) -> list[dict[str, Any]]:
    body: dict[str, Any] = json.loads(exchange.body)
    batch: list[dict[str, Any]] = body.get("batch", [body])
    return batch


def _stored(source: Source, count: int) -> list[Event]:
    def arrived() -> bool:
        return Event.objects.filter(source=source).count() >= count

    wait_until(arrived, timeout=DELIVERY_TIMEOUT_SECONDS, message=f"{count} events from the browser")
    return list(Event.objects.filter(source=source).order_by("id"))


def _assert_stitched_once(source: Source, visit: Visit, throughline: str, site: Site) -> list[Event]:
    events = _stored(source, 5)  # the CRM's identify and the four browser calls
    browser_events = [e for e in events if e.context.get("userAgent")]
    assert sorted(e.type for e in browser_events) == CALL_TYPES
    live = {Customer.objects.get(id=e.customer_id).merged_into_id or e.customer_id for e in events}
    crm_owner = Identity.objects.get(kind="user_id", value=CRM_USER).customer_id
    assert live == {crm_owner}
    # Whether the alias merged two profiles or joined identities to one depends on which call
    # arrived first (the SDKs send them concurrently); either way nothing was refused.
    assert not MergeRefusal.objects.exists()
    for event in browser_events:
        assert event.context["userAgent"].count("Chrome") == 1
        assert event.context["locale"] == LOCALE
        assert event.context["page"]["url"].startswith(site.origin)
    # The browser sees an answer a moment after the server has stored what it answers for.
    wait_until(
        lambda: sum(len(_messages(e)) for e in _ingestion(visit, throughline)) >= len(CALL_TYPES),
        timeout=DELIVERY_TIMEOUT_SECONDS,
        message="the browser has the answers",
    )
    sent = _ingestion(visit, throughline)
    assert {e.status for e in sent} == {200}
    assert sorted(m["type"] for e in sent for m in _messages(e)) == CALL_TYPES
    assert [e.url for e in visit.exchanges if not e.url.startswith((site.origin, throughline))] == []
    return browser_events


def test_analytics_next_standard_delivery_with_settings_inline(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    settings = json.dumps(_settings(throughline, source.write_key))
    page = _analytics_next_page(
        f"const analytics = AnalyticsNext.AnalyticsBrowser.load("
        f'{{writeKey: "{source.write_key}", cdnSettings: {settings}}});' + SEGMENT_CALLS
    )
    visit = chromium(site.add("/pricing", page))
    _assert_stitched_once(source, visit, throughline, site)
    sent = _ingestion(visit, throughline)
    assert sorted(e.url.rsplit("/", 1)[1] for e in sent) == ["a", "i", "p", "t"]
    assert {e.headers["content-type"] for e in sent} == {"text/plain"}
    assert all(_messages(e)[0]["writeKey"] == source.write_key for e in sent)


def test_analytics_next_batching_delivery_posts_keepalive_requests_to_b(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    settings = _settings(throughline, source.write_key)
    settings["integrations"]["Segment.io"]["deliveryStrategy"] = {
        "strategy": "batching",
        "config": {"size": 4, "timeout": 500, "keepalive": True},
    }
    page = _analytics_next_page(
        f"const analytics = AnalyticsNext.AnalyticsBrowser.load("
        f'{{writeKey: "{source.write_key}", cdnSettings: {json.dumps(settings)}}});' + SEGMENT_CALLS
    )
    visit = chromium(site.add("/pricing", page))
    _assert_stitched_once(source, visit, throughline, site)
    assert {e.url for e in _ingestion(visit, throughline)} == {f"{throughline}/v1/b"}


def test_analytics_next_loads_its_settings_from_throughline(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    page = _analytics_next_page(
        f"const analytics = AnalyticsNext.AnalyticsBrowser.load("
        f'{{writeKey: "{source.write_key}", cdnURL: "{throughline}"}});' + SEGMENT_CALLS
    )
    visit = chromium(site.add("/pricing", page))
    _assert_stitched_once(source, visit, throughline, site)
    assert [e.status for e in visit.to(f"/v1/projects/{source.write_key}/settings")] == [200]


def _standard_snippet(throughline: str, write_key: str) -> str:
    """Segment's snippet as @segment/snippet renders it for a custom host. Two changes, both for
    this test server's plain http: the snippet always writes https:// into the script URL, and
    analytics.js finds its CDN in that URL only when it is https, so `_cdn` (Segment's documented
    option for a self-hosted CDN) names the host."""
    host = throughline.removeprefix("http://")
    rendered = subprocess.run(
        [
            "node",
            "-e",
            "process.stdout.write(require('@segment/snippet').min("
            f"{{apiKey: {json.dumps(write_key)}, host: {json.dumps(host)}, page: true, load: true}}))",
        ],
        cwd=NODE_MODULES.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert f"https://{host}/analytics.js/v1/" in rendered
    return f'window.analytics = []; window.analytics._cdn = "{throughline}";\n' + rendered.replace(
        f"https://{host}", throughline
    )


def test_the_standard_snippet_loads_analytics_js_from_throughline(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    calls = (
        'analytics.track("Plan Chosen", {plan: "pro", seats: 3});'
        f'analytics.identify("{WEB_USER}", {{email: "ann@example.com"}});'
        f'analytics.alias("{WEB_USER}", "{CRM_USER}");'
    )
    page = (
        "<!doctype html><html><head><title>Pricing</title><script>"
        + _standard_snippet(throughline, source.write_key)
        + calls
        + "</script></head><body><h1>Pricing</h1></body></html>"
    )
    visit = chromium(site.add("/pricing", page))
    _assert_stitched_once(source, visit, throughline, site)
    assert [e.status for e in visit.to(f"/analytics.js/v1/{source.write_key}/analytics.min.js")] == [200]


def test_rudderstack_js_sdk_with_its_config_url_at_throughline(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    page = (
        "<!doctype html><html><head><title>Pricing</title></head><body><h1>Pricing</h1>"
        '<script src="/node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"></script>'
        "<script>const analytics = new rudderanalytics.RudderAnalytics();"
        f'analytics.load("{source.write_key}", "{throughline}", {{configUrl: "{throughline}"}});'
        'analytics.page("Pricing", {plan: "pro"});'
        'analytics.track("Plan Chosen", {plan: "pro", seats: 3});'
        f'analytics.identify("{WEB_USER}", {{email: "ann@example.com"}});'
        f'analytics.alias("{WEB_USER}", "{CRM_USER}");'
        "</script></body></html>"
    )
    visit = chromium(site.add("/pricing", page))
    _assert_stitched_once(source, visit, throughline, site)
    assert [e.status for e in visit.to("/sourceConfig/")] == [200]
    sent = _ingestion(visit, throughline)
    assert {e.headers["authorization"] for e in sent} == {"Basic " + _basic(source.write_key)}


def test_rudderstack_js_sdk_beacon_transport(throughline: str, site: Site, chromium: Callable[[str], Visit]) -> None:
    source: Any = SourceFactory()
    _crm_profile(throughline, source.write_key)
    page = (
        "<!doctype html><html><head><title>Pricing</title></head><body><h1>Pricing</h1>"
        '<script src="/node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js"></script>'
        "<script>const analytics = new rudderanalytics.RudderAnalytics();"
        f'analytics.load("{source.write_key}", "{throughline}", {{configUrl: "{throughline}", useBeacon: true,'
        " beaconQueueOptions: {flushQueueInterval: 200}});"
        'analytics.page("Pricing", {plan: "pro"});'
        'analytics.track("Plan Chosen", {plan: "pro", seats: 3});'
        f'analytics.identify("{WEB_USER}", {{email: "ann@example.com"}});'
        f'analytics.alias("{WEB_USER}", "{CRM_USER}");'
        "</script></body></html>"
    )
    visit = chromium(site.add("/pricing", page))
    events = _stored(source, 5)
    assert sorted(e.type for e in events if e.context.get("userAgent")) == CALL_TYPES
    crm_owner = Identity.objects.get(kind="user_id", value=CRM_USER).customer_id
    assert {Customer.objects.get(id=e.customer_id).merged_into_id or e.customer_id for e in events} == {crm_owner}
    wait_until(
        lambda: bool(visit.to(f"/beacon/v1/batch?writeKey={source.write_key}")),
        timeout=DELIVERY_TIMEOUT_SECONDS,
        message="the browser saw its beacon sent",
    )


def _basic(write_key: str) -> str:
    import base64

    return base64.b64encode(f"{write_key}:".encode()).decode()


def test_a_page_on_an_origin_the_source_does_not_allow_is_refused(
    throughline: str, site: Site, chromium: Callable[[str], Visit]
) -> None:
    source: Any = SourceFactory(allowed_origins=["https://shop.example.com"])
    settings = json.dumps(_settings(throughline, source.write_key))
    page = _analytics_next_page(
        f"const analytics = AnalyticsNext.AnalyticsBrowser.load("
        f'{{writeKey: "{source.write_key}", cdnSettings: {settings}}});' + SEGMENT_CALLS
    )
    visit = chromium(site.add("/pricing", page))

    def all_answered() -> bool:
        return len(_ingestion(visit, throughline)) >= len(CALL_TYPES)

    wait_until(all_answered, timeout=DELIVERY_TIMEOUT_SECONDS, message="the four calls answered")
    # Answered, with CORS headers, so the SDK reads the 403 and drops the call instead of retrying
    # it (its first retry would come within a second).
    time.sleep(RETRY_WINDOW_SECONDS)
    refused = _ingestion(visit, throughline)
    assert ({e.status for e in refused}, len(refused)) == ({403}, len(CALL_TYPES))
    assert not Event.objects.filter(source=source).exists()
