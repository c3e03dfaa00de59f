from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from profiles.contracts import ChannelKind
from profiles.services import source_create


class Command(BaseCommand):
    help = "Register an event source and print its write key (the last line). Only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--channel", required=True, choices=ChannelKind.values)
        parser.add_argument("--identity-kind", action="append", default=[], help="An external identity kind it sends.")
        parser.add_argument(
            "--allowed-origin",
            action="append",
            default=[],
            help="A web origin whose pages may send with the key (e.g. https://shop.example.com); none: any.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            source, write_key = source_create(
                name=options["name"],
                channel=options["channel"],
                identity_kinds=options["identity_kind"],
                allowed_origins=options["allowed_origin"],
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        self.stdout.write(f"Created source {source.name!r} ({source.channel}). Its write key:")
        self.stdout.write(write_key)
