"""JSON Merge Patch (RFC 7386). Pure: no Django.

A patch that is an object merges key by key, `null` removes a key, anything else replaces the
target wholesale (arrays included: RFC 7386 has no array merge).
"""

from typing import Any

MAX_DEPTH = 32


class PatchError(ValueError):
    pass


def json_depth(value: Any, *, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a decoded JSON value; raises PatchError past `limit` without recursing
    further, so a deeply nested body never reaches Python's recursion limit, and for a NUL
    character in a key or string, which PostgreSQL's jsonb cannot store."""
    depth = 0
    level: list[Any] = [value]
    while level:
        if any(isinstance(item, str) and "\x00" in item for item in level):
            raise PatchError("strings may not contain the NUL character (\\u0000)")
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        if depth > limit:
            raise PatchError(f"documents may be nested at most {limit} levels deep")
        level = [
            child
            for item in containers
            for child in ((*item.keys(), *item.values()) if isinstance(item, dict) else item)
        ]
    return depth


def merge_patch(target: Any, patch: Any) -> Any:
    """The result of applying `patch` to `target`; neither argument is modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
