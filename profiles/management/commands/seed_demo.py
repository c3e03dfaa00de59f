import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from config.core.auth import api_token_create
from config.core.models import ApiToken
from profiles.models import ChannelKind, Source
from profiles.services import source_create, source_rotate_key

DEMO_TOKEN_NAME = "demo"  # noqa: S105 - a label, not a secret


class Command(BaseCommand):
    help = (
        "Seed the demo: one source per channel kind, an API token, an admin user, and the demo "
        "journeys (seed_journeys_demo). Keys are stored hashed, so each run issues fresh ones and "
        "prints them; everything else is left as it is when already there."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Demo sources (write keys):")
        for channel in ChannelKind.values:
            name = f"demo-{channel}"
            source = Source.objects.filter(name=name).first()
            if source is None:
                source, key = source_create(name=name, channel=channel)
            else:
                key = source_rotate_key(source=source)
            self.stdout.write(f"  {name:<12} {key}")
        ApiToken.objects.filter(name=DEMO_TOKEN_NAME, revoked_at=None).delete()
        _, token = api_token_create(name=DEMO_TOKEN_NAME)
        self.stdout.write(f"API token (Authorization: Bearer ...): {token}")
        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        admin = user_model.objects.filter(username="admin").first() or user_model(username="admin")
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        self.stdout.write(f"Admin: user 'admin', password {password}")
        # By command name: profiles does not import journeys (dependencies point one way).
        call_command("seed_journeys_demo", stdout=self.stdout)
