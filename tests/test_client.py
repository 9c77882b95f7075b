"""The client library (chatclient.client) against the real chatserver on 127.0.0.1, over TCP,
Unix sockets and TLS, and against a raw-bytes server double where the exact bytes or their
timing matter (replies interleaved with relays, a file cut short, silence).

Every wait is bounded: futures with ``result(timeout)``, events with `next_of`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import tracemalloc
from pathlib import Path

import pytest
import trustme

import chatwire as cw
from chatclient import (
    Client,
    ConnectError,
    ConnectionLostError,
    Disconnected,
    FileDiscarded,
    FileIncoming,
    FileProgress,
    FileSaved,
    FileSent,
    LoginRefusedError,
    MessageReceived,
    NickAccepted,
    NickRefused,
    NoticeReceived,
    UserList,
    connect,
)
from chatclient.client import ClientEvent
from tests.client_doubles import (
    NC,
    NE,
    FakePeer,
    FakeServer,
    file_relay,
    list_reply,
    msg_relay,
    notice,
)
from tests.support import Peer, running_server, wait_until

TIMEOUT = 10.0


def next_of(client: Client, kind: type, *, skip: tuple[type, ...] = (FileProgress,)) -> ClientEvent:
    """The next event of ``client`` that is not in ``skip``; it must be a ``kind``."""
    while True:
        event = client.next_event(TIMEOUT)
        assert event is not None, f"no {kind.__name__} within {TIMEOUT} s"
        if isinstance(event, skip) and not isinstance(event, kind):
            continue
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event


def events_until(client: Client, kind: type) -> list[ClientEvent]:
    """All events up to and including the first ``kind``."""
    seen = []
    while True:
        event = client.next_event(TIMEOUT)
        assert event is not None, f"no {kind.__name__} within {TIMEOUT} s; saw {seen}"
        seen.append(event)
        if isinstance(event, kind):
            return seen


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


# --- Login ----------------------------------------------------------------------------------


def test_login_then_chat_both_ways(server, downloads: Path) -> None:
    with (
        connect(server.urls[0], "ana", downloads=downloads) as ana,
        Peer.login(server.urls[0], "bob") as bob,
    ):
        assert ana.nick == "ana" and not ana.closed
        assert downloads.is_dir()  # created at start (the paper)
        ana.send_text("hello").result(TIMEOUT)
        assert bob.expect(cw.MessageRelay) == cw.MessageRelay(sender="ana", text="hello")
        bob.send(cw.Message(text="hi ana"))
        assert next_of(ana, MessageReceived) == MessageReceived(sender="bob", text="hi ana")


def test_login_refused_is_distinct_and_retry_uses_a_new_connection(server) -> None:
    url = server.urls[0]
    with Peer.login(url, "ana"):
        with pytest.raises(LoginRefusedError) as info:
            connect(url, "ANA")  # equal nicks (spec 2.8.4)
        assert info.value.nick == "ANA"
        with pytest.raises(LoginRefusedError):
            connect(url, "a b")  # not a valid nick (spec 2.8.3): the server says NE
        # spec 3.1.1: after NE the server has closed that connection; a retry is a new one.
        with connect(url, "ana2") as client:
            assert client.nick == "ana2"
    wait_until(lambda: server.stats()["members"] == 0, what="the server to log everyone out")


def test_login_refused_closes_the_connection_and_retry_reconnects() -> None:
    attempts: list[str] = []

    def script(peer: FakePeer) -> None:
        event = peer.expect(cw.Login)
        attempts.append(event.nick)
        if event.nick == "ana":  # taken
            peer.send(peer.conn.send(cw.Refused()))
            peer.wait_closed()  # the client must close the refused connection itself
        else:
            peer.send(peer.conn.send(cw.Accepted()))
            peer.expect(cw.Quit)

    with FakeServer(script) as fake:
        with pytest.raises(LoginRefusedError):
            connect(fake.url, "ana")
        connect(fake.url, "bob").quit()
    assert attempts == ["ana", "bob"]
    assert fake.connections == 2


def test_nick_too_long_for_a_frame_is_a_local_error(server) -> None:
    with pytest.raises(cw.LocalProtocolError):
        connect(server.urls[0], "abcdefghij")


def test_connect_errors() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(ConnectError, match="cannot connect"):
        connect(f"tcp://127.0.0.1:{port}", "ana", timeout=2)

    def silent(peer: FakePeer) -> None:
        peer.next()  # the login, never answered
        peer.wait_closed()

    with FakeServer(silent) as fake, pytest.raises(ConnectError, match="no answer"):
        connect(fake.url, "ana", timeout=0.3)

    def closes(peer: FakePeer) -> None:
        peer.next()

    with FakeServer(closes) as fake, pytest.raises(ConnectError, match="closed"):
        connect(fake.url, "ana")

    def garbage(peer: FakePeer) -> None:
        peer.next()
        peer.send(b"HELLO     ")
        peer.wait_closed()

    with FakeServer(garbage) as fake, pytest.raises(ConnectError, match="protocol"):
        connect(fake.url, "ana")


# --- Requests and replies -------------------------------------------------------------------


def test_list_and_nick_change(server) -> None:
    url = server.urls[0]
    with connect(url, "ana") as ana, Peer.login(url, "bob"):
        assert sorted(ana.list_users().result(TIMEOUT)) == ["ana", "bob"]
        assert next_of(ana, UserList).nicks  # the reply is also an event
        assert ana.change_nick("BOB").result(TIMEOUT) is False
        assert next_of(ana, NickRefused) == NickRefused(nick="BOB")
        assert ana.nick == "ana"
        assert ana.change_nick("zed").result(TIMEOUT) is True
        assert next_of(ana, NickAccepted) == NickAccepted(old="ana", new="zed")
        assert ana.nick == "zed"
        assert sorted(ana.list_users().result(TIMEOUT)) == ["bob", "zed"]


def test_replies_match_requests_in_order_while_relays_interleave() -> None:
    """spec 5.2, 5.5, 8.2: relays and notices between replies do not disturb the matching."""

    def script(peer: FakePeer) -> None:
        peer.login()
        for _ in range(4):  # list, nick, nick, list: read them all before answering
            peer.next()
        peer.send(msg_relay("bob", "one") + list_reply("ana", "bob"))
        peer.send(notice("between") + NE + msg_relay("bob", "two"))
        peer.send(NC + msg_relay("bob", "three") + list_reply("bob", "zed"))
        peer.expect(cw.Quit)

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        first = client.list_users()
        taken = client.change_nick("bob")
        free = client.change_nick("zed")
        second = client.list_users()
        assert first.result(TIMEOUT) == ("ana", "bob")
        assert taken.result(TIMEOUT) is False
        assert free.result(TIMEOUT) is True
        assert second.result(TIMEOUT) == ("bob", "zed")
        assert client.nick == "zed"
        assert events_until(client, UserList) == [
            MessageReceived(sender="bob", text="one"),
            UserList(nicks=("ana", "bob")),
        ]
        assert events_until(client, UserList) == [
            NoticeReceived(text="between"),
            NickRefused(nick="bob"),
            MessageReceived(sender="bob", text="two"),
            NickAccepted(old="ana", new="zed"),
            MessageReceived(sender="bob", text="three"),
            UserList(nicks=("bob", "zed")),
        ]
        client.quit()


def test_an_unasked_reply_is_a_protocol_error() -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(NC)  # no nick request is pending (spec 4.3)
        peer.wait_closed()

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        end = next_of(client, Disconnected)
        assert not end.expected and "protocol" in end.reason
        assert client.wait_closed(TIMEOUT)


# --- Text -----------------------------------------------------------------------------------


def test_long_text_is_split_as_the_spec_says(server) -> None:
    url = server.urls[0]
    text = " ".join(f"word{i}" for i in range(5000)) + "ção" * 3000  # ~43 KB
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        ana.send_text(text).result(TIMEOUT)
        pieces = []
        while "".join(pieces) != text:
            relay = bob.expect(cw.MessageRelay)
            assert len(relay.text.encode()) <= cw.TEXT_MAX  # spec 3.1.6
            pieces.append(relay.text)
        assert pieces == cw.split_text(text)
        assert len(pieces) > 3


def test_text_that_is_not_utf8_is_a_local_error(server) -> None:
    # Keyboard input, stdin and argv are read with errors="surrogateescape": a byte that is not
    # UTF-8 (\xe9 typed in a Latin-1 terminal) arrives as a lone surrogate. Sending it must
    # raise the documented LocalProtocolError, not UnicodeEncodeError, and leave the client
    # usable.
    url = server.urls[0]
    latin = b"caf\xe9".decode("utf-8", "surrogateescape")
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        with pytest.raises(cw.LocalProtocolError) as info:
            ana.send_text(latin)
        assert info.value.section == "2.8.2"
        assert "0xe9" in str(info.value)
        with pytest.raises(cw.LocalProtocolError, match="surrogate"):
            ana.send_text("x" * 70_000 + "\ud800")  # long enough to be split, too
        ana.send_text("second line").result(TIMEOUT)
        assert bob.expect(cw.MessageRelay).text == "second line"  # nothing else was sent


def test_sends_from_many_threads_never_interleave(server) -> None:
    url = server.urls[0]
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        threads = [
            threading.Thread(target=lambda n=n: [ana.send_text(f"{n}:{i}") for i in range(50)])
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        got = [bob.expect(cw.MessageRelay).text for _ in range(200)]
        for n in range(4):  # each thread's messages arrive whole and in its order (spec 5.3)
            assert [t for t in got if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(50)]


# --- Files ----------------------------------------------------------------------------------


def test_send_file_streams_with_progress(server, tmp_path: Path) -> None:
    url = server.urls[0]
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    calls: list[tuple[int, int]] = []
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        future = ana.send_file(path, progress=lambda done, size: calls.append((done, size)))
        ana.send_text("after the file")  # waits for the file's last byte (spec 5.1)
        relay, received = bob.expect_file()
        assert (relay.sender, relay.name, relay.size) == ("ana", "photo.jpg", len(data))
        assert received == data
        assert bob.expect(cw.MessageRelay).text == "after the file"
        assert future.result(TIMEOUT) == len(data)
        assert calls[-1] == (len(data), len(data))
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
        events = events_until(ana, FileSent)
        assert events[-1] == FileSent(name="photo.jpg", size=len(data), transfer=future.transfer)
        progress = [e for e in events if isinstance(e, FileProgress)]
        assert progress[-1].done == len(data) and progress[-1].direction == "out"
        assert {e.transfer for e in progress} == {future.transfer}


def test_send_file_with_another_name_and_empty_file(server, tmp_path: Path) -> None:
    url = server.urls[0]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        assert ana.send_file(empty, name="nothing.txt").result(TIMEOUT) == 0
        relay, received = bob.expect_file()
        assert (relay.name, received) == ("nothing.txt", b"")


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_send_file_is_never_held_in_memory(scheme: str, tls_files, tmp_path: Path) -> None:
    # os.sendfile over TCP, 64 KiB reads under TLS: the peak stays far below the file's size.
    size = 24 * 1024 * 1024
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        out.truncate(size)  # sparse: cheap to make
    pem, ca = tls_files["server"], tls_files["ca"]
    listen = f"tls://127.0.0.1:0?cert={pem}&key={pem}" if scheme == "tls" else "tcp://127.0.0.1:0"
    with running_server(listen=[listen]) as srv:
        url = f"{srv.urls[0]}?ca={ca}" if scheme == "tls" else srv.urls[0]
        with connect(url, "ana") as ana:
            tracemalloc.start()
            try:
                ana.send_file(path).result(60)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert peak < size // 8, f"peak {peak} bytes while sending {size}"


def test_send_file_local_errors(server, tmp_path: Path) -> None:
    with connect(server.urls[0], "ana") as ana:
        with pytest.raises(FileNotFoundError):
            ana.send_file(tmp_path / "missing")
        with pytest.raises(IsADirectoryError, match="a folder, not a regular file"):
            ana.send_file(tmp_path)
        (tmp_path / "ok").write_bytes(b"x")
        with pytest.raises(cw.LocalProtocolError):
            ana.send_file(tmp_path / "ok", name="a/b")  # spec 2.8.5
        with pytest.raises(cw.LocalProtocolError):
            ana.change_nick("abcdefghij")


@pytest.mark.parametrize("where", ["path", "swapped"])
def test_send_file_refuses_a_fifo_without_blocking(server, tmp_path: Path, where: str) -> None:
    # Opening a FIFO for reading blocks until a writer comes: in the terminal UI that froze
    # the whole interface. "swapped": the path is a regular file at the stat and a FIFO at the
    # open (the race O_NONBLOCK closes), simulated by patching os.stat.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException | object] = []
    with connect(server.urls[0], "ana") as ana:

        def attempt() -> None:
            try:
                outcome.append(ana.send_file(fifo))
            except BaseException as exc:
                outcome.append(exc)

        regular = os.stat(__file__)
        with pytest.MonkeyPatch.context() as patch:
            if where == "swapped":
                patch.setattr(os, "stat", lambda path, *a, **k: regular)
            thread = threading.Thread(target=attempt, daemon=True)
            thread.start()
            thread.join(5)
            blocked = thread.is_alive()
            if blocked:  # unblock the open so that the test ends
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                thread.join(TIMEOUT)
        assert not blocked, "send_file blocked on a FIFO"
        assert len(outcome) == 1 and isinstance(outcome[0], OSError), outcome
        assert "FIFO" in str(outcome[0]) and "not a regular file" in str(outcome[0])
        ana.send_text("still fine").result(TIMEOUT)


def test_receive_file_streams_to_disk_and_never_overwrites(server, downloads: Path) -> None:
    url = server.urls[0]
    downloads.mkdir()
    (downloads / "notes.txt").write_bytes(b"mine")
    data = os.urandom(2_000_000)
    with connect(url, "ana", downloads=downloads) as ana, Peer.login(url, "bob") as bob:
        bob.send_file("notes.txt", data)
        bob.send_file("notes.txt", b"second")
        events = events_until(ana, FileSaved)
        incoming = events[0]
        assert isinstance(incoming, FileIncoming)
        assert incoming == FileIncoming(
            sender="bob", name="notes.txt", size=len(data), transfer=incoming.transfer
        )
        progress = [e for e in events if isinstance(e, FileProgress)]
        assert progress and {(e.direction, e.transfer) for e in progress} == {
            ("in", incoming.transfer)
        }
        first = events[-1]
        assert isinstance(first, FileSaved) and first.transfer == incoming.transfer
        assert Path(first.path) == downloads / "notes (1).txt"
        second = next_of(ana, FileSaved, skip=(FileProgress, FileIncoming))
        assert Path(second.path) == downloads / "notes (2).txt"
        # Same name, another transfer: the events say which is which.
        assert second.transfer != first.transfer
    assert (downloads / "notes.txt").read_bytes() == b"mine"  # never overwritten (spec 8.4)
    assert (downloads / "notes (1).txt").read_bytes() == data
    assert (downloads / "notes (2).txt").read_bytes() == b"second"
    assert sorted(p.name for p in downloads.iterdir()) == [
        "notes (1).txt",
        "notes (2).txt",
        "notes.txt",
    ]


def test_without_a_download_folder_files_are_discarded(server) -> None:
    url = server.urls[0]
    with connect(url, "ana") as ana, Peer.login(url, "bob") as bob:
        bob.send_file("a.txt", b"abc")
        event = next_of(ana, FileDiscarded, skip=(FileProgress, FileIncoming))
        assert event.sender == "bob" and event.name == "a.txt"
        bob.send(cw.Message(text="still here"))  # the stream went on past the file
        assert next_of(ana, MessageReceived).text == "still here"


@pytest.mark.parametrize(
    ("limits", "why"),
    [
        ({"max_file_size": 1000}, "limit of 1000 bytes"),
        ({"keep_free": 1 << 62}, "free on disk"),
    ],
)
def test_files_over_the_limits_are_read_and_discarded(server, downloads: Path, limits, why) -> None:
    # The protocol cannot refuse a relay: a file the client will not keep is still read (so the
    # stream goes on) and dropped, so that no peer can fill the user's disk.
    url = server.urls[0]
    with connect(url, "ana", downloads=downloads, **limits) as ana, Peer.login(url, "bob") as bob:
        bob.send_file("big.bin", b"b" * 2000)
        event = next_of(ana, FileDiscarded, skip=(FileProgress, FileIncoming))
        assert event.name == "big.bin" and why in event.reason
        bob.send(cw.Message(text="still here"))
        assert next_of(ana, MessageReceived).text == "still here"
    assert list(downloads.iterdir()) == []


def test_a_cut_transfer_leaves_nothing(downloads: Path) -> None:
    received = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(file_relay("bob", "big.iso", b"x" * 1000, size=5000))
        received.wait(TIMEOUT)  # the client has written part of it
        # then the server vanishes mid-file

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana", downloads=downloads)
        assert next_of(client, FileIncoming).size == 5000
        wait_until(lambda: any(downloads.iterdir()), what="the temporary file")
        assert all(p.name.endswith(".part") for p in downloads.iterdir())
        received.set()
        discarded = next_of(client, FileDiscarded)
        assert "cut short" in discarded.reason
        end = next_of(client, Disconnected)
        assert not end.expected
    assert list(downloads.iterdir()) == []  # spec 8.4: nothing left behind


# --- Ending ---------------------------------------------------------------------------------


def test_quit_is_clean_and_later_calls_fail(server) -> None:
    client = connect(server.urls[0], "ana")
    wait_until(lambda: server.stats()["members"] == 1)
    client.quit()
    assert client.closed
    end = next_of(client, Disconnected)
    assert end.expected and end.reason == "quit"
    assert client.next_event(0) is end  # the end is repeated, never a hang
    assert list(client.events()) == [end]
    with pytest.raises(ConnectionLostError):
        client.send_text("too late")
    wait_until(lambda: server.stats()["members"] == 0, what="the server to log us out")


def test_server_that_closes_is_reported(downloads: Path) -> None:
    with running_server() as srv:
        client = connect(srv.urls[0], "ana", downloads=downloads)
        wait_until(lambda: srv.stats()["members"] == 1)
    end = next_of(client, Disconnected)
    assert not end.expected
    assert "closed" in end.reason
    with pytest.raises(ConnectionLostError):
        client.list_users()


def test_close_fails_unanswered_requests() -> None:
    asked = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.ListRequest)
        asked.set()
        peer.wait_closed()  # never answers

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        pending = client.list_users()
        assert asked.wait(TIMEOUT)
        client.close()
        with pytest.raises(ConnectionLostError):
            pending.result(TIMEOUT)
        end = next_of(client, Disconnected)
        assert end.expected and end.reason == "closed by the client"


def test_a_close_landing_while_a_wake_up_is_handled_is_not_lost(
    server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # close() sets a flag, then wakes the I/O thread. Here it lands at the worst moment: after
    # select() has returned for an earlier wake-up, just before that wake-up is drained. The
    # thread must still see it (the terminal client's second Ctrl-C once hung on this).
    client = connect(server.urls[0], "ana")
    drain = client._drain_wake

    def close_then_drain() -> None:
        monkeypatch.setattr(client, "_drain_wake", drain)  # only the first time
        client.close()  # on the I/O thread close() only asks, so this returns at once
        drain()

    monkeypatch.setattr(client, "_drain_wake", close_then_drain)
    client.send_text("a wake-up the server answers with nothing")
    assert client.wait_closed(TIMEOUT), "the I/O thread slept through close()"
    end = next_of(client, Disconnected)
    assert end.expected and end.reason == "closed by the client"


def test_quit_gives_up_on_a_server_that_never_closes() -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.Quit)
        peer.wait_closed()  # but keeps the connection open

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana", quit_timeout=0.3)
        client.quit(timeout=TIMEOUT)
        assert client.closed
        assert next_of(client, Disconnected).expected


def test_quit_gives_up_on_an_upload_the_server_stopped_reading(tmp_path: Path) -> None:
    # quit() waits for queued files, but not forever: when nothing could be written for
    # quit_timeout seconds it closes, and says the file was cut short.
    stop = threading.Event()

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.File)
        stop.wait(TIMEOUT)  # stop reading: the client's socket buffers fill up
        peer.wait_closed()

    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)  # sparse: cheap to make
    with FakeServer(script) as fake:
        try:
            client = connect(fake.url, "ana", quit_timeout=0.5)
            future = client.send_file(big)
            next_of(client, FileProgress, skip=())
            ended = threading.Thread(target=client.quit, daemon=True)
            ended.start()
            ended.join(TIMEOUT)
            assert not ended.is_alive(), "quit() hung behind a stalled upload"
            with pytest.raises(ConnectionLostError):
                future.result(TIMEOUT)
            end = next_of(client, Disconnected)
            assert end.expected
            assert "server stopped reading" in end.reason
            assert "'big.bin' was cut short" in end.reason
        finally:
            stop.set()


def test_an_upload_goes_out_corked_and_the_socket_is_uncorked_when_it_ends(
    tmp_path: Path,
) -> None:
    # TCP_CORK holds partial segments back while the file goes out; the frame's end must
    # uncork, or the text queued behind it would wait for the kernel's 200 ms cork timer.
    resume = threading.Event()
    texts: list[str] = []

    def script(peer: FakePeer) -> None:
        peer.login()
        peer.expect(cw.File)
        resume.wait(TIMEOUT)  # stop reading for a while: the upload stalls mid-file
        texts.append(peer.expect(cw.Message).text)
        peer.wait_closed()

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(16 * 1024 * 1024))
    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        try:
            future = client.send_file(big)
            next_of(client, FileProgress, skip=())
            assert client._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 1
            client.send_text("after the file")
            resume.set()
            assert future.result(TIMEOUT) == 16 * 1024 * 1024
            assert client._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK) == 0
            wait_until(lambda: texts == ["after the file"])
        finally:
            resume.set()
            client.close()


def test_a_socket_error_while_corking_ends_the_connection_as_a_failure(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not an "internal error": a socket that refuses TCP_CORK is a broken connection.
    def refuse(_sock: socket.socket, _on: bool) -> bool:
        raise OSError(9, "Bad file descriptor")

    monkeypatch.setattr("chatclient.client.cork", refuse)
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    with connect(server.urls[0], "ana") as ana:
        future = ana.send_file(path)
        with pytest.raises(ConnectionLostError):
            future.result(TIMEOUT)
        end = next_of(ana, Disconnected)
        assert end.reason == "the connection failed: [Errno 9] Bad file descriptor", end.reason


class _AlarmError(Exception):
    pass


def test_a_signal_during_wait_closed_does_not_break_quit() -> None:
    # A signal handler that raises (scripted mode's SIGTERM) while the main thread waits:
    # with Thread.join, CPython then marks the running thread as stopped, and quit(timeout)
    # returned at once without closing, so the end came only quit_timeout (5 s) later.
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.wait_closed()  # reads quit, never closes

    def alarm(signum: int, frame: object) -> None:
        raise _AlarmError

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        previous = signal.signal(signal.SIGALRM, alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(_AlarmError):
                client.wait_closed()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        client.quit(timeout=0.5)
        assert client.closed
        end = client.next_event(0)
        assert isinstance(end, Disconnected), "quit(timeout) returned before the end"


def test_events_before_the_end_are_all_delivered() -> None:
    def script(peer: FakePeer) -> None:
        peer.login()
        peer.send(b"".join(msg_relay("bob", str(i)) for i in range(100)))

    with FakeServer(script) as fake:
        client = connect(fake.url, "ana")
        texts = [e.text for e in client.events(TIMEOUT) if isinstance(e, MessageReceived)]
        assert texts == [str(i) for i in range(100)]
        assert client.closed


# --- Transports -----------------------------------------------------------------------------


def test_unix_socket(tmp_path: Path, downloads: Path) -> None:
    path = tmp_path / "chat.sock"
    with running_server(listen=[f"unix://{path}"]) as srv:
        url = srv.urls[0]
        data = os.urandom(500_000)
        (tmp_path / "f.bin").write_bytes(data)
        with connect(url, "ana", downloads=downloads) as ana, Peer.login(url, "bob") as bob:
            ana.send_file(tmp_path / "f.bin").result(TIMEOUT)  # os.sendfile on a Unix socket
            assert bob.expect_file()[1] == data
            bob.send_file("back.bin", data)
            saved = next_of(ana, FileSaved, skip=(FileProgress, FileIncoming, FileSent))
            assert Path(saved.path).read_bytes() == data


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("ana@example.org")
    files = {
        "ca": folder / "ca.pem",
        "server": folder / "server.pem",
        "client": folder / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(files["server"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


def test_tls_with_client_certificate(tls_files: dict[str, Path], tmp_path: Path) -> None:
    ca, server_pem, client_pem = tls_files["ca"], tls_files["server"], tls_files["client"]
    listen = f"tls://127.0.0.1:0?cert={server_pem}&key={server_pem}&ca={ca}"
    with running_server(listen=[listen]) as srv:
        url = f"{srv.urls[0]}?ca={ca}&cert={client_pem}"
        with pytest.raises(ConnectError, match="--cert and --key"):  # no client certificate
            connect(f"{srv.urls[0]}?ca={ca}", "eve").quit()
        data = os.urandom(1_500_000)
        (tmp_path / "f.bin").write_bytes(data)
        with connect(url, "ana", downloads=tmp_path / "dl") as ana, Peer.login(url, "bob") as bob:
            ana.send_file(tmp_path / "f.bin").result(TIMEOUT)  # chunked reads under TLS
            assert bob.expect_file()[1] == data
            bob.send_file("back.bin", data)
            saved = next_of(ana, FileSaved, skip=(FileProgress, FileIncoming, FileSent))
            assert Path(saved.path).read_bytes() == data
            ana.send_text("over tls")
            assert bob.expect(cw.MessageRelay).text == "over tls"
