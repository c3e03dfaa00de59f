"""The route log ("outbox history", one row per routed event) partitioned by week on routed_at.

Its rows are kept RETENTION_ROUTE_LOG_DAYS (30 by default): weekly partitions drop it in steps
of a week. Existing rows stay where they are, the old table attached as the first partition.
"""

from django.db import migrations
from django.utils import timezone

from config.core import partitions


def partition(apps, schema_editor):  # noqa: ANN001, ARG001 - migration signature
    partitions.table_partition(table="orchestration_routelog", column="routed_at", period="week", now=timezone.now())


def unpartition(apps, schema_editor):  # noqa: ANN001, ARG001
    partitions.table_unpartition(table="orchestration_routelog", column="routed_at")


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0003_sessions_move_to_their_app"),
    ]

    operations = [migrations.RunPython(partition, unpartition)]
