from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    """Ties the apps together: accepted events into dispatch, routing's pipeline
    (orchestration/routing.py, PIPELINE), and the providers journeys read sessions through."""

    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        from journeys import contracts as journey_contracts
        from orchestration import dispatch
        from profiles import contracts
        from sessions.journey_context import live_session_state, resume_url
        from sessions.selectors import LIFECYCLE_EVENTS

        contracts.on_events_accepted(dispatch.dispatcher.submit)
        # Segments re-evaluate on the session lifecycle events only when a segment reads sessions.
        journey_contracts.register_session_events(LIFECYCLE_EVENTS)
        # The live session state and the resume link, for journeys' conditions and templates.
        journey_contracts.register_session_provider(live_session_state)
        journey_contracts.register_link_provider("resume_url", resume_url)
