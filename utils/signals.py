"""SIGINT and SIGTERM as requests to stop: one clear line and a clean state instead of a traceback or a silent death.

`StopSignals` is a context manager that installs handlers for both signals and restores the previous ones on
exit; the state lives in that object, not in this module. It has two modes:

- immediate (the default): the signal raises `Interrupted` where the program is, like KeyboardInterrupt but
  also for SIGTERM (a scheduler's "stop now"). Atomic writes remove their temporary file on the way out.
- deferred (`with stop.deferred():`): the signal is only recorded (`stop.signum`); the code polls
  `stop.requested` at points where stopping is clean (the trainer: after an optimiser step) and stops there
  itself. A second signal while deferred stops at once: the user insists. The same signal again within
  SAME_REQUEST_SECONDS is the same request delivered twice, not insistence: a signal sent to the whole process
  group under torchrun reaches each rank directly and once more forwarded by the launcher.

DataLoader workers: a terminal's Ctrl-C and a scheduler's SIGTERM go to the whole process group, workers
included, and torch's worker sets its own SIGTERM handler, which kills it (the main process then fails with
"DataLoader worker (pid ...) is killed by signal: Terminated" wherever it is). `WorkerLoader`'s workers ignore
both signals, so the main process alone decides; `worker_deaths_at_fetch` keeps a worker that died anyway
from raising in the middle of an optimiser step.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time

from torch.utils.data import DataLoader

from utils.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAME_REQUEST_SECONDS = 1.0  # torchrun forwards a signal within milliseconds


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
        self._first_at = 0.0
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
            self.signum, self._first_at = signum, time.monotonic()
        elif signum == self.signum and time.monotonic() - self._first_at < SAME_REQUEST_SECONDS:
            return
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


def _ignore_stop_signals(worker_id: int, then=None) -> None:
    """A DataLoader worker's first act: ignore SIGINT and SIGTERM (dropping one that came while they were
    blocked), then run the loader's own worker_init_fn."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    if then is not None:
        then(worker_id)


class WorkerLoader(DataLoader):
    """A torch DataLoader whose worker processes ignore SIGINT and SIGTERM: the main process decides what a
    signal means, and tells its workers to finish (or kills them) itself.

    Both signals are blocked while the workers start: between its fork and its worker_init_fn a worker runs
    torch's SIGTERM handler, which would kill it; blocked, the signal stays pending and is discarded once the
    worker ignores it. The main process gets its own copy when it unblocks them.
    """

    def __init__(self, *args, worker_init_fn=None, **kwargs):
        super().__init__(*args, worker_init_fn=functools.partial(_ignore_stop_signals, then=worker_init_fn),
                         **kwargs)

    def __iter__(self):
        if self.num_workers == 0:
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            return super().__iter__()  # forks the workers (the pin-memory thread, too, keeps them blocked)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def is_worker_death(error: BaseException) -> bool:
    """Whether `error` is torch's report of a DataLoader worker that died (killed, or exited unexpectedly)."""
    return isinstance(error, RuntimeError) and str(error).startswith("DataLoader worker (pid")


@contextlib.contextmanager
def worker_deaths_at_fetch():
    """Inside, a DataLoader worker that dies is reported by the loader when the main process fetches a batch
    (it polls its workers while it waits), not by torch's SIGCHLD handler, which raises wherever the main
    process is: in the middle of an optimiser step, whose state could then not be saved. Enter it after the
    loader's iterator exists: torch installs that handler when the first one is made."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the default ignores SIGCHLD and reaps nothing
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL if previous is None else previous)
