"""factory_boy factories. Sources and tokens keep their plain secret on the instance
(`.write_key`, `.secret`), since the database only has its hash."""

from datetime import UTC, datetime

import factory
from django.utils import timezone

from config.core.models import ApiToken
from config.core.secrets import digest, new_secret
from profiles.contracts import ChannelKind
from profiles.models import (
    Customer,
    EventSchema,
    EventSchemaVersion,
    Identity,
    QuarantinedMessage,
    SchemaEventType,
    SchemaStatus,
    Source,
)
from sessions.models import SessionRecord


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"source-{n}")
    channel = ChannelKind.WEB
    enabled = True
    write_key = factory.LazyFunction(lambda: new_secret("tlw"))
    write_key_hash = factory.LazyAttribute(lambda o: digest(o.write_key))
    write_key_prefix = factory.LazyAttribute(lambda o: o.write_key[:8])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        write_key = kwargs.pop("write_key", None)
        obj = super()._create(model_class, *args, **kwargs)
        obj.write_key = write_key
        return obj


class ApiTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiToken

    name = factory.Sequence(lambda n: f"token-{n}")
    secret = factory.LazyFunction(lambda: new_secret("tlt"))
    token_hash = factory.LazyAttribute(lambda o: digest(o.secret))
    prefix = factory.LazyAttribute(lambda o: o.secret[:8])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = kwargs.pop("secret", None)
        obj = super()._create(model_class, *args, **kwargs)
        obj.secret = secret
        return obj


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    traits = factory.LazyFunction(dict)


class IdentityFactory(factory.django.DjangoModelFactory[Identity]):
    class Meta:
        model = Identity

    kind = "anonymous_id"
    value = factory.Sequence(lambda n: f"anon-{n}")
    customer = factory.SubFactory(CustomerFactory)


class SessionFactory(factory.django.DjangoModelFactory[SessionRecord]):
    """A session's durable record, as orchestration's session store writes it."""

    class Meta:
        model = SessionRecord

    customer = factory.SubFactory(CustomerFactory)
    channel = ChannelKind.WEB
    started_channel = factory.LazyAttribute(lambda o: o.channel)
    channels = factory.LazyAttribute(lambda o: [o.channel])
    started_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyAttribute(lambda o: o.started_at)


class EventSchemaFactory(factory.django.DjangoModelFactory[EventSchema]):
    class Meta:
        model = EventSchema

    event_type = SchemaEventType.TRACK
    event_name = factory.Sequence(lambda n: f"Event {n}")
    source = None


class EventSchemaVersionFactory(factory.django.DjangoModelFactory[EventSchemaVersion]):
    """A version; pass `version="1-2-0"` and the three numbers follow."""

    class Meta:
        model = EventSchemaVersion

    schema = factory.SubFactory(EventSchemaFactory)
    version = "1-0-0"
    model = factory.LazyAttribute(lambda o: int(o.version.split("-")[0]))
    revision = factory.LazyAttribute(lambda o: int(o.version.split("-")[1]))
    addition = factory.LazyAttribute(lambda o: int(o.version.split("-")[2]))
    document = factory.LazyFunction(lambda: {"type": "object"})
    status = SchemaStatus.DRAFT


class QuarantinedMessageFactory(factory.django.DjangoModelFactory[QuarantinedMessage]):
    class Meta:
        model = QuarantinedMessage

    source = factory.SubFactory(SourceFactory)
    received_at = factory.LazyFunction(lambda: datetime.now(UTC))
    stage = "ingest"
    reason = "missing_identity"
    detail = "userId or anonymousId is required"
    message_id = factory.LazyAttribute(lambda o: o.raw.get("messageId", "") if isinstance(o.raw, dict) else "")
    raw = factory.Sequence(lambda n: {"type": "track", "event": "Signed Up", "messageId": f"q-{n}"})
