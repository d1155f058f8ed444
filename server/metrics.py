"""Prometheus metrics, one registry per app (so tests may build many apps).

Labels are route templates and statuses only: never ids, addresses or keys.
With several uvicorn workers each worker exposes its own counters
(docs/OPERATIONS.md).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

__all__ = ["Metrics"]


class Metrics:
    def __init__(self, multiproc_dir: Path | None = None) -> None:
        self.multiproc_dir = multiproc_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sealbox_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sealbox_request_seconds",
            "Request latency by route template.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.push_items = Counter(
            "sealbox_push_items_total",
            "Pushed envelopes by per-item result status.",
            ["status"],
            registry=self.registry,
        )
        self.report_heads = Histogram(
            "sealbox_report_heads",
            "Number of heads of each report touched by a push (more than 1 = conflict).",
            registry=self.registry,
            buckets=(1, 2, 3, 5, 10, 50),
        )
        self.edge_refused = Counter(
            "sealbox_edge_refused_total",
            "Requests refused at the HTTP edge before the app (server/edge.py), by rule.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "sealbox_rate_limited_total",
            "Requests refused with 429, by scope.",
            ["scope"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        if self.multiproc_dir is not None:
            # Several uvicorn workers: sum the per-process files prometheus_client writes.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(self.multiproc_dir))  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
