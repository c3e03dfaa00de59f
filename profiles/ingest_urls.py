from django.urls import path

from profiles import browser, ingest_apis

# Every path web pages call is answered with CORS (profiles/browser.py). The one-letter paths and
# /v1/b are where Segment's browser and mobile SDKs send (the first letter of the call's type, b
# for a batch): the same views as the long names.
_CALLS = {
    "identify": ingest_apis.IdentifyView,
    "track": ingest_apis.TrackView,
    "page": ingest_apis.PageView,
    "screen": ingest_apis.ScreenView,
    "group": ingest_apis.GroupView,
    "alias": ingest_apis.AliasView,
}

urlpatterns = [
    *(path(call, browser.cors(view.as_view()), name=f"ingest-{call}") for call, view in _CALLS.items()),
    *(path(call[0], browser.cors(view.as_view()), name=f"ingest-{call}-short") for call, view in _CALLS.items()),
    path("batch", browser.cors(ingest_apis.BatchView.as_view()), name="ingest-batch"),
    path("b", browser.cors(ingest_apis.BatchView.as_view()), name="ingest-batch-short"),
    path("import", browser.cors(ingest_apis.BatchView.as_view()), name="ingest-import"),
    path(
        "projects/<str:write_key>/settings",
        browser.cors(browser.SegmentSettingsApi.as_view()),
        name="browser-segment-settings",
    ),
]
