from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from journeys.demo import JOURNEYS, VIP_SEGMENT
from journeys.models import Journey, Segment, VersionStatus
from journeys.services import journey_create, journey_publish


class Command(BaseCommand):
    help = (
        "Seed the demo's journeys (journeys/demo.py): the `vip` segment and the three journeys, "
        "published. Creates what is missing and leaves what exists alone: a segment or journey "
        "with the demo's key, whatever was edited or published since, is never overwritten."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        if Segment.objects.filter(key=VIP_SEGMENT["key"]).exists():
            self.stdout.write(f"Segment {VIP_SEGMENT['key']}: exists, left as it is")
        else:
            fields = {name: VIP_SEGMENT[name] for name in ("name", "description", "condition")}
            Segment.objects.create(key=VIP_SEGMENT["key"], enabled=True, **fields)
            self.stdout.write(f"Segment {VIP_SEGMENT['key']}: created")
        self.stdout.write("Demo journeys:")
        for key, (name, description, definition) in JOURNEYS.items():
            self.stdout.write(f"  {key:<16} {self._seed(key, name, description, definition)}")

    def _seed(self, key: str, name: str, description: str, definition: dict[str, Any]) -> str:
        journey = Journey.objects.filter(key=key).first()
        if journey is not None:
            published = journey.versions.filter(status=VersionStatus.PUBLISHED).first()
            state = f"v{published.number} published" if published is not None else "no version published"
            return f"exists ({state}), left as it is"
        draft = journey_create(key=key, name=name, definition=definition, description=description)
        journey_publish(version=draft)
        return f"v{draft.number} published"
