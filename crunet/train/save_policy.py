"""When the loop writes a mid-epoch checkpoint: ``--checkpoint-every 500`` (steps), ``30m`` (minutes) or both."""

from __future__ import annotations

import math
import time

from crunet.errors import ConfigError


def parse_every(spec: str) -> tuple[int, float]:
    """'500' -> (500, 0); '30m' -> (0, 30.0); '500,30m' -> (500, 30.0); '' or '0' -> (0, 0) (epoch ends only)."""
    steps, minutes = 0, 0.0
    for part in (p.strip() for p in str(spec).split(",") if p.strip()):
        try:
            if part.endswith("m"):
                minutes = float(part[:-1])
                ok = math.isfinite(minutes) and minutes >= 0
            else:
                steps = int(part)
                ok = steps >= 0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"--checkpoint-every {spec!r}: expected steps (500), minutes (30m) or both "
                              f"(500,30m), each >= 0")
    return steps, minutes


class CheckpointEvery:
    def __init__(self, spec: str):
        self.steps, self.minutes = parse_every(spec)
        self.last, self.saved_step = time.monotonic(), -1

    def due(self, step: int) -> bool:
        by_steps = self.steps > 0 and step > 0 and step % self.steps == 0 and step != self.saved_step
        by_time = self.minutes > 0 and time.monotonic() - self.last >= 60 * self.minutes
        return by_steps or by_time

    def written(self, step: int) -> None:
        self.last, self.saved_step = time.monotonic(), step
