from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.core import health, prometheus
from config.core.views import NoRouteApi
from journeys import decide_apis
from orchestration import dashboard, home

# What escapes UnexpectedErrorMiddleware (an exception raised by a middleware) outside DEBUG:
# the same JSON answer outside the admin.
handler500 = "config.core.errors.server_error"

urlpatterns = [
    path("", home.home_view, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", prometheus.metrics_view, name="metrics"),
    path("v1/", include("profiles.ingest_urls")),
    path("", include("profiles.browser_urls")),
    path("v1/", include("channels.webhook_urls")),
    path("v1/", include("sessions.urls")),
    path("v1/decide", decide_apis.DecideApi.as_view(), name="decide"),
    path("api/v1/", include("profiles.urls")),
    path("api/v1/", include("channels.urls")),
    path("api/v1/", include("sessions.staff_urls")),
    path("api/v1/", include("journeys.urls")),
    path("api/v1/decisions/<uuid:decision_id>", decide_apis.DecisionApi.as_view(), name="decision-detail"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Last of the API's routes: whatever else is under /v1 or /api/v1 is a JSON 404.
    re_path(r"^(?:api/)?v1(?:/|$)", NoRouteApi.as_view(), name="api-no-route"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/operations/", admin.site.admin_view(dashboard.operations_view), name="admin-operations"),
    path("admin/", admin.site.urls),
]
