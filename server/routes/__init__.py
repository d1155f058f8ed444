"""HTTP routers: parse, call one service function, map the result (docs/PROTOCOL.md §8)."""

from __future__ import annotations

from typing import Any

from sync.messages import Problem

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 409, 413, 415, 422, 429)
}
"""OpenAPI description of the problem+json answers every v1 route may give."""
