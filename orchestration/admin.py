from orchestration.sessions import admin as sessions_admin  # noqa: F401 - registers the session admins
