"""Exponential backoff with jitter: the one retry-delay mechanism of every KubeP4 loop.

    b = Backoff(initial=0.5, cap=60)
    delay = b.next()   # ~0.5 s, then ~1, ~2 ... up to 60, each with +/- jitter
    b.reset()          # after a success

    except Unavailable as e:   # a retry loop's failure branch: log the delay, then wait it out
        await b.sleep(log.warning, "watch failed: %s; retrying in %.1fs", e)

Jitter spreads the retries of many clients hit by the same fault (a restarted etcd, a
rebooted switch) so they do not come back in lock-step.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    cap: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    failures: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def peek(self) -> float:
        """The delay the next failure will get, without jitter."""
        return min(self.cap, self.initial * self.factor ** self.failures)

    def next(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        base = self.peek()
        self.failures += 1
        return min(self.cap, base * (1 + self.jitter * (2 * self._rng.random() - 1)))

    def reset(self) -> None:
        self.failures = 0

    async def sleep(self, log: Callable[..., object] | None = None, msg: str = "", *args) -> float:
        """Count one more failure and wait out its delay (returned); first ``log(msg, *args, delay)``
        when ``log`` is given, so the message can say when the next try comes."""
        delay = self.next()
        if log is not None:
            log(msg, *args, delay)
        await asyncio.sleep(delay)
        return delay
