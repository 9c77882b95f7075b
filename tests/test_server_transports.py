"""Tests of chatserver.transports: write now or queue, scatter-gather, files by reference,
closing with and without flushing, and the callback order."""

from __future__ import annotations

import os
import socket
import tracemalloc
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
    """A transport on a Unix socketpair (never corked: `tcp_pair` for TCP)."""
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


# --- The SendQ (spec 7.3): one bound on the write queue, whoever writes -----------------------


def test_a_write_that_overflows_the_sendq_closes_the_transport() -> None:
    _reactor, transport, _theirs, recorder = pair()
    transport.set_sendq(100_000, 10)
    transport.write(b"a" * 90_000)  # the socket takes some; the rest is queued, under the bound
    assert not transport.closed and transport.queued_bytes <= 100_000
    for _ in range(20):  # small writes, as replies are: each one is checked
        transport.write(b"NC        " * 1000)
        if transport.closed:
            break
    assert transport.closed and transport.overflowed
    assert recorder.calls[-1][0] == "lost"
    reason = str(recorder.calls[-1][1])
    assert reason.startswith("SendQ exceeded (") and "limits 100000 bytes, 10 files" in reason
    assert transport.queued_bytes == 0  # the queue is dropped, its memory freed


def test_writes_the_socket_takes_at_once_never_count_against_the_sendq() -> None:
    reactor, transport, theirs, _recorder = pair()
    transport.set_sendq(10, 10)  # tiny: only what waits in the queue counts
    received = collect(reactor, theirs)
    for i in range(50):
        transport.write(b"%-10d" % i)
        run_until(reactor, lambda i=i: len(received) == 10 * (i + 1))
    assert not transport.closed and len(received) == 500


def test_queued_files_over_the_limit_close_the_transport(tmp_path: Path) -> None:
    _reactor, transport, _theirs, recorder = pair()
    transport.set_sendq(1 << 20, 2)
    manager = SpoolManager(str(tmp_path), limit=100 << 20)
    for _ in range(3):
        spool = manager.open(2_000_000)  # more than the socket buffers: the queue keeps them
        spool.write(b"s" * 2_000_000)
        transport.write_file(b"HEAD", spool)
        spool.release()
    assert transport.closed and transport.overflowed
    assert "3 files queued" in str(recorder.calls[-1][1])
    assert manager.open_spools == 0  # every queued reference released


def test_unsent_bytes_count_file_data_still_owed(tmp_path: Path) -> None:
    _reactor, transport, _theirs, _recorder = pair()
    manager = SpoolManager(str(tmp_path), limit=100 << 20)
    spool = manager.open(3_000_000)
    spool.write(b"u" * 3_000_000)
    transport.write_file(b"HEAD", spool)
    spool.release()
    transport.write(b"tail")
    assert 4 < transport.unsent_bytes <= 3_000_008  # the socket took part of the file at most
    assert transport.queued_bytes == 4  # file data is queued by reference, not counted
    transport.abort("done")


def test_a_close_with_linger_ends_the_stream_cleanly_though_input_was_not_read() -> None:
    # Bytes of the peer's left unread at close() make the kernel send a reset, which can
    # destroy what we sent before it arrives; lingering reads and discards them instead.
    reactor, transport, theirs, recorder = pair()
    transport.pause_reading()  # as at shutdown: the server reads nothing more
    theirs.sendall(b"unread input " * 100)
    transport.write(b"z" * 300_000)
    transport.close(linger=5.0)
    received = collect(reactor, theirs)
    run_until(reactor, lambda: len(received) == 300_000 and reactor.time() > 0)
    theirs.setblocking(True)
    theirs.settimeout(5)
    assert theirs.recv(10) == b""  # a clean end of stream, no ConnectionResetError
    theirs.close()
    run_until(reactor, lambda: transport.closed)
    assert bytes(received) == b"z" * 300_000 and recorder.calls == [("lost", "closed")]


def test_closing_cancels_a_divert_so_nothing_more_reaches_the_upload(tmp_path: Path) -> None:
    reactor, transport, theirs, _recorder = pair()
    target = (tmp_path / "spool").open("w+b")
    transport.divert(1000, target.fileno(), lambda count: None)
    transport.close(linger=5.0)  # the session is gone, and with it the upload
    theirs.sendall(b"late file data")
    theirs.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: transport.closed)
    assert os.pread(target.fileno(), 100, 0) == b""


def test_small_writes_behind_a_backlog_cost_about_their_size_in_memory() -> None:
    # The SendQ counts bytes; queued one object each, 10-byte replies would cost ~5 times that.
    _reactor, transport, _theirs, _recorder = pair()
    transport.write(b"b" * 1_000_000)  # a backlog: the socket takes only part of it
    assert transport.queued_bytes
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            transport.write(b"%-10d" % i)  # 1 MB of 10-byte replies, each an object of its own
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used < 1_500_000, f"{used} bytes of memory for 1,000,000 bytes queued"
    transport.abort("done")


def test_small_writes_behind_a_backlog_arrive_whole_and_in_order() -> None:
    reactor, transport, theirs, _recorder = pair()
    expected = [b"h" * 700_000] + [b"%-10d" % i for i in range(20_000)] + [b"t" * 100_000]
    for i, data in enumerate(expected):
        transport.write(data)
        if i % 5000 == 0:  # partly drained meanwhile: the head changes under the writes
            reactor.call_later(0, lambda: None)
            run_until(reactor, lambda: False, limit=0.01)
    received = collect(reactor, theirs)
    total = sum(len(d) for d in expected)
    run_until(reactor, lambda: len(received) >= total)
    assert bytes(received) == b"".join(expected)


def tcp_pair() -> tuple[Reactor, SocketTransport, socket.socket]:
    """A transport on a loopback TCP connection whose peer has not started reading."""
    reactor = Reactor()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setblocking(False)
    ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the listener sets it
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    transport = SocketTransport(reactor, ours, "test")
    transport.start(Recorder())
    return reactor, transport, theirs


def corked(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)


def test_a_file_frame_goes_out_corked_on_tcp_and_uncorked_at_its_end(tmp_path: Path) -> None:
    # Corking keeps partial segments back while sendfile runs; the frame's end must uncork, or
    # whatever follows the file would wait for the kernel's 200 ms cork timer.
    reactor, transport, theirs = tcp_pair()
    data = os.urandom(3_000_000)
    manager = SpoolManager(str(tmp_path), limit=10 << 20)
    spool = manager.open(len(data))
    spool.write(data)
    transport.write(b"before")
    assert corked(transport._sock) == 0  # chat alone is never corked
    transport.write_file(b"HEAD", spool)
    spool.release()
    assert transport.queued_files == 1  # the socket refused part of the file: still going
    assert corked(transport._sock) == 1
    seen_during_file: set[int] = set()
    reactor.add_pass_hook(
        lambda: seen_during_file.add(corked(transport._sock)) if transport.queued_files else None
    )
    transport.write(b"after")
    received = collect(reactor, theirs)
    run_until(reactor, lambda: len(received) == 6 + 4 + len(data) + 5)
    assert bytes(received) == b"before" + b"HEAD" + data + b"after"
    assert seen_during_file == {1}
    assert transport.queued_files == 0 and corked(transport._sock) == 0
    theirs.close()
    transport.abort("done")


def test_an_empty_file_frame_leaves_the_socket_uncorked(tmp_path: Path) -> None:
    reactor, transport, theirs = tcp_pair()
    manager = SpoolManager(str(tmp_path), limit=10 << 20)
    spool = manager.open(0)
    transport.write_file(b"HEAD", spool)
    spool.release()
    assert transport.queued_files == 0 and corked(transport._sock) == 0
    received = collect(reactor, theirs)
    run_until(reactor, lambda: len(received) == 4)
    assert bytes(received) == b"HEAD"
    theirs.close()
    transport.abort("done")
