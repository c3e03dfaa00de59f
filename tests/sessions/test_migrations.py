"""The sessions app took its models from orchestration by a state-only move: a database migrated
before the move keeps its session tables, their rows and the models' content types."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sessions.models import SessionRecord
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_MOVE = [("orchestration", "0002_sessions"), ("cxsessions", None)]
MODELS = ["sessionrecord", "resumetoken", "sessioncontinuation"]


def _migrate(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate the test database to `targets`; returns the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    applied = [(app, name) for app, name in targets if name is not None]
    return executor.loader.project_state(applied).apps


def _latest() -> list[tuple[str, str | None]]:
    return list(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.fixture
def before_the_move() -> Iterator[Any]:
    """The database as the previous code left it; migrated forward again whatever the test did."""
    latest = _latest()
    try:
        yield _migrate(BEFORE_THE_MOVE)
    finally:
        _migrate(latest)
        ContentType.objects.clear_cache()


def test_a_session_written_before_the_move_reads_back_through_the_sessions_app(before_the_move: Any) -> None:
    customer: Any = CustomerFactory()
    old_model = before_the_move.get_model("orchestration", "SessionRecord")
    now = timezone.now()
    written = old_model.objects.create(
        customer_id=customer.id,
        channel="web",
        started_channel="web",
        state={"cart": {"sku": "A1"}},
        started_at=now,
        last_seen_at=now,
    )
    _migrate(_latest())
    assert SessionRecord.objects.get(id=written.id).state == {"cart": {"sku": "A1"}}


def test_the_models_content_types_move_with_them(before_the_move: Any) -> None:
    """Permissions and the admin's history point at the content type: renamed, not replaced."""
    ContentType.objects.filter(model__in=MODELS).delete()
    ids = {model: ContentType.objects.create(app_label="orchestration", model=model).id for model in MODELS}
    _migrate(_latest())
    assert dict(ContentType.objects.filter(app_label="cxsessions", model__in=MODELS).values_list("model", "id")) == ids
