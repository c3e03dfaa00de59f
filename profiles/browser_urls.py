from django.urls import path, re_path

from profiles import browser, ingest_apis

# At the root, where the SDKs look: a snippet's CDN host, RudderStack's configUrl.
urlpatterns = [
    re_path(
        r"^sourceConfig/?$",
        browser.cors(browser.RudderStackSourceConfigApi.as_view()),
        name="browser-rudderstack-source-config",
    ),
    # RudderStack's JS SDK with useBeacon: navigator.sendBeacon, writeKey in the query string.
    path("beacon/v1/batch", browser.cors(ingest_apis.BatchView.as_view()), name="ingest-beacon-batch"),
    path("analytics.js/v1/<str:write_key>/analytics.min.js", browser.analytics_js, name="browser-analytics-js"),
    path("analytics-next/bundles/<str:name>", browser.analytics_js_chunk, name="browser-analytics-js-chunk"),
]
