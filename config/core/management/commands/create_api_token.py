from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from config.core.auth import api_token_create


class Command(BaseCommand):
    help = "Create a management API token and print it (the last line). Only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        token, secret = api_token_create(name=options["name"])
        self.stdout.write(f"Created API token {token.name!r} ({token.pk}). Use it as 'Authorization: Bearer <token>':")
        self.stdout.write(secret)
