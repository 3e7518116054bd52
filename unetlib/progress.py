"""Progress of long work: a live bar on a terminal, a few plain lines everywhere else.

Notebooks and logs keep every update a bar makes, so there (and whenever
stderr is not a terminal) :class:`Progress` prints at most ``lines`` lines
per task: at each quarter by default, with the running mean of the loss.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """``update(**values)`` once per step; ``close()`` at the end.

    Parameters
    ----------
    total : int
        Number of steps.
    desc, unit : str
        Label and unit (``"train"``, ``"it"``).
    initial : int
        Steps already done (a resumed run).
    enabled : bool
        False prints nothing.
    lines : int
        Plain lines printed away from a terminal (evenly spaced).
    """

    def __init__(self, total: int, desc: str, unit: str, *, initial: int = 0, enabled: bool = True,
                 lines: int = 4) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.enabled = enabled and total > initial
        self._bar = None
        self._marks = sorted({initial + (total - initial) * k // lines for k in range(1, lines + 1)})
        self._window: list[float] = []
        self._start = time.perf_counter()
        self._initial = initial
        if self.enabled and sys.stderr.isatty():
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)

    def update(self, **values: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        if "loss" in values:
            self._window = (self._window + [values["loss"]])[-50:]
        if self._bar is not None:
            self._bar.update(1)
            if self._window and self.done % 10 == 0:
                self._bar.set_postfix(loss=f"{sum(self._window) / len(self._window):.4f}")
        elif self.done in self._marks:
            self.write(self._line())

    def _line(self) -> str:
        seconds = time.perf_counter() - self._start
        rate = (self.done - self._initial) / seconds if seconds > 0 else 0.0
        loss = f", loss {sum(self._window) / len(self._window):.4f} (mean of last {len(self._window)})" if self._window else ""
        return f"{self.desc}: {self.done}/{self.total} {self.unit} in {seconds:.0f} s ({rate:.2f} {self.unit}/s){loss}"

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        elif self.enabled or text.startswith("interrupted"):
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
