"""factory_boy factories for journeys rows. Versions are drafts unless told otherwise; tests
that need a published version publish it through journeys.services (or pass status when the
publish itself is not what they test)."""

import factory
from django.utils import timezone

from journeys.models import (
    Decision,
    Enrollment,
    EnrollmentStatus,
    Journey,
    JourneyVersion,
    Segment,
    SegmentMembership,
    StepRun,
    Timer,
    VersionStatus,
)
from tests.factories import CustomerFactory


class SegmentFactory(factory.django.DjangoModelFactory[Segment]):
    class Meta:
        model = Segment

    key = factory.Sequence(lambda n: f"segment-{n}")
    name = factory.LazyAttribute(lambda o: o.key)
    condition = factory.LazyFunction(lambda: {"field": "traits.vip", "op": "equals", "value": True})


class SegmentMembershipFactory(factory.django.DjangoModelFactory[SegmentMembership]):
    class Meta:
        model = SegmentMembership

    segment = factory.SubFactory(SegmentFactory)
    customer_id = factory.LazyFunction(lambda: CustomerFactory.create().id)
    entered_at = factory.LazyFunction(timezone.now)


class JourneyFactory(factory.django.DjangoModelFactory[Journey]):
    class Meta:
        model = Journey

    key = factory.Sequence(lambda n: f"journey-{n}")
    name = factory.LazyAttribute(lambda o: o.key.replace("-", " ").capitalize())


class JourneyVersionFactory(factory.django.DjangoModelFactory[JourneyVersion]):
    class Meta:
        model = JourneyVersion

    journey = factory.SubFactory(JourneyFactory)
    number = factory.Sequence(lambda n: n + 1)
    status = VersionStatus.DRAFT
    definition = factory.LazyFunction(
        lambda: {
            "trigger": {"type": "api"},
            "start": "done",
            "steps": {"done": {"type": "exit"}},
        }
    )
    published_at = factory.LazyAttribute(lambda o: timezone.now() if o.status == VersionStatus.PUBLISHED else None)


class EnrollmentFactory(factory.django.DjangoModelFactory[Enrollment]):
    class Meta:
        model = Enrollment

    version = factory.SubFactory(JourneyVersionFactory)
    journey = factory.LazyAttribute(lambda o: o.version.journey)
    customer_id = factory.LazyFunction(lambda: CustomerFactory.create().id)
    status = EnrollmentStatus.ACTIVE
    step = "done"
    entered_at = factory.LazyFunction(timezone.now)


class DecisionFactory(factory.django.DjangoModelFactory[Decision]):
    class Meta:
        model = Decision

    placement = "support_entry"
    at = factory.LazyFunction(timezone.now)
    result = factory.LazyFunction(lambda: {"route": "self_service", "content": {}})


class StepRunFactory(factory.django.DjangoModelFactory[StepRun]):
    class Meta:
        model = StepRun

    enrollment = factory.SubFactory(EnrollmentFactory)
    key = factory.Sequence(lambda n: f"run-{n}")
    step = "done"
    kind = "exit"
    visit = 1
    at = factory.LazyFunction(timezone.now)
    outcome = "next"


class TimerFactory(factory.django.DjangoModelFactory[Timer]):
    class Meta:
        model = Timer

    enrollment = factory.SubFactory(EnrollmentFactory)
    step = "wait"
    visit = 1
    kind = "wait"
    due_at = factory.LazyFunction(timezone.now)
