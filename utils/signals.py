"""SIGINT and SIGTERM as requests to stop: one clear line and a clean state instead of a traceback or a silent death.

`StopSignals` is a context manager that installs handlers for both signals and restores the previous ones on
exit; the state lives in that object, not in this module. It has two modes:

- immediate (the default): the signal raises `Interrupted` where the program is, like KeyboardInterrupt but
  also for SIGTERM (a scheduler's "stop now"). Atomic writes remove their temporary file on the way out.
- deferred (`with stop.deferred():`): the signal is only recorded (`stop.signum`); the code polls
  `stop.requested` at points where stopping is clean (the trainer: after an optimiser step) and stops there
  itself. A second signal while deferred stops at once: the user insists.

Forked children (DataLoader workers) inherit the handlers; in them a signal is ignored, their parent decides.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from utils.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _in_finalizer(frame) -> bool:
    """Whether `frame` or a caller is a __del__ or a weakref callback (run by the garbage collector)."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or os.path.basename(code.co_filename) in ("weakref.py", "_weakrefset.py"):
            return True
        frame = frame.f_back
    return False


class StopSignals:
    def __init__(self):
        self.signum: int | None = None
        self._deferring = 0
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return
        first = self.signum is None
        if first:
            self.signum = signum
        if not self._deferring or not first:
            if _in_finalizer(frame):
                # Python prints and drops an exception raised in a finalizer ("Exception ignored in ..."): ask
                # again in a moment, when the interpreter is back in ordinary code.
                threading.Timer(0.05, os.kill, (self._pid, signum)).start()
                self.signum = None if first else self.signum
                return
            raise Interrupted(f"interrupted by {signal_name(signum)}", signum)

    def __enter__(self) -> "StopSignals":
        # Handlers can only be installed from the main thread; elsewhere (a test runner's thread) the
        # signals keep whatever handling they had.
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self):
        """Inside: a first signal is only recorded. On leaving, a signal recorded meanwhile stays requested."""
        self._deferring += 1
        try:
            yield self
        finally:
            self._deferring -= 1

    @contextlib.contextmanager
    def immediate(self):
        """Inside (within `deferred`): a signal raises at once, e.g. during a long evaluation."""
        saved, self._deferring = self._deferring, 0
        try:
            if self.signum is not None:
                raise Interrupted(f"interrupted by {signal_name(self.signum)}", self.signum)
            yield self
        finally:
            self._deferring = saved
