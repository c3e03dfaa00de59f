"""Stale copies: sessions whose Redis copy a write could neither refresh nor drop (sessions.store)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cxsessions", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="StaleCopy",
            fields=[
                ("session_id", models.UUIDField(primary_key=True, serialize=False)),
                (
                    "customer_id",
                    models.UUIDField(help_text="The session's customer, whose index of active sessions is stale too."),
                ),
                ("since", models.DateTimeField(help_text="When the last write that left it stale recorded it.")),
            ],
            options={
                "db_table": "sessions_stalecopy",
            },
        ),
    ]
