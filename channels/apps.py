from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    label = "channels"
    verbose_name = "Channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels.privacy import deliveries_erase, deliveries_export
        from channels.timeline import DELIVERY, deliveries_timeline
        from profiles import contracts

        contracts.on_customer_erased(deliveries_erase)
        contracts.on_customer_export("deliveries", deliveries_export)
        contracts.on_timeline(frozenset({DELIVERY}), deliveries_timeline)
