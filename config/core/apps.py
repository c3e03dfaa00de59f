from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "config.core"
    label = "core"
    verbose_name = "Access"

    def ready(self) -> None:
        from config.core import observability, schema  # noqa: F401 - schema registers the OpenAPI auth extension

        observability.configure()
