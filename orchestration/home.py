"""`/`: where everything is, for whoever opens the server's address in a browser.

A page of links and the names of the demo's sources, rendered on the server: no script, no
asset from elsewhere. It names no secret (the keys are printed by `make run` and kept in the
demo's credentials file), so it needs no login.
"""

from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_safe

from profiles import facade as profiles

# seed_demo's sources are named demo-<channel kind>.
DEMO_SOURCE_PREFIX = "demo-"


@require_safe
def home_view(request: HttpRequest) -> HttpResponse:
    context = {
        "embedded": settings.EMBEDDED_MODE,
        "demo_sources": profiles.sources_named(prefix=DEMO_SOURCE_PREFIX),
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "credentials_file": _within_checkout(Path(settings.DEMO_CREDENTIALS_FILE)),
    }
    return TemplateResponse(request, "orchestration/home.html", context)


def _within_checkout(path: Path) -> str:
    """The file's path from the checkout (how `make run` names it), or nothing when it lives
    elsewhere: the page does not tell the server's layout."""
    try:
        return str(path.resolve().relative_to(settings.BASE_DIR))
    except ValueError:
        return ""
