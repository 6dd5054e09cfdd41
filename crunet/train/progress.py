"""Progress: a tqdm bar (images/s, ETA) on a terminal, plain log lines otherwise (tqdm imported only for a bar)."""

from __future__ import annotations

import sys
import time


def _bar_wanted(mode: str) -> bool:
    if mode == "bar":
        return True
    return mode == "auto" and sys.stderr.isatty()


class Progress:
    def __init__(self, total: int, desc: str, mode: str = "auto", log_every: int = 50, enabled: bool = True):
        self.total, self.desc, self.log_every = total, desc, log_every
        self.mode = "none" if not enabled or mode == "none" else ("bar" if _bar_wanted(mode) else "lines")
        self.done, self.images, self.t0 = 0, 0, time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:
                self.mode = "lines"
            else:
                self.bar = tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, leave=False)

    def update(self, images: int, **fields) -> None:
        self.done += 1
        self.images += images
        rate = self.images / max(1e-9, time.perf_counter() - self.t0)
        text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text} {rate:.0f} img/s", refresh=False)
            self.bar.update(1)
        elif self.mode == "lines" and (self.done % self.log_every == 0 or self.done == self.total):
            eta = (self.total - self.done) * (time.perf_counter() - self.t0) / self.done
            print(f"{self.desc} {self.done}/{self.total} {text} {rate:.0f} img/s eta {eta:.0f}s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
