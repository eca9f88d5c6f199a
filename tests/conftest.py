"""Hypothesis profiles shared by every test module.

* ``ci`` (default): derandomised, a modest number of examples per property,
  so that ``pytest tests`` is fast and reproducible.
* ``thorough``: 1000 examples per property, random. Select it with
  ``SD_HYPOTHESIS_PROFILE=thorough pytest tests/theorems``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("SD_HYPOTHESIS_PROFILE", "ci"))
