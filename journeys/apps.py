from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "journeys"
    verbose_name = "Journeys"

    def ready(self) -> None:
        from journeys.services import journeys_on_customers_erased, journeys_on_customers_merged
        from profiles import contracts

        contracts.on_customer_erased(journeys_on_customers_erased)
        contracts.on_customers_merged(journeys_on_customers_merged)

        from journeys.segments import segments_on_customers_erased, segments_on_customers_merged

        contracts.on_customer_erased(segments_on_customers_erased)
        contracts.on_customers_merged(segments_on_customers_merged)
