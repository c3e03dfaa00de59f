"""A session as channels see it, and as the Redis copy stores it. Pure: no Django.

The stored form carries what authorization needs (customer and linked sources), so a read
from Redis answers in one round trip; the public form leaves those out.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson


class EndReason:
    ENDED = "ended"  # a channel or staff ended it
    INACTIVE = "inactive"  # no activity within the channel's timeout
    SUPERSEDED = "superseded"  # another session was resumed onto its channel


class Outcome:
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    CHOICES = (COMPLETED, ABANDONED)


@dataclass(frozen=True, slots=True)
class SessionDoc:
    id: str
    customer_id: str
    channel: str
    started_channel: str
    device: str
    version: int
    state: dict[str, Any]
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None
    end_reason: str = ""
    outcome: str = ""
    ended_channel: str = ""
    channels: tuple[str, ...] = ()
    source_ids: tuple[str, ...] = ()
    user_id: str = ""
    anonymous_id: str = ""

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def linked_to(self, source_id: object) -> bool:
        return str(source_id) in self.source_ids

    def evolve(self, **changes: Any) -> "SessionDoc":
        return replace(self, **changes)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "startedChannel": self.started_channel,
            "channels": list(self.channels),
            "device": self.device,
            "version": self.version,
            "active": self.active,
            "state": self.state,
            "startedAt": _iso(self.started_at),
            "lastSeenAt": _iso(self.last_seen_at),
            "endedAt": _iso(self.ended_at) if self.ended_at else None,
            "endReason": self.end_reason or None,
            "outcome": self.outcome or None,
        }

    def staff(self) -> dict[str, Any]:
        return {
            **self.public(),
            "customerId": self.customer_id,
            "sourceIds": list(self.source_ids),
            "endedChannel": self.ended_channel or None,
            "userId": self.user_id or None,
            "anonymousId": self.anonymous_id or None,
        }

    def dumps(self) -> bytes:
        """The stored form: compact JSON, datetimes as ISO 8601."""
        return orjson.dumps(
            {
                "id": self.id,
                "c": self.customer_id,
                "ch": self.channel,
                "sch": self.started_channel,
                "dev": self.device,
                "v": self.version,
                "s": self.state,
                "st": _iso(self.started_at),
                "ls": _iso(self.last_seen_at),
                "en": _iso(self.ended_at) if self.ended_at else None,
                "er": self.end_reason,
                "o": self.outcome,
                "ech": self.ended_channel,
                "chs": self.channels,
                "src": self.source_ids,
                "u": self.user_id,
                "a": self.anonymous_id,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> "SessionDoc":
        d = orjson.loads(raw)
        return cls(
            id=d["id"],
            customer_id=d["c"],
            channel=d["ch"],
            started_channel=d["sch"],
            device=d["dev"],
            version=d["v"],
            state=d["s"],
            started_at=_parse(d["st"]),
            last_seen_at=_parse(d["ls"]),
            ended_at=_parse(d["en"]) if d["en"] else None,
            end_reason=d["er"],
            outcome=d["o"],
            ended_channel=d["ech"],
            channels=tuple(d["chs"]),
            source_ids=tuple(d["src"]),
            user_id=d["u"],
            anonymous_id=d["a"],
        )


def state_size(state: Any) -> int:
    """Bytes of the state as compact JSON: what the size limit is measured on."""
    return len(orjson.dumps(state))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)
