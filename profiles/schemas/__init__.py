"""The schema registry: versioned JSON Schemas for events, validation at ingestion, and the
quarantine that keeps what they reject until it can be replayed."""
