"""Rate-limit counter table (SQLModel ``table=True`` classes only; PROTOCOL §11.1).

One row per (scope, key, one-minute period): the requests counted so far. Keys are the
verified device id or organisation id, never an address. Rows older than the previous
period are pruned. On PostgreSQL the table is UNLOGGED (migrations/versions/
0003_rate_counters.py): counters need no crash safety, and a commit that touched only
unlogged tables does not wait for the WAL to reach the disk.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, LargeBinary
from sqlmodel import Field, SQLModel

import server.tables  # noqa: F401  (first: its naming convention applies here too)

__all__ = ["RateCounter"]


class RateCounter(SQLModel, table=True):
    __tablename__ = "rate_counters"
    scope: str = Field(primary_key=True, max_length=32)
    key: bytes = Field(sa_type=LargeBinary, primary_key=True)
    period: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    hits: int = Field(sa_type=BigInteger)
