from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from journeys.demo import JOURNEYS, VIP_SEGMENT
from journeys.models import Journey, JourneyVersion, Segment, VersionStatus
from journeys.services import journey_create, journey_publish, version_create_draft


class Command(BaseCommand):
    help = (
        "Seed the demo's journeys (journeys/demo.py): the `vip` segment and the three journeys, "
        "published. Idempotent: a journey whose published version already has the demo's "
        "definition is left alone; one that differs gets a new version, published."
    )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        segment = Segment.objects.filter(key=VIP_SEGMENT["key"]).first()
        fields = {name: VIP_SEGMENT[name] for name in ("name", "description", "condition")}
        if segment is None:
            Segment.objects.create(key=VIP_SEGMENT["key"], enabled=True, **fields)
            self.stdout.write(f"Segment {VIP_SEGMENT['key']}: created")
        elif any(getattr(segment, name) != value for name, value in fields.items()) or not segment.enabled:
            for name, value in fields.items():
                setattr(segment, name, value)
            segment.enabled = True
            segment.save()
            self.stdout.write(f"Segment {VIP_SEGMENT['key']}: updated")
        self.stdout.write("Demo journeys:")
        for key, (name, description, definition) in JOURNEYS.items():
            self.stdout.write(f"  {key:<16} {self._seed(key, name, description, definition)}")

    def _seed(self, key: str, name: str, description: str, definition: dict[str, Any]) -> str:
        journey = Journey.objects.filter(key=key).first()
        if journey is None:
            draft = journey_create(key=key, name=name, definition=definition, description=description)
        else:
            published = journey.versions.filter(status=VersionStatus.PUBLISHED).first()
            if published is not None and published.definition == definition:
                return f"v{published.number} published (unchanged)"
            draft = (
                JourneyVersion.objects.filter(journey=journey, status=VersionStatus.DRAFT, definition=definition)
                .order_by("-number")
                .first()
            ) or version_create_draft(journey=journey, definition=definition)
        journey_publish(version=draft)
        return f"v{draft.number} published"
