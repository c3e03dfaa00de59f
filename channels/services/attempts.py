"""Send attempts, as the send task runs them: claim, send, record."""

from collections.abc import Callable
from uuid import UUID

from channels.breaker import open_destinations
from channels.models import Delivery, DeliveryStatus
from channels.services.claims import breakers_waits, claim_many
from channels.services.recording import AttemptResult, record
from channels.services.sending import send_all


def delivery_attempt(*, delivery_id: UUID) -> AttemptResult:
    """Claim a queued delivery, check consent and address, send through the channel's providers
    (skipping any whose breaker is open), then record the outcome. A delivery that is not
    queued (sent, sending elsewhere, finished) is left alone, so a redelivered task never sends
    twice."""
    return deliveries_attempt(delivery_ids=[delivery_id])[delivery_id]


def deliveries_attempt(
    *,
    delivery_ids: list[UUID],
    fresh: int = 0,
    only_fresh: bool = False,
    on_full: Callable[[], None] | None = None,
    on_parked: Callable[[float], None] | None = None,
) -> dict[UUID, AttemptResult]:
    """delivery_attempt for the given deliveries and up to `fresh` more that are queued and were
    never tried (oldest first, SKIP LOCKED): one claim, set-based checks, the sends in parallel
    over pooled connections, and their outcomes written in as few transactions as the sends
    take. `only_fresh` leaves the given ones alone unless never tried either (the task that
    `deliver` enqueued: a delivery another batch already took and put back for a retry waits for
    its own retry task, so its backoff holds). Returns a result for every delivery it took or
    was given; those with `retry_in` need a task again that many seconds from now. `on_full`
    runs before the sends when the claim took all `fresh` it could: more may be waiting, and a
    task started then works on them while these are sent. The fresh claim leaves out deliveries
    whose destination has an open breaker in this process; `on_parked(seconds)` runs once per
    breaker opening, with the seconds until its half-open trial: a task must claim again then,
    or those left out would wait for the queued sweeper."""
    results: dict[UUID, AttemptResult] = {}
    # Those whose providers are all known down in this process wait for the half-open trial
    # without a write, an attempt, or a request to the provider.
    waits = breakers_waits(delivery_ids)
    for delivery_id, seconds in waits.items():
        results[delivery_id] = AttemptResult(status=DeliveryStatus.QUEUED, retry_in=seconds)
    wanted = [delivery_id for delivery_id in delivery_ids if delivery_id not in waits]
    parked: list[str] = []
    if fresh:
        parked, wake_in = open_destinations()
        if wake_in is not None and on_parked is not None:
            on_parked(wake_in)
    claims = claim_many(wanted, fresh=fresh, only_fresh=only_fresh, parked=parked) if wanted or fresh else []
    taken = {claim.delivery.id for claim in claims}
    if on_full is not None and fresh and len(claims) - len(taken & set(wanted)) >= fresh:
        on_full()
    left = [delivery_id for delivery_id in wanted if delivery_id not in taken]
    if left and only_fresh:
        # The task `deliver` enqueued, for a delivery another batch took: nothing to report.
        results.update({delivery_id: AttemptResult(status="taken") for delivery_id in left})
    elif left:
        statuses = dict(Delivery.objects.filter(id__in=left).values_list("id", "status"))
        for delivery_id in left:
            results[delivery_id] = AttemptResult(status=statuses.get(delivery_id) or "missing")
    skipped = [claim for claim in claims if claim.skip_reason]
    if skipped:
        results.update(record([(claim, DeliveryStatus.SKIPPED, "", None) for claim in skipped]))
    for outcomes in send_all([claim for claim in claims if not claim.skip_reason]):
        results.update(record(outcomes))
    return results
