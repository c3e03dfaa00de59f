from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    label = "channels"
    verbose_name = "Channels"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from channels.privacy import deliveries_erase, deliveries_export
        from profiles import contracts

        contracts.on_customer_erased(deliveries_erase)
        contracts.on_customer_export("deliveries", deliveries_export)
