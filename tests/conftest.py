"""Shared test configuration: hypothesis profiles and the ISA-level fixture.

Profiles (python-zstandard / pyroaring style): ``dev`` (default locally),
``ci`` (picked when the CI environment variable is set), ``nightly``; choose
explicitly with ``HYPOTHESIS_PROFILE=...``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("nightly", parent=settings.get_profile("ci"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _isa_levels():
    import wavelet

    best = wavelet.build_info()["isa_max"]
    return list(range(best + 1))


@pytest.fixture(params=_isa_levels(), ids=lambda lv: f"isa{lv}")
def isa(request):
    """Run a test once per kernel level (portable C, then POPCNT+BMI2 where present)."""
    import wavelet

    old = wavelet.set_isa_level(request.param)
    try:
        yield request.param
    finally:
        wavelet.set_isa_level(old)
