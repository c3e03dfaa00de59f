import getpass
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.core.errors import ApplicationError
from profiles.privacy.services import customer_erase


class Command(BaseCommand):
    help = (
        "Erase everything held about a customer (and the profiles merged into it), keeping only keyed "
        "hashes of its identifiers. Idempotent; audited as command:<OS user>."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("customer_id", type=UUID)
        parser.add_argument(
            "--suppress", action="store_true", help="Drop later events carrying any of its identifiers."
        )
        parser.add_argument("--reason", default="", help="Why, for the erasure record.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            erasure = customer_erase(
                customer_id=options["customer_id"],
                suppress=options["suppress"],
                reason=options["reason"],
                actor=f"command:{getpass.getuser()}",
            )
        except ApplicationError as error:
            raise CommandError(error.detail) from None
        self.stdout.write(
            f"Erasure {erasure.id} of {erasure.customer_id} at {erasure.erased_at.isoformat()}: "
            f"{len(erasure.customer_ids)} profiles, suppress={erasure.suppress}, deleted {erasure.deleted}"
        )
