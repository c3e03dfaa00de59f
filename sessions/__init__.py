"""Cross-channel session state: a JSON document per session, kept in Redis (or the database in
embedded mode), written through to PostgreSQL, read, patched, handed off and resumed by channels.

Layout: `merge_patch`, `concurrency` and `documents` are pure (no Django); `models` are the
durable records; `store` the SessionStore protocol and its two implementations; `services` the
writes (with `sessions_from_events`, the routing handler that derives sessions from ingested
events); `selectors` the reads; `apis`/`staff_apis` the HTTP surface; `tasks` ends inactive
sessions; `privacy` and `timeline` are what `apps` registers on profiles' contracts.
"""
