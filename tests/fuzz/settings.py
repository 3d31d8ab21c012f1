"""Hypothesis settings of the fuzz suite: few examples and derandomized by default (deterministic,
part of the normal test run), many and random with KUBEP4_FUZZ_EXAMPLES=N (long runs)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES_ENV = "KUBEP4_FUZZ_EXAMPLES"
_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
             HealthCheck.large_base_example, HealthCheck.filter_too_much]

# the default: deterministic (derandomize: the examples are a function of the test), no database
settings.register_profile("kubep4-fuzz", deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SUPPRESS, print_blob=False)
# a long run: random examples, KUBEP4_FUZZ_EXAMPLES times the default count of each test
settings.register_profile("kubep4-fuzz-long", deadline=None, derandomize=False, database=None,
                          suppress_health_check=_SUPPRESS, print_blob=True)

LONG = int(os.environ.get(EXAMPLES_ENV, "0") or 0)


def fuzz(examples: int) -> settings:
    """Settings for a fuzz test that runs ``examples`` examples in the normal suite; with
    KUBEP4_FUZZ_EXAMPLES=N it runs N instead, randomly."""
    if LONG:
        return settings(settings.get_profile("kubep4-fuzz-long"), max_examples=LONG)
    return settings(settings.get_profile("kubep4-fuzz"), max_examples=examples)
