"""Events partitioned by month on received_at; deduplication moves to EventKey.

The existing table is not copied: it is renamed and attached as the first partition (when it
holds rows), so the migration takes as long as one scan to check the bound, not a rewrite.
Foreign keys pointing at events lose their database constraint first (a partitioned table's
keys include the partition key, and dropped partitions must not be refused by them).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

from config.core import partitions


def keys_from_events(apps, schema_editor):  # noqa: ANN001, ARG001 - migration signature
    """The keys of the events still inside the dedup window, so a retry is refused as before."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO profiles_eventkey (source_id, message_id, received_at, event_id) "
            "SELECT source_id, message_id, received_at, id FROM profiles_event "
            "WHERE received_at >= now() - make_interval(days => %s)",
            [settings.DEDUP_WINDOW_DAYS],
        )


def partition(apps, schema_editor):  # noqa: ANN001, ARG001
    partitions.table_partition(table="profiles_event", column="received_at", period="month", now=timezone.now())


def unpartition(apps, schema_editor):  # noqa: ANN001, ARG001
    partitions.table_unpartition(table="profiles_event", column="received_at")


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0008_source_allowed_origins"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "source_id", "message_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("source_id", models.UUIDField()),
                ("message_id", models.CharField(max_length=200)),
                ("received_at", models.DateTimeField(db_index=True)),
                (
                    "event_id",
                    models.BigIntegerField(help_text="The event stored under this key (gone once its partition is)."),
                ),
            ],
        ),
        migrations.RunPython(keys_from_events, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="event",
            name="event_source_message_uniq",
        ),
        migrations.AlterField(
            model_name="eventoutbox",
            name="event",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                primary_key=True,
                related_name="+",
                serialize=False,
                to="profiles.event",
            ),
        ),
        migrations.AlterField(
            model_name="quarantinedmessage",
            name="event",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="The event a replay made.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="profiles.event",
            ),
        ),
        migrations.RunPython(partition, unpartition),
    ]
