"""Sessions become an app of their own (label cxsessions; django.contrib.sessions holds
"sessions"). The models and their tables were created by orchestration 0002 and keep their
tables and data: this migration only adds the models to this app's state (orchestration 0003
removes them from orchestration's), and moves their content types, so permissions granted on
them and the admin's history of them stay attached.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models

MODELS = ("sessionrecord", "resumetoken", "sessioncontinuation")


def _move_content_types(apps, schema_editor, source, target):
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    taken = set(rows.filter(app_label=target, model__in=MODELS).values_list("model", flat=True))
    rows.filter(app_label=source, model__in=set(MODELS) - taken).update(app_label=target)


def content_types_forward(apps, schema_editor):
    _move_content_types(apps, schema_editor, "orchestration", "cxsessions")


def content_types_backward(apps, schema_editor):
    _move_content_types(apps, schema_editor, "cxsessions", "orchestration")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("orchestration", "0002_sessions"),
        ("profiles", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="SessionRecord",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        (
                            "channel",
                            models.CharField(
                                choices=[
                                    ("web", "Web"),
                                    ("mobile", "Mobile"),
                                    ("email", "Email"),
                                    ("sms", "Sms"),
                                    ("chat", "Chat"),
                                    ("pos", "Pos"),
                                    ("server", "Server"),
                                ],
                                help_text="The channel it is on now.",
                                max_length=16,
                            ),
                        ),
                        (
                            "started_channel",
                            models.CharField(
                                choices=[
                                    ("web", "Web"),
                                    ("mobile", "Mobile"),
                                    ("email", "Email"),
                                    ("sms", "Sms"),
                                    ("chat", "Chat"),
                                    ("pos", "Pos"),
                                    ("server", "Server"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("device", models.CharField(blank=True, default="", max_length=200)),
                        (
                            "source_ids",
                            models.JSONField(
                                default=list,
                                help_text="Sources linked to it: the one that started it and each resumer.",
                            ),
                        ),
                        (
                            "channels",
                            models.JSONField(default=list, help_text="Every channel it has been on, in order."),
                        ),
                        ("user_id", models.CharField(blank=True, default="", max_length=512)),
                        ("anonymous_id", models.CharField(blank=True, default="", max_length=512)),
                        (
                            "origin",
                            models.CharField(
                                choices=[("api", "api"), ("events", "events")], default="api", max_length=8
                            ),
                        ),
                        ("state", models.JSONField(blank=True, default=dict)),
                        ("version", models.PositiveBigIntegerField(default=1)),
                        ("started_at", models.DateTimeField()),
                        ("last_seen_at", models.DateTimeField()),
                        ("ended_at", models.DateTimeField(blank=True, null=True)),
                        ("end_reason", models.CharField(blank=True, default="", max_length=16)),
                        ("outcome", models.CharField(blank=True, default="", max_length=16)),
                        ("ended_channel", models.CharField(blank=True, default="", max_length=16)),
                        (
                            "customer",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="profiles.customer"
                            ),
                        ),
                    ],
                    options={
                        "db_table": "orchestration_session",
                    },
                ),
                migrations.CreateModel(
                    name="SessionContinuation",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        (
                            "kind",
                            models.CharField(
                                choices=[("resumed", "Resumed"), ("started_over", "Started Over")], max_length=16
                            ),
                        ),
                        ("from_channel", models.CharField(max_length=16)),
                        ("to_channel", models.CharField(max_length=16)),
                        (
                            "via",
                            models.CharField(
                                blank=True, default="", help_text="token or identity, when resumed.", max_length=16
                            ),
                        ),
                        ("created_at", models.DateTimeField(db_index=True)),
                        (
                            "customer",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE, related_name="+", to="profiles.customer"
                            ),
                        ),
                        (
                            "from_session",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="cxsessions.sessionrecord",
                            ),
                        ),
                        (
                            "to_session",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="cxsessions.sessionrecord",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "orchestration_session_continuation",
                    },
                ),
                migrations.CreateModel(
                    name="ResumeToken",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("token_hash", models.CharField(editable=False, max_length=64, unique=True)),
                        ("prefix", models.CharField(editable=False, max_length=12)),
                        ("created_at", models.DateTimeField()),
                        ("expires_at", models.DateTimeField()),
                        ("used_at", models.DateTimeField(blank=True, null=True)),
                        ("revoked_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "issued_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="profiles.source",
                            ),
                        ),
                        (
                            "used_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="profiles.source",
                            ),
                        ),
                        (
                            "session",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="tokens",
                                to="cxsessions.sessionrecord",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "orchestration_resume_token",
                    },
                ),
                migrations.AddIndex(
                    model_name="sessionrecord",
                    index=models.Index(fields=["customer", "-last_seen_at"], name="orch_session_customer"),
                ),
                migrations.AddIndex(
                    model_name="sessionrecord",
                    index=models.Index(
                        condition=models.Q(("ended_at", None)),
                        fields=["channel", "last_seen_at"],
                        name="orch_session_active",
                    ),
                ),
                migrations.AddIndex(
                    model_name="sessionrecord",
                    index=models.Index(fields=["started_at"], name="orch_session_started"),
                ),
            ],
        ),
        migrations.RunPython(content_types_forward, content_types_backward),
    ]
