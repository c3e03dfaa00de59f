"""Bearer-token authentication for the management API."""

from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from config.core.models import ApiToken
from config.core.secrets import digest, new_secret


class ApiTokenUser:
    """The caller of the management API: a token, not a Django user."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, token: ApiToken):
        self.token = token
        self.pk = token.pk

    def __str__(self) -> str:
        return f"token:{self.token.name}"


class ApiTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        token = ApiToken.objects.filter(token_hash=digest(parts[1].decode("latin-1")), revoked_at=None).first()
        if token is None:
            raise AuthenticationFailed("Unknown or revoked API token.")
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return ApiTokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="throughline"'


def api_token_create(*, name: str) -> tuple[ApiToken, str]:
    """Create an API token; returns it with the plain secret, which is never stored."""
    secret = new_secret("tlt")
    token = ApiToken.objects.create(name=name, token_hash=digest(secret), prefix=secret[:8])
    return token, secret
