"""Everything a request handler needs, built once per app: settings, engine, keys, limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine

from crypto import SigningKey
from server.metrics import Metrics
from server.ratelimit import RateLimiter
from server.settings import Settings

__all__ = ["ServerContext"]


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    server_key: SigningKey
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    verify_pool: ThreadPoolExecutor | None = None
    _epoch: bytes | None = None

    def close(self) -> None:
        # The verify pool stays: an app may be started again (tests); idle threads cost nothing.
        self.engine.dispose()
