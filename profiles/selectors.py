"""Reads on the profile store."""

import threading
import time
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.core.errors import BadRequest
from config.core.secrets import digest
from profiles.contracts import CustomerCluster, CustomerProfile, CustomerReach, EventWho, SentAs, SourceInfo
from profiles.identifiers import IdentityKey, message_ids, normalize
from profiles.models import Customer, Event, Identity, QuarantinedMessage, Source

_source_cache: dict[str, tuple[float, SourceInfo | None]] = {}
_source_cache_lock = threading.Lock()


def source_for_write_key(write_key: str) -> SourceInfo | None:
    """The source a write key belongs to, or None. Cached per process for
    SOURCE_CACHE_SECONDS, so ingestion makes no database round trip for it; a disabled or
    rotated key stops working within that time."""
    key_hash = digest(write_key)
    ttl = settings.SOURCE_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _source_cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
    source = Source.objects.filter(write_key_hash=key_hash).first()
    info = (
        SourceInfo(
            id=source.id,
            name=source.name,
            channel=source.channel,
            enabled=source.enabled,
            identity_kinds=frozenset(source.identity_kinds or ()),
            allowed_origins=frozenset(source.allowed_origins or ()),
        )
        if source
        else None
    )
    if ttl > 0:
        with _source_cache_lock:
            if len(_source_cache) > 10_000:
                _source_cache.clear()
            _source_cache[key_hash] = (now + ttl, info)
    return info


def identity_normalize(*, kind: str, value: object) -> str | None:
    """An identity's value as ingestion stores it, None when it cannot be one of that kind; a
    400 `invalid_lookup` for a value holding NUL, which PostgreSQL cannot compare (ingestion
    quarantines a message holding one, so no identity has it)."""
    if isinstance(value, str) and "\x00" in value:
        raise BadRequest(f"{kind} contains a NUL character (\\u0000)", code="invalid_lookup")
    return normalize(kind, value, settings.DEFAULT_PHONE_REGION)


def customer_find(*, kind: str, value: str) -> Customer | None:
    """The live customer holding an identity, normalised as ingestion normalises it."""
    normalized = identity_normalize(kind=kind, value=value)
    if normalized is None:
        return None
    identity = Identity.objects.filter(kind=kind, value=normalized).select_related("customer").first()
    if identity is None:
        return None
    return customer_live(identity.customer)


def customer_profile_find(*, kind: str, value: str, computed: bool = False) -> CustomerProfile | None:
    """customer_find as other apps read it (profiles.facade.customer_find), in one statement:
    the identity's profile followed to the profile it was merged into, with that profile's
    cluster as customer_clusters gives it (the live id, then the merged ids in id order), and
    its computed traits when `computed`. One round trip, as decide's merged-profile path needs."""
    from profiles.computed_traits import computed_traits_from_state

    normalized = identity_normalize(kind=kind, value=value)
    if normalized is None:
        return None
    # Merging keeps `merged_into` one hop, so the identity's profile or the one it points at is live.
    live = Identity.objects.filter(kind=kind, value=normalized).values(
        live=Coalesce("customer__merged_into_id", "customer_id")
    )[:1]
    merged = Customer.objects.filter(merged_into_id=OuterRef("id")).order_by("id").values("id")
    fields = ("id", "merged", "traits", "computed_state") if computed else ("id", "merged", "traits")
    row = Customer.objects.filter(id=Subquery(live)).annotate(merged=ArraySubquery(merged)).values_list(*fields).first()
    if row is None:
        return None
    return CustomerProfile(
        id=row[0],
        member_ids=(row[0], *row[1]),
        traits=row[2] or {},
        computed=computed_traits_from_state(row[3] or {}, timezone.now().date()) if computed else {},
    )


def customer_live(customer: Customer) -> Customer:
    """The profile that survived a merge of this one (itself if it was not merged). Merging keeps
    `merged_into` one hop, so one lookup at most."""
    if customer.merged_into_id is None:
        return customer
    return Customer.objects.get(id=customer.merged_into_id)


def customer_get(*, customer_id: UUID) -> Customer | None:
    """The live profile behind an id (a merged-away id gives its survivor), or None."""
    customer = Customer.objects.filter(id=customer_id).first()
    return customer_live(customer) if customer else None


def customer_events(*, customer: Customer) -> QuerySet[Event]:
    """Newest first; (timestamp, id) keeps the order total for cursor pagination."""
    return Event.objects.filter(customer=customer).order_by("-timestamp", "-id")


def customers_existing(*, customer_ids: list[UUID]) -> list[UUID]:
    return list(Customer.objects.filter(id__in=customer_ids).values_list("id", flat=True))


def customer_merge_history(*, customer_id: UUID) -> dict[str, object] | None:
    """Merges into and out of a customer (by any id it had), and refusals that named it."""
    from profiles.models import MergeRecord, MergeRefusal

    if not Customer.objects.filter(id=customer_id).exists():
        return None
    merges = MergeRecord.objects.filter(Q(survivor_id=customer_id) | Q(merged_id=customer_id)).order_by("-id")
    refusals = MergeRefusal.objects.filter(customer_ids__contains=[str(customer_id)]).order_by("-id")
    return {"merges": list(merges), "refusals": list(refusals)}


def event_properties(*, event_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """Properties of stored events, which routing's StoredEvent leaves out; one query. (Not the
    context: it is most of an event's size.)"""
    if not event_ids:
        return {}
    return dict(Event.objects.filter(id__in=list(event_ids)).values_list("id", "properties"))


def events_track_recent(
    *, customer_ids: Collection[UUID], name: str, since: datetime | None, limit: int
) -> dict[UUID, list[dict[str, Any]]]:
    """The most recent `limit` track events named `name` of each customer (by the profile they
    were stored on), newest first, as plain data shaped like a condition's `event`. One
    statement for all the customers: a LATERAL scan of the event_customer_time index each."""
    if not customer_ids:
        return {}
    table = Event._meta.db_table
    params: list[Any] = [[str(c) for c in customer_ids], name]
    since_sql = ""
    if since is not None:
        since_sql = "AND e.timestamp >= %s"
        params.append(since)
    params.append(limit)
    sql = f"""
        SELECT c.id, e.timestamp, e.channel, e.properties, e.context
        FROM unnest(%s::uuid[]) AS c(id)
        CROSS JOIN LATERAL (
            SELECT timestamp, channel, properties, context FROM {table} e
            WHERE e.customer_id = c.id AND e.type = 'track' AND e.name = %s {since_sql}
            ORDER BY e.timestamp DESC, e.id DESC LIMIT %s
        ) e
    """  # noqa: S608 -- the table name is the model's, every value is a parameter
    found: dict[UUID, list[dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for customer_id, at, channel, properties, context in cursor.fetchall():
            found.setdefault(UUID(str(customer_id)), []).append(
                {
                    "name": name,
                    "type": "track",
                    "channel": channel,
                    "timestamp": at,
                    "properties": _json(properties),
                    "context": _json(context),
                }
            )
    return found


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def quarantine_counts(*, since: datetime) -> tuple[list[tuple[str, int]], int]:
    """Messages quarantined since `since` by reason (the ten most frequent), and how many of all
    the quarantined are still unresolved."""
    by_reason = (
        QuarantinedMessage.objects.filter(received_at__gte=since)
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n")[:10]
    )
    unresolved = QuarantinedMessage.objects.filter(resolved_at__isnull=True).count()
    return [(row["reason"], row["n"]) for row in by_reason], unresolved


def event_message_ids(*, event_ids: list[int]) -> dict[int, str]:
    """{event id: messageId} for these events, in one query (trace attributes at routing)."""
    return dict(Event.objects.filter(id__in=event_ids).values_list("id", "message_id"))


# --- For other apps: who a customer is now, and what a source has seen of it ------------------


_system_sources: dict[UUID, bool] = {}


def sources_system(*, source_ids: Collection[UUID]) -> frozenset[UUID]:
    """Which of these sources are Throughline's own (profiles.services.SYSTEM_SOURCE_PREFIX):
    their events are message outcomes and segment changes, not a customer's activity. Known
    answers are kept per process (a source's name is not reused), so a routed chunk costs at
    most one query, and none once its sources have been seen."""
    from profiles.services import SYSTEM_SOURCE_PREFIX

    unknown = {i for i in source_ids if i not in _system_sources}
    if unknown:
        names = dict(Source.objects.filter(id__in=unknown).values_list("id", "name"))
        for source_id in unknown:
            _system_sources[source_id] = names.get(source_id, "").startswith(SYSTEM_SOURCE_PREFIX)
    return frozenset(i for i in source_ids if _system_sources.get(i))


def customer_clusters(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, CustomerCluster]:
    """Who each id is now: the one answer to "who is this customer" (profiles.facade gives it to
    the other apps). Two queries whatever the number of ids.

    - A live profile's id gives its own cluster: itself, then every profile merged into it.
    - A merged-away id resolves to the profile it was merged into, and gives that cluster.
    - An id with no profile (never seen, erased, not a UUID) is left out.

    Merging keeps `merged_into` one hop (it repoints what pointed at a loser), so the live profile
    is `merged_into` or the profile itself."""
    asked: set[UUID] = set()
    for value in customer_ids:
        try:
            asked.add(value if isinstance(value, UUID) else UUID(str(value)))
        except ValueError:
            continue
    if not asked:
        return {}
    live_of = {
        cid: merged_into or cid
        for cid, merged_into in Customer.objects.filter(id__in=asked).values_list("id", "merged_into_id")
    }
    members: dict[UUID, list[UUID]] = {live: [live] for live in set(live_of.values())}
    for cid, live in (
        Customer.objects.filter(merged_into_id__in=list(members)).order_by("id").values_list("id", "merged_into_id")
    ):
        members[live].append(cid)
    return {cid: CustomerCluster(id=live, member_ids=tuple(members[live])) for cid, live in live_of.items()}


def customer_cluster(*, customer_id: UUID | str) -> CustomerCluster | None:
    """customer_clusters for one id."""
    return next(iter(customer_clusters(customer_ids=[customer_id]).values()), None)


def customer_member_ids(*, customer_id: UUID | str) -> list[UUID]:
    """customer_cluster's member ids (the live id first), [] for an id with no profile."""
    cluster = customer_cluster(customer_id=customer_id)
    return list(cluster.member_ids) if cluster is not None else []


def customer_profiles(*, customer_ids: Iterable[UUID | str], computed: bool = False) -> dict[UUID, CustomerProfile]:
    """The live profile behind each id, as customer_clusters resolves it (unknown ids left out),
    with its computed traits when `computed`. Three queries whatever the number of ids; plain
    rows, not model instances (routing asks this for every chunk)."""
    return _profiles(customer_clusters(customer_ids=customer_ids), computed=computed)


def _profiles(clusters: Mapping[UUID, CustomerCluster], *, computed: bool) -> dict[UUID, CustomerProfile]:
    """The live profiles of these clusters, keyed by the id asked for: one query."""
    from profiles.computed_traits import computed_traits_from_state

    if not clusters:
        return {}
    # The computed state can be large: read only when asked for.
    fields = ("id", "traits", "computed_state") if computed else ("id", "traits")
    live = {c.id for c in clusters.values()}
    rows = {row[0]: row[1:] for row in Customer.objects.filter(id__in=live).values_list(*fields)}
    today = timezone.now().date()
    profiles: dict[UUID, CustomerProfile] = {}
    for asked, cluster in clusters.items():
        row = rows.get(cluster.id)
        if row is None:
            continue
        profiles[asked] = CustomerProfile(
            id=cluster.id,
            member_ids=cluster.member_ids,
            traits=row[0] or {},
            computed=computed_traits_from_state(row[1] or {}, today) if computed else {},
        )
    return profiles


def customer_identities(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, list[IdentityKey]]:
    """Every (kind, value) of the person behind each id (its live profile and those merged into
    it), oldest first; unknown ids left out. Three queries whatever the number of ids."""
    return _identities(customer_clusters(customer_ids=customer_ids))


def _identities(clusters: Mapping[UUID, CustomerCluster]) -> dict[UUID, list[IdentityKey]]:
    owner = {member: cluster.id for cluster in clusters.values() for member in cluster.member_ids}
    held: dict[UUID, list[IdentityKey]] = {cluster.id: [] for cluster in clusters.values()}
    for cid, kind, value in (
        Identity.objects.filter(customer_id__in=list(owner))
        .order_by("created_at", "id")
        .values_list("customer_id", "kind", "value")
    ):
        held[owner[cid]].append((kind, value))
    return {asked: held[cluster.id] for asked, cluster in clusters.items()}


def customer_reach(*, customer_ids: Iterable[UUID | str]) -> dict[UUID, CustomerReach]:
    """The live profile behind each id with every identity of the person (oldest first), keyed
    by the id asked for (unknown ids left out): customer_profiles and customer_identities over
    one resolution, four queries whatever the number of ids."""
    clusters = customer_clusters(customer_ids=customer_ids)
    profiles = _profiles(clusters, computed=False)
    held = _identities(clusters)
    return {asked: CustomerReach(profile=profile, identities=tuple(held[asked])) for asked, profile in profiles.items()}


def customer_message_ids(
    *, customer_ids: Iterable[UUID | str], sent_as: Mapping[UUID, SentAs] | None = None
) -> dict[UUID, dict[str, Any]]:
    """The one way to address a customer: the ids that make ingestion resolve a message to the
    person behind each id. An id with `sent_as` is addressed as that event was (its userId, else
    its anonymousId), so the message lands where the event did; the others by their identities
    (profiles.identifiers.message_ids: the newest user id, else anonymous id, else email and
    phone). Unknown ids, and people with none of those identities, are left out."""
    wanted = {UUID(str(i)) for i in customer_ids}
    addressed: dict[UUID, dict[str, Any]] = {}
    for cid in wanted:
        given = (sent_as or {}).get(cid)
        if given is not None and (given.user_id or given.anonymous_id):
            addressed[cid] = {"userId": given.user_id} if given.user_id else {"anonymousId": given.anonymous_id}
    missing = wanted - addressed.keys()
    if missing:
        clusters = customer_clusters(customer_ids=missing)
        for cid, held in _identities(clusters).items():
            ids = message_ids(clusters[cid].id, held)
            if ids:
                addressed[cid] = ids
    return addressed


def source_info(*, source_id: UUID | str) -> SourceInfo | None:
    source = Source.objects.filter(id=source_id).first()
    if source is None:
        return None
    return SourceInfo(
        id=source.id,
        name=source.name,
        channel=source.channel,
        enabled=source.enabled,
        identity_kinds=frozenset(source.identity_kinds or ()),
    )


def sources_named(*, prefix: str) -> list[SourceInfo]:
    """The sources whose name starts with `prefix`, by name."""
    return [
        SourceInfo(
            id=source.id,
            name=source.name,
            channel=source.channel,
            enabled=source.enabled,
            identity_kinds=frozenset(source.identity_kinds or ()),
        )
        for source in Source.objects.filter(name__startswith=prefix).order_by("name")
    ]


def source_has_identified(
    *, source_id: UUID | str, customer_ids: Collection[UUID], ignoring_events: Collection[str] = ()
) -> bool:
    """Whether the source created one of these profiles' identities or sent an event for them
    (other than events named in `ignoring_events`)."""
    if Identity.objects.filter(customer_id__in=customer_ids, source_id=source_id).exists():
        return True
    events = Event.objects.filter(customer_id__in=customer_ids, source_id=source_id)
    if ignoring_events:
        events = events.exclude(name__in=ignoring_events)
    return events.exists()


def identity_customer_for_source(
    *, source_id: UUID | str, kind: str, value: str, ignoring_events: Collection[str] = ()
) -> UUID | None:
    """The profile holding identity (kind, value), if the source has itself identified it by
    that identity: created the identity, or sent an event carrying it as `kind` (user_id or
    anonymous_id; other than events named in `ignoring_events`)."""
    normalized = identity_normalize(kind=kind, value=value)
    if normalized is None:
        return None
    identity = Identity.objects.filter(kind=kind, value=normalized).only("customer_id", "source_id").first()
    if identity is None:
        return None
    if identity.source_id == source_id or str(identity.source_id) == str(source_id):
        return identity.customer_id
    if kind not in ("user_id", "anonymous_id"):
        return None
    events = Event.objects.filter(customer_id=identity.customer_id, source_id=source_id, **{kind: normalized})
    if ignoring_events:
        events = events.exclude(name__in=ignoring_events)
    return identity.customer_id if events.exists() else None


def events_who(*, event_ids: Collection[int]) -> dict[int, EventWho]:
    return {
        event_id: EventWho(customer_id, user_id, anonymous_id)
        for event_id, customer_id, user_id, anonymous_id in Event.objects.filter(id__in=list(event_ids)).values_list(
            "id", "customer_id", "user_id", "anonymous_id"
        )
    }
