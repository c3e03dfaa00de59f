"""Decisions partitioned by week on `at` (the server's time of the answer).

Kept RETENTION_DECISIONS_DAYS (90 by default), dropped a week at a time. The database primary
key becomes (id, at); the recorder's retry skips rows present with ON CONFLICT (id, at).
"""

from django.db import migrations
from django.utils import timezone

from config.core import partitions


def partition(apps, schema_editor):  # noqa: ANN001, ARG001 - migration signature
    partitions.table_partition(table="journeys_decision", column="at", period="week", now=timezone.now())


def unpartition(apps, schema_editor):  # noqa: ANN001, ARG001
    partitions.table_unpartition(table="journeys_decision", column="at")


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0001_initial"),
    ]

    operations = [migrations.RunPython(partition, unpartition)]
