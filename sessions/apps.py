from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # Not "sessions": that label is django.contrib.sessions' (the admin's login sessions), and
    # two installed apps cannot share one. The label names the models ("cxsessions.SessionRecord"),
    # their migrations and their admin URLs; the tables keep the names they had under
    # orchestration (each model's db_table), so moving the app moved no data.
    label = "cxsessions"
    verbose_name = "Cross-channel sessions"

    def ready(self) -> None:
        """What sessions give profiles through its contracts. Routing's handler and journeys'
        providers are plugged in by orchestration, which ties the apps together."""
        from profiles import contracts
        from sessions import privacy, timeline
        from sessions import tasks as _tasks  # noqa: F401 - registers the Celery tasks

        contracts.on_customer_erased(privacy.sessions_erase)
        contracts.on_customer_export("sessions", privacy.sessions_export)
        contracts.on_timeline(timeline.KINDS, timeline.sessions_timeline)
