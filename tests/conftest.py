"""Hypothesis profiles shared by every test module, chosen with hypothesis' own option
``pytest --hypothesis-profile NAME``.

* ``dev`` (default): random examples, a modest number per property, so that local
  runs keep exploring new inputs.
* ``ci``: the same number of examples, derandomised, so that a CI run is reproducible;
  ``.ci/run`` and the mutation run select it.
* ``thorough``: 1000 random examples per property (``pytest tests/theorems
  --hypothesis-profile thorough``).
"""

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile("dev")
