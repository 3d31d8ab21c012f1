"""kubep4.backoff: delays double from the initial one up to the cap, jittered, and reset."""
from __future__ import annotations

import random

from kubep4.backoff import Backoff


def test_delays_double_up_to_the_cap_without_jitter():
    b = Backoff(initial=0.5, cap=4.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_jitter_stays_within_its_band_and_under_the_cap():
    b = Backoff(initial=1.0, cap=8.0, jitter=0.2, _rng=random.Random(7))
    for base in (1.0, 2.0, 4.0, 8.0, 8.0):
        d = b.next()
        assert base * 0.8 <= d <= min(8.0, base * 1.2)
    spread = {round(Backoff(initial=1.0, jitter=0.2).next(), 6) for _ in range(20)}
    assert len(spread) > 1, "clients hit by the same fault do not retry in lock-step"
