from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        from orchestration import dispatch, routing
        from profiles import contracts, facade

        contracts.on_events_accepted(dispatch.dispatcher.submit)
        routing.register_handler(routing.record_routed)
        routing.register_handler(facade.consent_apply_events)
        routing.register_handler(facade.computed_traits_on_routed)
        # Segments after computed traits (conditions read them), before journeys (which trigger on
        # Segment Entered and read membership).
        from journeys.segments import register_session_events, segments_on_routed
        from sessions.selectors import LIFECYCLE_EVENTS

        routing.register_handler(segments_on_routed)
        register_session_events(LIFECYCLE_EVENTS)
        # Journeys last: segment membership and computed traits are current when they decide.
        from journeys.routing import journeys_on_routed

        routing.register_handler(journeys_on_routed)

        # Sessions derived from routed events (Session Started, activity keeping them alive).
        from sessions.services import sessions_from_events

        routing.register_handler(sessions_from_events)

        # The live session state and the resume link, for journeys' conditions and templates.
        from journeys import contracts as journey_contracts
        from sessions.journey_context import live_session_state, resume_url

        journey_contracts.register_session_provider(live_session_state)
        journey_contracts.register_link_provider("resume_url", resume_url)
