"""WSGI entry point (`granian --interface wsgi config.wsgi:application`, config/core/server.py):
/v1 through a lean middleware stack, the rest through settings.MIDDLEWARE (config/core/wsgi.py says why)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from config.core.wsgi import application as _build
from config.core.wsgi import settle

application = _build()
settle()
