"""Everything a request handler needs, built once per app: settings, engine, keys, limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine

from crypto import SigningKey
from server.metrics import Metrics
from server.ratelimit import RateLimiter, make_limiter
from server.settings import Settings

__all__ = ["ServerContext"]


@dataclass
class ServerContext:
    settings: Settings
    engine: Engine
    server_key: SigningKey
    metrics: Metrics = field(default_factory=Metrics)
    verify_pool: ThreadPoolExecutor | None = None
    _epoch: bytes | None = None
    # Shared by every worker and node: Redis or the database (server/ratelimit.py).
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = make_limiter(self.settings, self.engine)

    def close(self) -> None:
        # The verify pool stays: an app may be started again (tests); idle threads cost nothing.
        self.limiter.close()
        self.engine.dispose()
