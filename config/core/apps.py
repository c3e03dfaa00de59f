from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "config.core"
    label = "core"
    verbose_name = "Access"

    def ready(self) -> None:
        from config.core import schema  # noqa: F401 - registers the OpenAPI auth extension
