"""In-memory providers for testing the loop and metrics around the pure core.

These stand in for our own provider protocol, not for any outside API: the
providers themselves are tested against real servers and emulators.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from reconciler.model import ListingError, LiveSchedule, RegistryError, RegistrySnapshot


class StaticRegistry:
    def __init__(self, snapshot: RegistrySnapshot) -> None:
        self.snapshot = snapshot
        self.error: str | None = None

    def read(self) -> RegistrySnapshot:
        if self.error:
            raise RegistryError(self.error)
        return self.snapshot

    def check(self) -> None:
        self.read()

    def close(self) -> None:
        return None


class StaticTarget:
    def __init__(self, name: str, flavor: str, items: list[LiveSchedule]) -> None:
        self.name = name
        self.flavor = flavor
        self.endpoint = f"memory://{name}"
        self.items = items
        self.error: str | None = None
        self.before_listing: Callable[[], None] | None = None
        self.calls = 0
        self._lock = threading.Lock()

    def list_schedules(self) -> list[LiveSchedule]:
        with self._lock:
            self.calls += 1
        if self.before_listing is not None:
            self.before_listing()
        if self.error:
            raise ListingError(self.error)
        return list(self.items)

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None
