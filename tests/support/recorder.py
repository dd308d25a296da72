"""A RequestRecorder for tests: remembers every (operation, code) a provider reports."""

from __future__ import annotations

from collections.abc import Callable


class Recorder:
    def __init__(self, after: Callable[[str, str], None] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.after = after  # called after each attempt is counted: lets a test act between pages

    def __call__(self, operation: str, code: str) -> None:
        self.calls.append((operation, code))
        if self.after is not None:
            self.after(operation, code)

    def codes(self, operation: str) -> list[str]:
        return [code for op, code in self.calls if op == operation]

    def count(self, operation: str, code: str | None = None) -> int:
        return sum(1 for op, c in self.calls if op == operation and (code is None or c == code))
