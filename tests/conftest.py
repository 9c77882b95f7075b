"""Shared pytest configuration.

Hypothesis runs without per-example deadlines: this machine is shared and noisy, and a deadline
would turn load into flaky failures. Set HYPOTHESIS_PROFILE=thorough for a longer local run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("default"),
    max_examples=5000,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
