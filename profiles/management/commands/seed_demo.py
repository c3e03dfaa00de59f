import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from config.core.auth import api_token_create
from config.core.models import ApiToken
from config.core.secrets import digest
from profiles.contracts import ChannelKind
from profiles.models import Source
from profiles.services import source_create, source_rotate_key

DEMO_TOKEN_NAME = "demo"  # noqa: S105 - a label, not a secret
ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Seed the demo: one source per channel kind, an API token, an admin user, and the demo "
        "journeys (seed_journeys_demo). The database keeps only hashes, so the plaintexts are kept "
        "in DEMO_CREDENTIALS_FILE (mode 0600) and printed at every run; a run creates what is "
        "missing and leaves what exists as it is."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.DEMO_CREDENTIALS_FILE)
        kept = _read(path)
        known: dict[str, Any] = {"sources": {}}
        self.stdout.write("Demo sources (write keys):")
        for channel in ChannelKind.values:
            name = f"demo-{channel}"
            key = self._source(name, channel, kept.get("sources", {}).get(name))
            if key is not None:
                known["sources"][name] = key
        known["api_token"] = self._token(kept.get("api_token"))
        password = self._admin(kept.get("admin_password"))
        if password is not None:
            known["admin_password"] = password
        _write(path, known)
        self.stdout.write(f"(kept in {path}, readable by you only)")
        # By command name: profiles does not import journeys (dependencies point one way).
        call_command("seed_journeys_demo", stdout=self.stdout)

    def _source(self, name: str, channel: str, kept: str | None) -> str | None:
        """The source's write key: the kept one while it still works, a new one when none is kept
        (a new source, or one a previous seed made but never kept). None when someone rotated it
        since: theirs is left as it is."""
        source = Source.objects.filter(name=name).first()
        if source is None:
            _, key = source_create(name=name, channel=channel)
        elif kept is None:
            key = source_rotate_key(source=source)
        elif digest(kept) == source.write_key_hash:
            key = kept
        else:
            self.stdout.write(f"  {name:<12} (key rotated since it was seeded; not shown)")
            return None
        self.stdout.write(f"  {name:<12} {key}")
        return key

    def _token(self, kept: str | None) -> str:
        """The kept API token while it is not revoked; otherwise a new one."""
        if kept is None or not ApiToken.objects.filter(token_hash=digest(kept), revoked_at=None).exists():
            _, kept = api_token_create(name=DEMO_TOKEN_NAME)
        self.stdout.write(f"API token (Authorization: Bearer ...): {kept}")
        return kept

    def _admin(self, kept: str | None) -> str | None:
        """The admin's password: the kept one while it still works, a new one when none is kept
        (a new user, or one a previous seed made but never kept). None when someone changed it
        since: theirs is left as it is."""
        user_model = get_user_model()
        admin = user_model.objects.filter(username=ADMIN_USERNAME).first() or user_model(username=ADMIN_USERNAME)
        if kept is not None and admin.pk is not None and admin.check_password(kept):
            password = kept
        elif kept is None or admin.pk is None:
            password = kept or secrets.token_urlsafe(12)
            admin.is_staff = admin.is_superuser = True
            admin.set_password(password)
            admin.save()
        else:
            self.stdout.write(
                f"Admin: user '{ADMIN_USERNAME}', password changed since it was seeded; "
                f"`python manage.py changepassword {ADMIN_USERNAME}` sets a new one"
            )
            return None
        self.stdout.write(f"Admin: user '{ADMIN_USERNAME}', password {password}")
        return password


def _read(path: Path) -> dict[str, Any]:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or unreadable: the seed issues what it cannot find, then writes it
    return kept if isinstance(kept, dict) else {}


def _write(path: Path, credentials: dict[str, Any]) -> None:
    """Replace the file at once (a crash leaves the old one whole), created with mode 0600: it
    holds secrets the database keeps only hashed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump(credentials, file, indent=2)
        file.write("\n")
    partial.replace(path)
