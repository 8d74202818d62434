"""What a process derives from an object it shares between requests, kept with it.

A date's cached seats are decoded once per process (concerts.seatcache) and then
read by every fan until the next write on the date, so what each request would
derive from them (the date's Availability, its rendered answer) is derived once
and kept beside the object it came from.
"""

from __future__ import annotations

from typing import Any


class KeptFor:
    """A bounded memo keyed by an object's identity. An entry keeps its object
    alive, so while it lives no other object can have that id; a full memo starts
    over. Thread-safe as far as the GIL makes dict reads and writes atomic: at worst
    a value is derived twice."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept: dict[int, tuple[object, Any]] = {}

    def get(self, obj: object) -> Any:
        """What was kept for `obj`, or None."""
        hit = self._kept.get(id(obj))
        return hit[1] if hit is not None and hit[0] is obj else None

    def keep(self, obj: object, value: Any) -> Any:
        if len(self._kept) >= self.size:
            self._kept.clear()
        self._kept[id(obj)] = (obj, value)
        return value

    def __len__(self) -> int:
        return len(self._kept)
