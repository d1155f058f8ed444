"""Shared test configuration for Sealbox.

Keep this file general: fixtures that belong to one area live next to its tests.

Hypothesis profiles: "ci" (the default; no deadline, 100 examples) and "dev" (quicker
local runs). Choose one with ``HYPOTHESIS_PROFILE=dev`` or ``pytest --hypothesis-profile=dev``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
