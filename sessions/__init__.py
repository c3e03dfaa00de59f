"""Cross-channel session state: a JSON document per session, kept in Redis (or the database in
embedded mode), written through to PostgreSQL, read, patched, handed off and resumed by channels.

Layout: `merge_patch`, `concurrency` and `documents` are pure (no Django); `models` are the
durable records; `store` the two SessionStore implementations; `services` the writes;
`selectors` the reads; `apis`/`staff_apis` the HTTP surface; `handlers` and `tasks` derive
sessions from ingested events and end inactive ones.
"""
