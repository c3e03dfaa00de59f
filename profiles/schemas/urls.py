from django.urls import path

from profiles.schemas import apis

urlpatterns = [
    path("schemas", apis.SchemaListCreateApi.as_view(), name="schema-list"),
    path("schemas/validate", apis.SchemaValidateApi.as_view(), name="schema-validate"),
    path("schemas/<uuid:schema_id>", apis.SchemaDetailApi.as_view(), name="schema-detail"),
    path("schemas/<uuid:schema_id>/versions", apis.SchemaVersionsApi.as_view(), name="schema-versions"),
    path(
        "schemas/<uuid:schema_id>/versions/<str:version>",
        apis.SchemaVersionDetailApi.as_view(),
        name="schema-version-detail",
    ),
    path(
        "schemas/<uuid:schema_id>/versions/<str:version>/publish",
        apis.SchemaVersionPublishApi.as_view(),
        name="schema-version-publish",
    ),
    path(
        "schemas/<uuid:schema_id>/versions/<str:version>/deprecate",
        apis.SchemaVersionDeprecateApi.as_view(),
        name="schema-version-deprecate",
    ),
    path("sources/<uuid:source_id>/schema-policy", apis.SourceSchemaPolicyApi.as_view(), name="source-schema-policy"),
    path("quarantine", apis.QuarantineListApi.as_view(), name="quarantine-list"),
    path("quarantine/replay", apis.QuarantineReplayApi.as_view(), name="quarantine-replay"),
    path("quarantine/<int:quarantine_id>", apis.QuarantineDetailApi.as_view(), name="quarantine-detail"),
]
