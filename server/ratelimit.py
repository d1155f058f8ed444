"""Fixed-window rate limits keyed by verified identity (device, org), never by IP.

Counters live in process memory: with N uvicorn workers the effective limit is
up to N times the configured one (docs/OPERATIONS.md).  The clock is injected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Per-key request counters over one-minute windows."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, window: float = 60.0
    ) -> None:
        self._clock = clock
        self._window = window
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, bytes], tuple[int, int]] = {}

    def hit(self, scope: str, key: bytes, limit: int) -> int | None:
        """Count one request; return None if allowed, else seconds until the window resets."""
        now = self._clock()
        window = int(now // self._window)
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            start, count = self._counts.get((scope, key), (window, 0))
            if start != window:
                start, count = window, 0
            count += 1
            self._counts[(scope, key)] = (start, count)
        if count > limit:
            return max(1, int((window + 1) * self._window - now + 0.999))
        return None
