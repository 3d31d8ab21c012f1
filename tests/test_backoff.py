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


async def test_sleep_counts_a_failure_logs_its_delay_then_waits_it_out(monkeypatch):
    happened = []

    async def fake_sleep(d):
        happened.append(("slept", d))
    monkeypatch.setattr("kubep4.backoff.asyncio.sleep", fake_sleep)
    b = Backoff(initial=0.5, cap=1.0, jitter=0.0)
    assert await b.sleep(lambda *a: happened.append(a), "%s failed; retrying in %.1fs", "watch") == 0.5
    assert await b.sleep() == 1.0 and await b.sleep() == 1.0
    assert b.failures == 3
    assert happened == [("%s failed; retrying in %.1fs", "watch", 0.5), ("slept", 0.5),  # logged first
                        ("slept", 1.0), ("slept", 1.0)]
