"""The session models now belong to the sessions app (cxsessions 0001). Their tables stay as
they are: this removes them from orchestration's state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0002_sessions"),
        ("cxsessions", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="ResumeToken"),
                migrations.DeleteModel(name="SessionContinuation"),
                migrations.DeleteModel(name="SessionRecord"),
            ],
        ),
    ]
