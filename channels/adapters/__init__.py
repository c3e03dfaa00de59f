"""Inbound adapters: one module per provider format, registered in channels.inbound.RECEIVERS.

A provider's module holds its signature check, its translation into Segment-shaped messages for
`event_ingest` (pure functions: chat, pos, identity and mapping import no Django at all), and,
unless it is a Throughline-signed JSON event (`base.signed_json`), its `receive`, which changes
deliveries and consents only through the channels and profiles services."""
