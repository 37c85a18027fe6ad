"""Progress bars that stay readable in a log file.

On a terminal `progress` is tqdm as usual. Rules redirect stderr to `logs/...`, where tqdm's
`\\r` refreshes would pile up as one huge line of frames; there the bar prints a plain line
(description, n/total, elapsed<ETA, rate) at most every STARFT_LOG_EVERY_S seconds (default 30),
plus a last line when it closes.
"""

from __future__ import annotations

import math
import os
import re
import sys

from tqdm.auto import tqdm as tty_tqdm
from tqdm.std import tqdm as std_tqdm

ENV_EVERY = "STARFT_LOG_EVERY_S"
DEFAULT_EVERY_S = 30.0
# tqdm's cursor moves for stacked bars (tqdm.utils._term_move_up), meaningless in a file
_MOVE_UP = re.compile(r"\x1b\[A")


class _Lines:
    """A stream that turns each tqdm frame ('\\r' + status + padding) into one line.

    Writes holding only control characters or whitespace (the '\\n' after a closed bar, the
    '\\r' that clears one, the cursor moves of stacked bars) have nothing to say in a log: dropped.
    """

    def __init__(self, stream):
        self._stream = stream
        self._last = None

    def write(self, s: str) -> int:
        """Write `s` as one line, unless it holds only control characters and whitespace or repeats the
        last line; returns len(s), as if all of it was written."""
        text = _MOVE_UP.sub("", s).replace("\r", "").strip()
        # a bar whose last update fell on its end draws the same frame again at close
        if text and text != self._last:
            self._stream.write(text + "\n")
            self._last = text
        return len(s)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name):  # encoding, fileno, ... as the wrapped stream's
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._stream, name)


class _LogBar(std_tqdm):
    """tqdm whose every refresh is rate-limited, not only those of update().

    set_postfix(), set_description() and tqdm's monitor thread refresh unconditionally; on a
    terminal that just redraws a line, in a log each would be a new line.
    """

    def __init__(self, *args, **kwargs):
        self._last_line_t = -math.inf  # before super().__init__, which draws the first line
        super().__init__(*args, **kwargs)

    def refresh(self, nolock=False, lock_args=None):
        """tqdm's refresh, skipped (False) within `mininterval` seconds of the last line drawn."""
        now = self._time()
        if now - self._last_line_t < self.mininterval:
            return False
        self._last_line_t = now
        return super().refresh(nolock=nolock, lock_args=lock_args)


def log_every_s() -> float:
    """Seconds between two lines of a bar in a log file (env STARFT_LOG_EVERY_S)."""
    value = os.environ.get(ENV_EVERY)
    if not value:
        return DEFAULT_EVERY_S
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{ENV_EVERY}={value!r}: expected a number of seconds") from None


def progress(iterable=None, *, desc: str | None = None, total: float | None = None, unit: str = "it",
             every_s: float | None = None, file=None, **kwargs):
    """A tqdm bar for `iterable` (or a manual one with `total`), as `tqdm(iterable, desc=..., ...)`.

    `file` defaults to stderr. When it is not a terminal, the bar writes newline-terminated lines
    at most every `every_s` seconds (default: log_every_s()) and always a last line at close,
    even for `leave=False` bars; the terminal-only options (mininterval, dynamic_ncols, ...) are
    then ignored.
    """
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tty_tqdm(iterable, desc=desc, total=total, unit=unit, file=file, **kwargs)
    every = log_every_s() if every_s is None else every_s
    for option in ("mininterval", "maxinterval", "miniters", "dynamic_ncols", "ncols", "leave", "position"):
        kwargs.pop(option, None)
    # maxinterval = every: tqdm's monitor thread would otherwise force a line every 10 s
    # ncols=0: tqdm's stats-only format, no bar drawn in characters
    return _LogBar(iterable, desc=desc, total=total, unit=unit, file=_Lines(stream), mininterval=every,
                   maxinterval=every, ncols=0, leave=True, **kwargs)
