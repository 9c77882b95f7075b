"""Tests of chatserver.transports: write now or queue, scatter-gather, files by reference,
closing with and without flushing, and the callback order."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from chatserver.files import SpoolManager
from chatserver.reactor import Reactor
from chatserver.transports import SocketTransport


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data", data))

    def eof_received(self) -> None:
        self.calls.append(("eof", None))

    def connection_lost(self, reason: str) -> None:
        self.calls.append(("lost", reason))


def pair() -> tuple[Reactor, SocketTransport, socket.socket, Recorder]:
    reactor = Reactor()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport = SocketTransport(reactor, ours, "test")
    recorder = Recorder()
    transport.start(recorder)
    return reactor, transport, theirs, recorder


def run_until(reactor: Reactor, done, limit: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = reactor.time() + limit
    active = [True]  # hooks cannot be removed: this one goes inert when its run ends

    def check() -> None:
        if active[0] and (done() or reactor.time() > deadline):
            reactor.stop()

    reactor.add_pass_hook(check)
    timer = reactor.call_later(limit, reactor.stop)
    reactor.run()
    active[0] = False
    timer.cancel()


def collect(reactor: Reactor, sock: socket.socket) -> bytearray:
    """Everything ``sock`` receives while the reactor runs (it is just another reader)."""
    received = bytearray()
    sock.setblocking(False)

    def readable() -> None:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            reactor.remove_reader(sock.fileno())
        received.extend(data)

    reactor.add_reader(sock.fileno(), readable)
    return received


def test_writes_go_out_at_once_and_queue_only_what_the_socket_refuses() -> None:
    reactor, transport, theirs, _ = pair()
    transport.write(b"small")
    assert transport.queued_bytes == 0
    big = b"y" * 1_000_000
    transport.write(big)
    assert 0 < transport.queued_bytes < len(big)
    transport.write(b"tail")
    received = collect(reactor, theirs)
    run_until(reactor, lambda: len(received) == 5 + len(big) + 4)
    assert bytes(received) == b"small" + big + b"tail"
    assert transport.queued_bytes == 0


def test_a_file_is_sent_from_its_spool_in_order_and_released(tmp_path: Path) -> None:
    reactor, transport, theirs, _ = pair()
    manager = SpoolManager(str(tmp_path), limit=10 << 20)
    spool = manager.open(300_000)
    spool.write(b"f" * 300_000)
    transport.write(b"before")
    transport.write_file(b"HEAD", spool)
    spool.release()  # the uploader's reference; the queue holds its own
    transport.write(b"after")
    assert transport.queued_files == 1
    received = collect(reactor, theirs)
    run_until(reactor, lambda: len(received) == 6 + 4 + 300_000 + 5)
    assert bytes(received) == b"before" + b"HEAD" + b"f" * 300_000 + b"after"
    assert manager.open_spools == 0 and transport.queued_files == 0


def test_abort_releases_queued_files_and_reports_once(tmp_path: Path) -> None:
    _reactor, transport, _theirs, recorder = pair()
    manager = SpoolManager(str(tmp_path), limit=10 << 20)
    spool = manager.open(5_000_000)
    spool.write(b"z" * 5_000_000)
    transport.write_file(b"HEAD", spool)
    spool.release()
    assert manager.open_spools == 1
    transport.abort("test")
    transport.abort("again")
    assert manager.open_spools == 0
    assert recorder.calls == [("lost", "test")]
    transport.write(b"ignored after close")


def test_close_flushes_first_and_reading_reports_data_then_eof() -> None:
    reactor, transport, theirs, recorder = pair()
    theirs.sendall(b"hello")
    theirs.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: ("eof", None) in recorder.calls)
    assert recorder.calls == [("data", b"hello"), ("eof", None)]
    transport.write(b"x" * 500_000)
    transport.close()
    assert not transport.closed  # still flushing
    received = collect(reactor, theirs)
    run_until(reactor, lambda: transport.closed and len(received) == 500_000)
    assert bytes(received) == b"x" * 500_000
    assert recorder.calls[-1] == ("lost", "closed")


def test_a_lingering_close_shuts_the_write_side_and_discards_input() -> None:
    reactor, transport, theirs, recorder = pair()
    transport.write(b"NE        ")
    transport.close_lingering(5.0)
    theirs.settimeout(5)
    assert theirs.recv(10) == b"NE        "
    assert theirs.recv(10) == b""  # our write side is shut: the peer sees EOF, no reset
    theirs.sendall(b"late input")  # discarded, not delivered
    theirs.close()
    run_until(reactor, lambda: transport.closed)
    assert [c for c in recorder.calls if c[0] == "data"] == []


def test_diverted_bytes_go_to_the_file_then_back_to_data_received(tmp_path: Path) -> None:
    reactor, transport, theirs, recorder = pair()
    target = (tmp_path / "spool").open("w+b")
    moved: list[int] = []
    transport.divert(6, target.fileno(), moved.append)
    theirs.sendall(b"abcdefgh")
    run_until(reactor, lambda: ("data", b"gh") in recorder.calls)
    assert sum(moved) == 6
    assert os.pread(target.fileno(), 100, 0) == b"abcdef"
    assert recorder.calls == [("data", b"gh")]


def test_an_end_of_stream_while_diverted_is_reported(tmp_path: Path) -> None:
    reactor, transport, theirs, recorder = pair()
    target = (tmp_path / "spool").open("w+b")
    transport.divert(100, target.fileno(), lambda count: None)
    theirs.sendall(b"abc")
    theirs.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: ("eof", None) in recorder.calls)
    assert recorder.calls == [("eof", None)]


def test_a_file_that_refuses_the_upload_closes_the_connection(tmp_path: Path) -> None:
    reactor, transport, theirs, recorder = pair()
    read_only = os.open(tmp_path / "ro", os.O_CREAT | os.O_RDONLY)  # writes fail with EBADF
    transport.divert(100, read_only, lambda count: None)
    theirs.sendall(b"abc")
    run_until(reactor, lambda: transport.closed)
    assert recorder.calls[-1][0] == "lost" and "cannot write the upload" in str(
        recorder.calls[-1][1]
    )
    transport2_reactor, transport2, theirs2, _recorder2 = pair()  # the shared pipe was left empty
    target = (tmp_path / "ok").open("w+b")
    transport2.divert(3, target.fileno(), lambda count: None)
    theirs2.sendall(b"xyz")
    run_until(transport2_reactor, lambda: os.pread(target.fileno(), 10, 0) == b"xyz")
