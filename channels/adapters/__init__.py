"""Inbound adapters: one module per provider format. Each turns a verified payload into
Segment-shaped messages for `event_ingest`; none touches the database itself."""
