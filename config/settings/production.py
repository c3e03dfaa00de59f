"""Production: every secret and service comes from the environment, with no default."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = False
DATABASE_URL = env.str("DATABASE_URL")
REDIS_URL = env.str("REDIS_URL")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
BROKER_CONFIGURED = True
EMBEDDED_MODE = False
CELERY_TASK_ALWAYS_EAGER = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
