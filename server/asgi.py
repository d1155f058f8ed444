"""ASGI entry for uvicorn (``server.asgi:app``): settings from the environment, logging on."""

from __future__ import annotations

from server.app import create_app
from server.logging import configure_logging
from server.settings import get_settings

_settings = get_settings()
configure_logging(_settings.log_level)
app = create_app(_settings)
