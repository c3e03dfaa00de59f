from django.db import models


class RouteLog(models.Model):
    """One row per event routed: the effect of routing until journeys plug in, and the source
    of the routing-lag figures. No unique constraint on purpose: the outbox claim is what makes
    routing happen once, and the fault tests count these rows to prove it."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.BigIntegerField(db_index=True)
    routed_at = models.DateTimeField()
    lag_ms = models.PositiveIntegerField(help_text="From received to routed.")

    def __str__(self) -> str:
        return f"routed:{self.event_id}"
