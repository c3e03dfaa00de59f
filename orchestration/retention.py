"""Retention, app by app: each app trims its own tables (its `retention_apply`), this module
runs them in turn and keeps the route log, the one table orchestration owns that grows with
every event (docs/operations.md, "Retention")."""

from datetime import datetime

from django.conf import settings

from channels import contracts as channels
from config.core import partitions
from journeys import contracts as journeys
from profiles import facade as profiles

ROUTE_LOG_TABLE = "orchestration_routelog"
ROUTE_LOG_COLUMN = "routed_at"
ROUTE_LOG_PERIOD: partitions.Period = "week"


def route_log_retention_apply(*, now: datetime) -> dict[str, int]:
    created, dropped = partitions.partitions_keep(
        table=ROUTE_LOG_TABLE,
        column=ROUTE_LOG_COLUMN,
        period=ROUTE_LOG_PERIOD,
        days=settings.RETENTION_ROUTE_LOG_DAYS,
        now=now,
    )
    return {"route_log_partitions_created": created, "route_log_partitions_dropped": dropped}


def retention_apply(*, now: datetime) -> dict[str, int]:
    """Every app's retention, then the route log's; counts by what was done."""
    done: dict[str, int] = {}
    done.update(profiles.retention_apply(now=now))
    done.update(journeys.retention_apply(now=now))
    done.update(channels.retention_apply(now=now))
    done.update(route_log_retention_apply(now=now))
    return done
