"""The WSGI application: a lean handler for what sources call, the full one for the rest.

/v1/... is what sources and providers call on every event, session read or webhook: write-key or
signature auth, JSON in and out, no cookies, no browser. The session, CSRF, auth, messages,
clickjacking, CommonMiddleware and WhiteNoise layers have nothing to do there, yet they cost a
measurable share of each call's CPU (bench/profile_ingest.py). So /v1 is served by a second
Django handler built from settings.MIDDLEWARE minus those; everything else (the admin, the
management API, the docs) goes through settings.MIDDLEWARE unchanged. Both share the URLconf,
so a route answers the same through either; middleware added to settings later (request ids,
metrics) applies to /v1 too unless it is listed here. In front of the lean handler, the tracking
calls, session GETs and PATCHes and decide requests are answered without Django's request
machinery (config/core/fast_path.py), with the same answers.
"""

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

SOURCE_API_PREFIX = "/v1/"
# What /v1 does without: browser sessions, CSRF (no cookie auth), users, flash messages,
# X-Frame-Options, APPEND_SLASH redirects and static files.
SOURCE_API_SKIPS = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)

if TYPE_CHECKING:
    from config.core.fast_path import FastPath

StartResponse = Callable[..., Any]

# What a request's environ may carry that also names a process environment variable.
_REQUEST_KEYS = frozenset(
    {
        "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "HTTPS", "PATH_INFO", "QUERY_STRING",
        "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_USER", "REQUEST_METHOD", "SCRIPT_NAME", "SERVER_NAME",
        "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
    }
)  # fmt: skip


def process_only_keys(environment: Iterable[str]) -> tuple[str, ...]:
    """The process environment variables that are not request variables."""
    return tuple(k for k in environment if k not in _REQUEST_KEYS and not k.startswith(("HTTP_", "wsgi.")))


def source_api_middleware() -> list[str]:
    return [path for path in settings.MIDDLEWARE if path not in SOURCE_API_SKIPS]


class SourceApiHandler(WSGIHandler):
    """A WSGIHandler whose middleware chain is source_api_middleware()."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE; it runs once, when the handler is built at
        # import time (before any request thread exists), so swapping the list around it is safe.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = source_api_middleware()
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class Dispatcher:
    """Routes each request by path to the lean or the full handler."""

    def __init__(self, full: WSGIHandler, lean: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.full = full
        self.lean = lean
        # granian, like wsgiref, starts every environ from the server's os.environ: without
        # this, request.META would carry DATABASE_URL, DJANGO_SECRET_KEY and the rest into
        # anything that logs or reports a request.
        self.process_keys = process_only_keys(os.environ)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.process_keys and self.process_keys[0] in environ:  # a server that adds them
            for key in self.process_keys:
                environ.pop(key, None)
        handler = self.lean if environ.get("PATH_INFO", "").startswith(SOURCE_API_PREFIX) else self.full
        return handler(environ, start_response)


def fast_path(fallback: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> "FastPath":
    """The WSGI fast path in front of `fallback`, with its routes: the tracking calls first (the
    most frequent; a dictionary lookup), then decide (a string comparison), then the session GET
    and PATCH (a regular expression)."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    from config.core.fast_path import FastPath

    # Named in settings, as MIDDLEWARE is: config.core knows no app.
    routes = [import_string(path) for path in settings.SOURCE_API_FAST_ROUTES]
    return FastPath(fallback, source_api_middleware(), routes)


def application() -> Dispatcher:
    """Build both handlers (call after django.setup(), as get_wsgi_application does)."""
    import django

    django.setup(set_prefix=False)
    return Dispatcher(WSGIHandler(), fast_path(SourceApiHandler()))


def settle() -> None:
    """Load what the first request would, then move every object alive into the collector's
    permanent generation: a full collection in a loaded production worker walked about 140,000
    objects (38 ms with the GIL held, every thread of the worker stopped), and after the freeze it
    walks only what requests have left alive since. Called once per process, after the
    application is built."""
    import gc

    from django.urls import Resolver404, resolve

    with contextlib.suppress(Resolver404):
        resolve("/")  # imports every URLconf and view module
    gc.collect()
    gc.freeze()
