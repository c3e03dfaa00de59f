"""Consent and privacy: what a person agreed to, and their rights to see and erase their data.

Layout: `conventions` and `hashing` are pure (no ORM); `models` are registered under the profiles
app (imported by profiles.models); `services` write (consent, erase, audit); `selectors` read
(consent state, suppression, export); `apis` the HTTP surface; `admin` the admin actions.
"""
