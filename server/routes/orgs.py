"""Organisations, rosters, invites, enrollment, devices."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
