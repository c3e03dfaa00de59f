from django.urls import path

from sessions import staff_apis

urlpatterns = [
    path("sessions", staff_apis.StaffSessionListApi.as_view(), name="staff-sessions"),
    path("sessions/kpis", staff_apis.StaffSessionKpisApi.as_view(), name="staff-sessions-kpis"),
    path("sessions/<uuid:session_id>", staff_apis.StaffSessionApi.as_view(), name="staff-sessions-detail"),
    path("sessions/<uuid:session_id>/end", staff_apis.StaffSessionEndApi.as_view(), name="staff-sessions-end"),
    path("sessions/<uuid:session_id>/tokens", staff_apis.StaffSessionTokensApi.as_view(), name="staff-sessions-tokens"),
    path(
        "sessions/<uuid:session_id>/tokens/revoke",
        staff_apis.StaffSessionTokensRevokeApi.as_view(),
        name="staff-sessions-tokens-revoke",
    ),
    path(
        "session-tokens/<uuid:token_id>/revoke",
        staff_apis.StaffTokenRevokeApi.as_view(),
        name="staff-session-token-revoke",
    ),
]
