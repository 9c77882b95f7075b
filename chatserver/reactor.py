"""A single-threaded reactor over `selectors` (epoll on Linux): file descriptors to callbacks,
timers, and end-of-pass hooks.

One pass of `Reactor.run`: wait for readiness (until the next timer at most), call the reader and
writer callbacks of every ready descriptor, then the end-of-pass hooks (the room flushes the
relays it collected during the pass into one write per recipient), then the timers that are due.
Callbacks must never block.

Signals (SIGINT, SIGTERM) are turned into calls on the loop through a wakeup socket, so a
handler never runs in the middle of a callback.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Reactor", "Timer"]

log = logging.getLogger("chatserver")

Callback = Callable[[], None]


class Timer:
    """A callback scheduled by `Reactor.call_later`; `cancel` stops it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    """The event loop. ``time()`` is monotonic seconds."""

    time = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        # fd -> [reader, writer]; the selector's data for that fd is the same list
        self._handlers: dict[int, list[Callback | None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._pass_hooks: list[Callback] = []
        self._soon: list[Callback] = []
        self._running = False
        self.errors = 0  # exceptions caught by the loop itself
        self._wakeup_r: socket.socket | None = None
        self._signal_handlers: dict[int, Callback] = {}
        self._signals_seen: list[int] = []
        self._threadsafe: deque[Callback] = deque()
        self._poke_r, self._poke_w = socket.socketpair()
        self._poke_r.setblocking(False)
        self._poke_w.setblocking(False)
        self.add_reader(self._poke_r.fileno(), self._read_poke)

    # --- Descriptors -------------------------------------------------------------------------

    def _update(self, fd: int) -> None:
        handlers = self._handlers[fd]
        mask = (selectors.EVENT_READ if handlers[0] else 0) | (
            selectors.EVENT_WRITE if handlers[1] else 0
        )
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if mask:
                self._selector.register(fd, mask, handlers)
            return
        if not mask:
            self._selector.unregister(fd)
            del self._handlers[fd]
        elif key.events != mask:
            self._selector.modify(fd, mask, handlers)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._handlers.setdefault(fd, [None, None])[0] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if fd in self._handlers:
            self._handlers[fd][0] = None
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._handlers.setdefault(fd, [None, None])[1] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if fd in self._handlers:
            self._handlers[fd][1] = None
            self._update(fd)

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` entirely (before closing it)."""
        handlers = self._handlers.pop(fd, None)
        if handlers is not None:
            handlers[0] = handlers[1] = None  # an event already selected this pass is skipped
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    # --- Timers and hooks ----------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(self.time() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._sequence), timer))
        return timer

    def call_soon(self, callback: Callback) -> None:
        """Run ``callback`` at the end of this pass (before the pass hooks); if it is called
        from such a callback, at the end of the next pass (which then does not wait)."""
        self._soon.append(callback)

    def add_pass_hook(self, callback: Callback) -> None:
        """Run ``callback`` at the end of every pass."""
        self._pass_hooks.append(callback)

    def on_signal(self, signum: int, callback: Callback) -> None:
        """Call ``callback`` on the loop when ``signum`` arrives."""
        if self._wakeup_r is None:
            self._wakeup_r, wakeup_w = socket.socketpair()
            self._wakeup_r.setblocking(False)
            wakeup_w.setblocking(False)
            self._wakeup_w = wakeup_w
            signal.set_wakeup_fd(wakeup_w.fileno(), warn_on_full_buffer=False)
            self.add_reader(self._wakeup_r.fileno(), self._read_wakeup)
        self._signal_handlers[signum] = callback
        signal.signal(signum, self._note_signal)

    def _note_signal(self, signum: int, frame: object) -> None:
        self._signals_seen.append(signum)

    def _read_wakeup(self) -> None:
        assert self._wakeup_r is not None
        try:
            while self._wakeup_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        seen, self._signals_seen = self._signals_seen, []
        for signum in seen:
            self._signal_handlers[signum]()

    # --- Running -----------------------------------------------------------------------------

    def call_threadsafe(self, callback: Callback) -> None:
        """Run ``callback`` on the loop, from any thread (tests use it to stop a server)."""
        self._threadsafe.append(callback)
        with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
            self._poke_w.send(b"\0")

    def _read_poke(self) -> None:
        try:
            while self._poke_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._threadsafe:
            self._threadsafe.popleft()()

    def stop(self) -> None:
        """Leave `run` at the end of the current pass."""
        self._running = False

    def run(self) -> None:
        self._running = True
        select = self._selector.select
        timers = self._timers
        read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
        while self._running:
            timeout = None
            if self._soon:
                timeout = 0.0
            elif timers:
                timeout = max(0.0, timers[0][0] - self.time())
            try:
                for key, mask in select(timeout):
                    handlers = key.data
                    if mask & read and handlers[0] is not None:
                        handlers[0]()
                    if mask & write and handlers[1] is not None:
                        handlers[1]()
                if self._soon:
                    # Only what was scheduled before this point: a callback that schedules
                    # itself again (a step of bounded work) runs once per pass, not in a loop
                    # that would serve no one until it is done.
                    soon, self._soon = self._soon, []
                    for callback in soon:
                        callback()
                for hook in self._pass_hooks:
                    hook()
                if timers:
                    now = self.time()
                    while timers and timers[0][0] <= now:
                        timer = heapq.heappop(timers)[2]
                        if not timer.cancelled:
                            timer.callback()
            except Exception:
                # Last resort: sessions guard their own work; anything reaching here is a bug
                # outside them. Log it, count it, keep serving everyone else.
                self.errors += 1
                log.exception("internal error in the event loop")

    def close(self) -> None:
        if self._wakeup_r is not None:
            signal.set_wakeup_fd(-1)
            for signum in self._signal_handlers:
                signal.signal(signum, signal.SIG_DFL)
            self._wakeup_r.close()
            self._wakeup_w.close()
        self._poke_r.close()
        self._poke_w.close()
        self._selector.close()
