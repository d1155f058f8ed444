"""Push, changes feed, report graphs, receipts."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
