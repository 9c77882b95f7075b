"""Tests of chatserver.reactor: descriptors, timers, pass hooks, thread-safe calls."""

from __future__ import annotations

import socket
import threading

from chatserver.reactor import Reactor


def test_readers_timers_and_pass_hooks_run_in_order() -> None:
    reactor = Reactor()
    a, b = socket.socketpair()
    log: list[str] = []

    def readable() -> None:
        log.append(f"read {a.recv(10)!r}")
        reactor.call_soon(lambda: log.append("soon"))

    reactor.add_reader(a.fileno(), readable)
    reactor.add_pass_hook(lambda: log.append("hook") if len(log) < 10 else None)
    reactor.call_later(0.05, lambda: log.append("timer"))
    cancelled = reactor.call_later(0.01, lambda: log.append("cancelled"))
    cancelled.cancel()
    reactor.call_later(0.1, reactor.stop)
    b.send(b"x")
    reactor.run()
    assert log[:3] == ["read b'x'", "soon", "hook"]
    assert "timer" in log and "cancelled" not in log
    reactor.close()
    a.close()
    b.close()


def test_a_callback_that_reschedules_itself_runs_once_per_pass() -> None:
    # Bounded work in steps (freeing a large spool) must let every pass serve the descriptors.
    reactor = Reactor()
    a, b = socket.socketpair()
    log: list[str] = []
    steps = iter(range(3))

    def step() -> None:
        n = next(steps, None)
        if n is not None:
            log.append(f"step {n}")
            reactor.call_soon(step)

    reactor.add_reader(a.fileno(), lambda: log.append(f"read {a.recv(10)!r}"))
    reactor.add_pass_hook(lambda: log.append("hook"))
    reactor.call_soon(step)
    reactor.call_later(0.2, reactor.stop)
    b.send(b"x")
    reactor.run()
    assert log[:6] == ["read b'x'", "step 0", "hook", "step 1", "hook", "step 2"]
    reactor.close()
    a.close()
    b.close()


def test_writers_are_watched_only_while_asked() -> None:
    reactor = Reactor()
    a, b = socket.socketpair()
    calls = []

    def writable() -> None:
        calls.append(1)
        reactor.remove_writer(a.fileno())
        reactor.call_later(0.02, reactor.stop)

    reactor.add_writer(a.fileno(), writable)
    reactor.run()
    assert calls == [1]
    reactor.close()
    a.close()
    b.close()


def test_forgetting_a_descriptor_skips_its_pending_callbacks() -> None:
    reactor = Reactor()
    pairs = [socket.socketpair() for _ in range(2)]
    seen = []

    def make(i: int):  # type: ignore[no-untyped-def]
        def cb() -> None:
            seen.append(i)
            pairs[i][0].recv(10)
            reactor.forget(pairs[1 - i][0].fileno())
            reactor.stop()  # ends after this pass

        return cb

    for i, (a, b) in enumerate(pairs):
        reactor.add_reader(a.fileno(), make(i))
        b.send(b"x")
    reactor.run()
    assert len(seen) == 1  # the second became ready in the same pass but was forgotten
    reactor.close()


def test_call_threadsafe_wakes_the_loop() -> None:
    reactor = Reactor()
    thread = threading.Thread(target=reactor.run)
    thread.start()
    reactor.call_threadsafe(reactor.stop)
    thread.join(5)
    assert not thread.is_alive()
    reactor.close()
