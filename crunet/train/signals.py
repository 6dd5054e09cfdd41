"""Stop requests: SIGTERM (pre-emption: SLURM, Kubernetes, torchrun), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's
warning signal) only set a flag; the loop sees it at the next step boundary, writes a checkpoint and stops.

A second SIGINT while a stop is pending raises KeyboardInterrupt at once (the user insists).
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")


class TrainingInterrupted(KeyboardInterrupt):
    """A signal (or Ctrl-C) stopped the run; the message names the resumable checkpoint and how to continue."""


class StopRequests:
    """Context manager: installs the handlers (main thread only) and restores the previous ones on exit."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        self.requested = self.requested or name
