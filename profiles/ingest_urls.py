from django.urls import path

from profiles import ingest_apis

urlpatterns = [
    path("identify", ingest_apis.IdentifyView.as_view(), name="ingest-identify"),
    path("track", ingest_apis.TrackView.as_view(), name="ingest-track"),
    path("page", ingest_apis.PageView.as_view(), name="ingest-page"),
    path("screen", ingest_apis.ScreenView.as_view(), name="ingest-screen"),
    path("group", ingest_apis.GroupView.as_view(), name="ingest-group"),
    path("alias", ingest_apis.AliasView.as_view(), name="ingest-alias"),
    path("batch", ingest_apis.BatchView.as_view(), name="ingest-batch"),
    path("import", ingest_apis.BatchView.as_view(), name="ingest-import"),
]
