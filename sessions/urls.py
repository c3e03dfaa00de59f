from django.urls import path

from sessions import apis

urlpatterns = [
    path("sessions", apis.SessionStartApi.as_view(), name="sessions-start"),
    path("sessions/resume", apis.SessionResumeApi.as_view(), name="sessions-resume"),
    path("sessions/<uuid:session_id>", apis.SessionApi.as_view(), name="sessions-detail"),
    path("sessions/<uuid:session_id>/end", apis.SessionEndApi.as_view(), name="sessions-end"),
    path("sessions/<uuid:session_id>/handoff", apis.SessionHandoffApi.as_view(), name="sessions-handoff"),
    path("customers/sessions", apis.CustomerSessionsApi.as_view(), name="sessions-customer-list"),
]
