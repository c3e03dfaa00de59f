"""identify traits as operations: `$set` (and plain keys), `$set_once`, `$unset`.

Pure functions: no Django, no database. Several identifies for one customer in a batch fold into
one operation, applied in a single statement.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TraitOps:
    set: dict[str, Any] = field(default_factory=dict)
    set_once: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    set_at: str = ""

    def __bool__(self) -> bool:
        return bool(self.set or self.set_once or self.unset)


def parse(traits: dict[str, Any]) -> TraitOps:
    ops = TraitOps()
    for key, value in traits.items():
        if key == "$set" and isinstance(value, dict):
            ops.set.update(value)
        elif key == "$set_once" and isinstance(value, dict):
            ops.set_once.update(value)
        elif key == "$unset" and isinstance(value, list):
            ops.unset.extend(str(name) for name in value)
        elif not key.startswith("$"):
            ops.set[key] = value
    for key in ops.unset:
        ops.set.pop(key, None)
    return ops


def fold(earlier: TraitOps, later: TraitOps) -> TraitOps:
    """One operation with the effect of `earlier` then `later`."""
    result = TraitOps(
        set={k: v for k, v in earlier.set.items() if k not in later.unset},
        set_once=dict(earlier.set_once),
        unset=[k for k in earlier.unset if k not in later.set and k not in later.set_once],
        set_at=max(earlier.set_at, later.set_at),
    )
    for key, value in later.set_once.items():
        result.set_once.setdefault(key, value)
    result.set.update(later.set)
    result.unset.extend(k for k in later.unset if k not in result.unset)
    for key in later.unset:
        result.set_once.pop(key, None)
    return result


def apply(
    traits: dict[str, Any], times: dict[str, str], once_keys: list[str], ops: TraitOps
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The profile's (traits, trait_times, once_keys) after the operation."""
    traits, times = dict(traits), dict(times)
    for key, value in ops.set_once.items():
        if key not in traits:
            traits[key] = value
            times[key] = ops.set_at
    for key, value in ops.set.items():
        traits[key] = value
        times[key] = ops.set_at
    for key in ops.unset:
        traits.pop(key, None)
        times.pop(key, None)
    return traits, times, sorted(set(once_keys) | set(ops.set_once))
