from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Orchestration"

    def ready(self) -> None:
        from orchestration import dispatch, routing
        from profiles import contracts

        contracts.on_events_accepted(dispatch.dispatcher.submit)
        routing.register_handler(routing.record_routed)
