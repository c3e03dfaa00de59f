"""Plugs sessions into the rest of the system; called from OrchestrationConfig.ready()."""


def connect() -> None:
    from orchestration import routing
    from orchestration.sessions import privacy, services, timeline
    from orchestration.sessions import tasks as _tasks  # noqa: F401 - registers the Celery tasks
    from profiles import contracts

    routing.register_handler(services.sessions_from_events)
    contracts.on_customer_erased(privacy.sessions_erase)
    contracts.on_customer_export("sessions", privacy.sessions_export)
    contracts.on_timeline(timeline.KINDS, timeline.sessions_timeline)
