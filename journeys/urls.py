from django.urls import path

from journeys import apis

urlpatterns = [
    path(
        "journeys/<uuid:journey_id>/versions/<int:number>/simulate",
        apis.VersionSimulateApi.as_view(),
        name="journey-version-simulate",
    ),
    path(
        "journeys/<uuid:journey_id>/versions/<int:number>/publish",
        apis.VersionPublishApi.as_view(),
        name="journey-version-publish",
    ),
    path(
        "journeys/<uuid:journey_id>/versions/<int:number>/preview",
        apis.VersionPreviewApi.as_view(),
        name="journey-version-preview",
    ),
    path("journeys/<uuid:journey_id>/enrollments", apis.JourneyEnrollApi.as_view(), name="journey-enrollments"),
    path("enrollments/<uuid:enrollment_id>", apis.EnrollmentDetailApi.as_view(), name="enrollment-detail"),
    path("customers/<uuid:customer_id>/journeys", apis.CustomerJourneysApi.as_view(), name="customer-journeys"),
]
