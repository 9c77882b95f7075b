"""Tests of chatwire._connection: the sans-I/O Connection.

Round trips under arbitrary chunking (hypothesis), the fuzz invariant (any bytes give events or
RemoteProtocolError, never anything else, never a hang), the state rules of spec 4.3 in both
directions, end of stream (spec 6.5) and bounded memory for huge files.
"""

from __future__ import annotations

import array
import gc
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatwire as cw
from chatwire import _connection
from tests.strategies import (
    chunk_sizes,
    chunked,
    client_streams,
    coalesce,
    drain,
    server_streams,
)

# --- Round trips -------------------------------------------------------------------------------


@given(stream=client_streams(), sizes=chunk_sizes)
def test_server_decodes_what_a_client_sends_under_any_chunking(stream, sizes) -> None:
    server = cw.Connection(cw.Role.SERVER)
    received: list[cw.Event] = []
    for chunk in chunked(stream.data, sizes):
        server.receive_data(chunk)
        received += drain(server)
    assert coalesce(received) == coalesce(stream.events)
    assert server.bytes_received == len(stream.data)


@given(pair=server_streams(), sizes=chunk_sizes, eof=st.booleans())
def test_client_decodes_what_a_server_sends_under_any_chunking(pair, sizes, eof) -> None:
    requests, stream = pair
    client = cw.Connection(cw.Role.CLIENT)
    client.send(cw.Login(nick="ana"))
    if stream.events == [cw.Refused()]:
        # NE at login (spec 3.1.1): the connection is over, whatever else arrives.
        received: list[cw.Event] = []
        for chunk in chunked(stream.data + b"msg 1 2   ahi" * eof, sizes):
            client.receive_data(chunk)
            received += drain(client)
        # ConnectionClosed from then on, however often asked; nothing more is decoded or kept
        assert received[0] == cw.Refused() and set(received[1:]) == {cw.ConnectionClosed()}
        assert client.state is cw.State.CLOSED and client.buffered == 0
        with pytest.raises(cw.LocalProtocolError):
            client.send(cw.Login(nick="bob"))  # a new login needs a new connection
        return
    chunks = chunked(stream.data, sizes)
    # ACC comes first; the client sends its requests once logged in, then reads the rest.
    client.receive_data(b"ACC       ")
    assert client.next_event() == cw.Accepted()
    for request in requests:
        client.send(cw.ListRequest() if request == "list" else cw.NickRequest(nick="bob"))
    rest = b"".join(chunks)[10:]
    received: list[cw.Event] = [cw.Accepted()]
    for chunk in chunked(rest, sizes):
        client.receive_data(chunk)
        received += drain(client)
    assert coalesce(received) == coalesce(stream.events)
    assert client.pending == ()


@given(stream=client_streams(quit_at_end=True), sizes=chunk_sizes)
def test_feeding_byte_by_byte_equals_feeding_whole(stream, sizes) -> None:
    whole = cw.Connection(cw.Role.SERVER)
    whole.receive_data(bytes(stream.data))
    by_byte = cw.Connection(cw.Role.SERVER)
    events = []
    for i in range(len(stream.data)):
        by_byte.receive_data(stream.data[i : i + 1])
        events += drain(by_byte)
    assert coalesce(events) == coalesce(drain(whole))


# --- The fuzz invariant -------------------------------------------------------------------------


def run_to_end(
    conn: cw.Connection, chunks: list[bytes], eof: bool
) -> tuple[list[cw.Event], cw.RemoteProtocolError | None]:
    """Feed every chunk and drain; only RemoteProtocolError may escape, and it must stick."""
    events: list[cw.Event] = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            events += drain(conn)
        if eof:
            conn.receive_data(b"")
            events += drain(conn)
    except cw.RemoteProtocolError as exc:
        assert exc.section is not None and exc.offset is not None
        with pytest.raises(cw.RemoteProtocolError) as again:
            conn.next_event()
        assert again.value is exc
        return events, exc
    return events, None


def in_state(role: cw.Role, state: str) -> cw.Connection:
    """A connection of ``role`` brought to spec 4.3 state ``state`` by legal traffic."""
    conn = cw.Connection(role)
    if role is cw.Role.CLIENT:
        if state != "LOGIN":
            conn.send(cw.Login(nick="ana"))
        if state in ("ACTIVE", "QUIT"):
            conn.receive_data(b"ACC       ")
            assert conn.next_event() == cw.Accepted()
            conn.send(cw.ListRequest())
            conn.send(cw.NickRequest(nick="bob"))
        if state == "QUIT":
            conn.send(cw.Quit())
    elif state != "LOGIN":
        conn.receive_data(b"3         ana")
        assert isinstance(conn.next_event(), cw.Login)
        conn.send(cw.Accepted())
        if state == "QUIT":
            conn.receive_data(b"quit      ")
            assert conn.next_event() == cw.Quit()
    assert conn.state.value == state
    return conn


roles_and_states = st.sampled_from(
    [(cw.Role.SERVER, s) for s in ("LOGIN", "ACTIVE", "QUIT")]
    + [(cw.Role.CLIENT, s) for s in ("LOGIN", "AWAIT_ACC", "ACTIVE", "QUIT")]
)


@given(where=roles_and_states, data=st.binary(max_size=600), sizes=chunk_sizes, eof=st.booleans())
def test_arbitrary_bytes_raise_only_remote_protocol_error(where, data, sizes, eof) -> None:
    run_to_end(in_state(*where), chunked(data, sizes), eof)


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "digit"]))
        if action == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif action == "digit":
            data[pos] = draw(st.sampled_from(b"0123456789 "))
        else:
            del data[pos]
    return bytes(data)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=client_streams(), data=st.data(), sizes=chunk_sizes, eof=st.booleans())
def test_mutated_client_streams_raise_only_remote_protocol_error(stream, data, sizes, eof) -> None:
    bad = data.draw(mutated(bytes(stream.data[:3000])))
    run_to_end(cw.Connection(cw.Role.SERVER), chunked(bad, sizes), eof)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pair=server_streams(), data=st.data(), sizes=chunk_sizes, eof=st.booleans())
def test_mutated_server_streams_raise_only_remote_protocol_error(pair, data, sizes, eof) -> None:
    _requests, stream = pair
    bad = data.draw(mutated(bytes(stream.data[:3000])))
    run_to_end(in_state(cw.Role.CLIENT, "AWAIT_ACC"), chunked(bad, sizes), eof)


def test_a_header_announcing_a_huge_payload_fails_before_buffering_it() -> None:
    # spec 2.7: sizes are checked before the payload is awaited, so nothing waits for 10 GB.
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"9999999999")
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert (info.value.section, info.value.offset) == ("2.7", 0)
    assert info.value.reply == cw.Refused()


# --- State rules, received side -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "state", "data", "section"),
    [
        (cw.Role.SERVER, "LOGIN", b"list      ", "4.3"),
        (cw.Role.SERVER, "LOGIN", b"msg 1     x", "4.3"),
        (cw.Role.SERVER, "ACTIVE", b"3         ana", "4.3"),  # a second login
        (cw.Role.SERVER, "ACTIVE", b"ACC       ", "2.6"),
        (cw.Role.SERVER, "ACTIVE", b"msg 1 1   ab", "2.6"),
        (cw.Role.CLIENT, "LOGIN", b"ACC       ", "4.3"),
        (cw.Role.CLIENT, "AWAIT_ACC", b"NC        ", "4.3"),
        (cw.Role.CLIENT, "AWAIT_ACC", b"msg 1 1   ab", "4.3"),
        (cw.Role.CLIENT, "ACTIVE", b"ACC       ", "4.3"),
        (cw.Role.CLIENT, "ACTIVE", b"NC        ", "4.3"),  # oldest pending is list
        (cw.Role.CLIENT, "ACTIVE", b"list      ", "2.6"),
        (cw.Role.CLIENT, "ACTIVE", b"msg 1     x", "2.6"),
    ],
)
def test_frames_illegal_in_a_state_are_remote_errors(role, state, data, section) -> None:
    conn = in_state(role, state)
    offset = conn.bytes_received
    conn.receive_data(data)
    with pytest.raises(cw.RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.section == section
    assert info.value.offset == offset
    assert conn.state is cw.State.CLOSED


def test_replies_are_matched_to_requests_in_order() -> None:
    client = in_state(cw.Role.CLIENT, "ACTIVE")  # pending: list, nick
    assert client.pending == ("list", "nick")
    client.receive_data(b"msg 0 2   hi3         bobNE        msg 1 1   ab")
    assert drain(client) == [
        cw.Notice(text="hi"),
        cw.ListReply(nicks=("bob",)),
        cw.Refused(),
        cw.MessageRelay(sender="a", text="b"),
    ]
    assert client.pending == ()
    assert client.state is cw.State.ACTIVE


def test_ne_at_login_closes_and_nothing_more_is_read() -> None:
    client = in_state(cw.Role.CLIENT, "AWAIT_ACC")
    client.receive_data(b"NE        garbage after the end")
    assert client.next_event() == cw.Refused()
    assert client.state is cw.State.CLOSED
    assert client.next_event() == cw.ConnectionClosed()


def test_server_pauses_until_it_answers_the_login() -> None:
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         anamsg 2     hi")
    assert server.next_event() == cw.Login(nick="ana")
    assert server.next_event() is cw.PAUSED
    assert list(server.events()) == []
    server.send(cw.Accepted())
    assert server.next_event() == cw.Message(text="hi")


def test_a_refused_login_ends_the_connection() -> None:
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         anamsg 2     hi")
    server.next_event()
    assert server.send(cw.Refused()) == b"NE        "
    assert server.state is cw.State.CLOSED
    assert server.next_event() == cw.ConnectionClosed()


def test_data_after_quit_is_malformed() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"quit      msg 1     x")
    assert server.next_event() == cw.Quit()
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert info.value.section == "4.3"


def test_max_file_size_is_enforced_when_the_size_header_arrives() -> None:
    server = cw.Connection(cw.Role.SERVER, max_file_size=100)
    server.receive_data(b"3         ana")
    server.next_event()
    server.send(cw.Accepted())
    server.receive_data(b"file 1    a101       ")
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert (info.value.section, info.value.offset) == ("3.1.4", 13 + 11)
    assert info.value.reply is None


def test_the_reply_to_a_malformed_login_can_be_sent_once() -> None:
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"\x00" * 10)
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert server.send(info.value.reply) == b"NE        "  # type: ignore[arg-type]
    with pytest.raises(cw.LocalProtocolError):
        server.send(cw.Refused())


# --- State rules, sending side ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "state", "event"),
    [
        (cw.Role.CLIENT, "LOGIN", cw.Message(text="hi")),
        (cw.Role.CLIENT, "LOGIN", cw.Quit()),
        (cw.Role.CLIENT, "AWAIT_ACC", cw.Message(text="hi")),
        (cw.Role.CLIENT, "AWAIT_ACC", cw.Login(nick="ana")),
        (cw.Role.CLIENT, "ACTIVE", cw.Login(nick="ana")),
        (cw.Role.CLIENT, "ACTIVE", cw.Accepted()),
        (cw.Role.CLIENT, "ACTIVE", cw.MessageRelay(sender="a", text="b")),
        (cw.Role.CLIENT, "QUIT", cw.Message(text="hi")),
        (cw.Role.CLIENT, "QUIT", cw.Quit()),
        (cw.Role.SERVER, "LOGIN", cw.Accepted()),
        (cw.Role.SERVER, "LOGIN", cw.Notice(text="hi")),
        (cw.Role.SERVER, "ACTIVE", cw.NickChanged()),  # nothing pending
        (cw.Role.SERVER, "ACTIVE", cw.ListReply(nicks=())),
        (cw.Role.SERVER, "ACTIVE", cw.Accepted()),
        (cw.Role.SERVER, "ACTIVE", cw.Message(text="hi")),
        (cw.Role.SERVER, "ACTIVE", cw.FileData(data=b"x")),
        (cw.Role.SERVER, "ACTIVE", cw.FileEnd()),
        (cw.Role.SERVER, "ACTIVE", cw.ConnectionClosed()),
    ],
)
def test_illegal_sends_are_local_errors_and_change_nothing(role, state, event) -> None:
    conn = in_state(role, state)
    before = (conn.state, conn.pending)
    with pytest.raises(cw.LocalProtocolError):
        conn.send(event)
    assert (conn.state, conn.pending) == before


# Every frame a server can send (spec 2.6), including replies to requests it has read.
SERVER_FRAMES = [
    cw.MessageRelay(sender="bob", text="hi"),
    cw.Notice(text="bye"),
    cw.FileRelay(sender="bob", name="a.txt", size=3),
    cw.ListReply(nicks=("ana",)),
    cw.NickChanged(),
    cw.Refused(),
    cw.Accepted(),
]


@pytest.mark.parametrize("event", SERVER_FRAMES, ids=lambda e: type(e).__name__)
def test_a_server_sends_nothing_after_it_has_read_quit(event) -> None:
    # spec 3.1.5: "The server MUST NOT start sending a frame after it has read `quit`". The
    # QUIT rows of table 4.3 are the client's (the note under the table).
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"list      nick 3    bobquit      ")
    assert drain(server) == [cw.ListRequest(), cw.NickRequest(nick="bob"), cw.Quit()]
    with pytest.raises(cw.LocalProtocolError) as info:
        server.send(event)
    assert info.value.section == "3.1.5"
    assert (server.state, server.pending) == (cw.State.QUIT, ("list", "nick"))
    # Still refused the second time: the fast path for frames that change no state is off too.
    with pytest.raises(cw.LocalProtocolError):
        server.send(event)


def test_a_server_that_read_quit_may_finish_a_file_it_had_started() -> None:
    # spec 3.1.5 forbids starting a frame; the data of one already started may still go out
    # (or be cut short; the client treats the end of the stream as normal, 6.5).
    server = in_state(cw.Role.SERVER, "ACTIVE")
    assert server.send(cw.FileRelay(sender="bob", name="a.txt", size=3)) == (
        b"file 3 5  boba.txt3         "
    )
    assert server.send(cw.FileData(data=b"a")) == b"a"
    server.receive_data(b"quit      ")
    assert server.next_event() == cw.Quit()
    assert server.send(cw.FileData(data=b"bc")) == b"bc"
    assert server.send(cw.FileEnd()) == b""
    with pytest.raises(cw.LocalProtocolError):
        server.send(cw.Notice(text="bye"))


def test_a_client_in_quit_still_receives_what_the_server_sent_before() -> None:
    client = in_state(cw.Role.CLIENT, "QUIT")  # pending: list, nick
    client.receive_data(b"msg 1 2   ahi3         anaNC        msg 0 3   bye")
    assert drain(client) == [
        cw.MessageRelay(sender="a", text="hi"),
        cw.ListReply(nicks=("ana",)),
        cw.NickChanged(),
        cw.Notice(text="bye"),
    ]
    assert client.state is cw.State.QUIT


def test_server_relays_only_to_logged_in_clients() -> None:
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         ana")
    server.next_event()
    with pytest.raises(cw.LocalProtocolError):
        server.send(cw.MessageRelay(sender="bob", text="hi"))  # spec 3.1.7: ACC first


def test_sending_a_file_counts_its_bytes() -> None:
    client = in_state(cw.Role.CLIENT, "ACTIVE")
    head = client.send(cw.File(name="a.bin", size=5))
    assert head == b"file 5    a.bin5         "
    assert client.sending_file
    with pytest.raises(cw.LocalProtocolError):
        client.send(cw.Message(text="hi"))  # spec 5.1
    with pytest.raises(cw.LocalProtocolError):
        client.send(cw.FileEnd())
    view = memoryview(b"abc")
    assert client.send(cw.FileData(data=view)) is view
    with pytest.raises(cw.LocalProtocolError):
        client.send(cw.FileData(data=b"cde"))
    client.account_file_data(2)
    assert client.send(cw.FileEnd()) == b""
    assert not client.sending_file
    assert client.send(cw.Message(text="hi")) == b"msg 2     hi"
    with pytest.raises(cw.LocalProtocolError):
        client.account_file_data(1)


# --- End of stream (spec 6.5) -------------------------------------------------------------------


def test_eof_at_a_frame_boundary_is_a_clean_close() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"msg 2     hi")
    server.receive_data(b"")
    assert drain(server) == [cw.Message(text="hi"), cw.ConnectionClosed()]
    assert server.state is cw.State.CLOSED
    with pytest.raises(cw.LocalProtocolError):
        server.receive_data(b"more")


@pytest.mark.parametrize("data", [b"msg 2", b"msg 2     h", b"file 1    a5         abc"])
def test_eof_inside_a_frame_is_a_remote_error(data) -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    start = server.bytes_received
    server.receive_data(data)
    server.receive_data(b"")
    with pytest.raises(cw.RemoteProtocolError) as info:
        drain(server)
    assert info.value.section == "6.5"
    assert info.value.offset == start + len(data)


def test_eof_inside_a_frame_after_quit_is_the_normal_end() -> None:
    client = in_state(cw.Role.CLIENT, "QUIT")
    client.receive_data(b"file 1 1  ab5         ab")
    client.receive_data(b"")
    events = drain(client)
    assert events[0] == cw.FileRelay(sender="a", name="b", size=5)
    assert events[-1] == cw.ConnectionClosed()


# --- The shared caches of the direct path ----------------------------------------------------


def test_a_peer_sending_many_distinct_headers_does_not_turn_the_direct_path_off(
    monkeypatch,
) -> None:
    # The plans are per process. One hostile peer sends 5400 distinct valid headers, more than
    # the table holds; a connection opened afterwards must still get plans for its own headers.
    plans = _connection._PLANS[cw._wire.Direction.S2C]
    plans.clear()
    hostile = in_state(cw.Role.CLIENT, "ACTIVE")
    for nick in range(1, 10):
        frames = b"".join(
            cw.encode(cw.MessageRelay(sender="n" * nick, text="x" * size))
            for size in range(10, 610)
        )
        hostile.receive_data(frames)
        assert len(drain(hostile)) == 600
        assert len(plans) <= _connection._PLANS_MAX
    client = in_state(cw.Role.CLIENT, "ACTIVE")
    full_path = []
    real_identify = _connection.identify
    monkeypatch.setattr(
        _connection, "identify", lambda *args: full_path.append(args) or real_identify(*args)
    )
    client.receive_data(b"msg 3 2   anahi" * 3)
    assert drain(client) == [cw.MessageRelay(sender="ana", text="hi")] * 3
    assert len(full_path) == 1  # the first frame made the plan; the others used it
    assert b"msg 3 2   " in plans


# --- Bounded memory -------------------------------------------------------------------------


def test_a_9_gb_file_is_decoded_in_bounded_memory() -> None:
    # 9 000 000 000 bytes of data, fed as the same 256 KiB object again and again: the decoder
    # must hand each piece out as a view and keep nothing, so its memory does not grow.
    size = 9_000_000_000
    chunk = bytes(256 * 1024)
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"file 5    a.iso" + b"%-10d" % size)
    assert server.next_event() == cw.File(name="a.iso", size=size)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        seen = 0
        full, last = divmod(size, len(chunk))
        for i in range(full + 1):
            server.receive_data(chunk if i < full else chunk[:last])
            while (event := server.next_event()) is not cw.NEED_DATA:
                if isinstance(event, cw.FileEnd):
                    break
                assert isinstance(event, cw.FileData)
                seen += event.data.nbytes  # type: ignore[union-attr]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == size
    assert isinstance(event, cw.FileEnd)
    assert peak - base < 300 * 1024
    assert server.receive_data(b"quit      ") is None
    assert server.next_event() == cw.Quit()


def test_received_file_data_is_not_copied() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"file 1    a8         ")
    server.next_event()
    chunk = b"12345678"
    server.receive_data(chunk)
    event = server.next_event()
    assert isinstance(event, cw.FileData)
    assert isinstance(event.data, memoryview) and event.data.obj is chunk


def test_a_file_head_straddling_a_huge_chunk_copies_only_the_head() -> None:
    # The head's first bytes end one read; the next read holds the rest of the head and 64 MiB
    # of data. Only the head is joined: the data comes out as views of that chunk, uncopied.
    size = 64 << 20
    head = b"file 5    a.bin" + b"%-10d" % size
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(head[:12])
    assert server.next_event() is cw.NEED_DATA
    chunk = head[12:] + bytes(size)
    gc.collect()
    tracemalloc.start()
    try:
        server.receive_data(chunk)
        assert server.next_event() == cw.File(name="a.bin", size=size)
        event = server.next_event()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(event, cw.FileData) and isinstance(event.data, memoryview)
    assert event.data.obj is chunk and event.data.nbytes == size
    assert peak < 64 * 1024
    assert server.next_event() == cw.FileEnd()


def test_mutable_input_is_copied() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    data = bytearray(b"msg 2     hi")
    server.receive_data(data)
    data[10:12] = b"XX"
    assert server.next_event() == cw.Message(text="hi")
    view = memoryview(bytearray(b"msg 3     bye"))
    server.receive_data(view)
    view[10:13] = b"XXX"
    assert server.next_event() == cw.Message(text="bye")


class Bytes(bytes):
    pass


@pytest.mark.parametrize(
    "data",
    [
        b"msg 2     hi",
        bytearray(b"msg 2     hi"),
        memoryview(b"msg 2     hi"),
        memoryview(b"xxmsg 2     hixx")[2:-2],
        memoryview(array.array("B", b"msg 2     hi")),
        Bytes(b"msg 2     hi"),
    ],
    ids=["bytes", "bytearray", "memoryview", "memoryview-slice", "memoryview-array", "subclass"],
)
def test_receive_data_takes_every_bytes_like_object(data) -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(data)
    assert server.next_event() == cw.Message(text="hi")


@pytest.mark.parametrize(
    "data",
    [None, 0, 12, 1.5, "abc", "", [b"a"], array.array("B", b"abc"), True],
    ids=repr,
)
def test_receive_data_refuses_anything_else_and_changes_nothing(data) -> None:
    # An int is not a count of NULs, None or 0 is not the end of the stream: only b"" is.
    server = in_state(cw.Role.SERVER, "ACTIVE")
    with pytest.raises(cw.LocalProtocolError, match="bytes, bytearray or memoryview"):
        server.receive_data(data)
    assert server.buffered == 0
    server.receive_data(b"msg 2     hi")  # the stream has not ended
    assert server.next_event() == cw.Message(text="hi")


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b"")], ids=repr)
def test_an_empty_buffer_is_the_end_of_the_stream(empty) -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(empty)
    assert server.next_event() == cw.ConnectionClosed()
    with pytest.raises(cw.LocalProtocolError):
        server.receive_data(b"")


def test_a_caller_that_reads_until_need_data_stays_under_max_buffered() -> None:
    # A list-reply of exactly LIST_MAX bytes arriving in 64 KiB reads: the largest head there is.
    nicks = [f"u{i:08d}" for i in range(99_999)] + ["ana", "carlos"]
    frame = cw.encode(cw.ListReply(nicks=nicks))
    assert len(frame) == cw.MAX_BUFFERED == cw.HEADER_SIZE + cw.LIST_MAX
    client = in_state(cw.Role.CLIENT, "ACTIVE")  # pending: list, nick
    most = 0
    for i in range(0, len(frame), 65536):
        client.receive_data(frame[i : i + 65536])
        events = drain(client)
        most = max(most, client.buffered)
    assert events == [cw.ListReply(nicks=tuple(nicks))]
    assert most < cw.MAX_BUFFERED


def test_feeding_while_paused_is_bounded_by_max_buffered() -> None:
    # spec 3.1.1: a client sends nothing before ACC, and a server that has not answered the
    # login reads nothing; bytes fed meanwhile pile up, but not without bound.
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         ana")
    assert server.next_event() == cw.Login(nick="ana")
    assert server.next_event() is cw.PAUSED
    chunk = b"msg 2     hi" * 10_000
    fed = 0
    with pytest.raises(cw.LocalProtocolError, match="buffered unread"):
        while True:
            server.receive_data(chunk)
            fed += len(chunk)
            assert server.buffered == fed <= cw.MAX_BUFFERED + len(chunk)
    assert server.buffered == fed > cw.MAX_BUFFERED
    server.send(cw.Accepted())  # the refusal changed nothing: the frames are all still there
    assert len(drain(server)) == fed // 12
    server.receive_data(chunk)  # read: room again


def test_bytes_received_after_the_connection_closed_are_dropped() -> None:
    client = in_state(cw.Role.CLIENT, "AWAIT_ACC")
    client.receive_data(b"NE        msg 1 2   ahi")
    assert client.next_event() == cw.Refused()
    assert client.buffered == 0  # what came with NE is never read, so not kept
    for _ in range(3):
        client.receive_data(bytes(cw.MAX_BUFFERED))  # a peer that goes on sending
        assert client.buffered == 0
    assert client.next_event() == cw.ConnectionClosed()
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         a b msg 2     hi")
    assert server.next_event() == cw.Login(nick="a b")
    assert server.send(cw.Refused()) == b"NE        "  # closes: the pipelined msg is dropped
    assert server.buffered == 0 and server.next_event() == cw.ConnectionClosed()
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"msg 05    hi")
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert server.buffered == 0
    server.receive_data(b"more")
    assert server.buffered == 0
    with pytest.raises(cw.RemoteProtocolError) as again:
        server.next_event()
    assert again.value is info.value


def test_a_remote_error_is_chained_to_the_frame_error() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"msg 05    hi")
    with pytest.raises(cw.RemoteProtocolError) as info:
        server.next_event()
    assert isinstance(info.value.__cause__, cw._wire.FrameError)  # raised `from exc`
    assert info.value.__cause__.section == info.value.section == "2.3"


@pytest.mark.parametrize("size", ["3", 1.0, None, True])
def test_file_byte_counts_must_be_ints(size) -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    server.receive_data(b"file 1    a5         ")
    server.next_event()
    with pytest.raises(cw.LocalProtocolError):
        server.file_data_received(size)
    server.send(cw.FileRelay(sender="bob", name="a", size=5))
    with pytest.raises(cw.LocalProtocolError):
        server.account_file_data(size)
    with pytest.raises(cw.LocalProtocolError):
        server.account_file_data(-1)
    server.account_file_data(5)
    assert server.send(cw.FileEnd()) == b""


@pytest.mark.parametrize(
    "build",
    [
        lambda: cw.Connection("client"),  # type: ignore[arg-type]
        lambda: cw.Connection(cw.Role.SERVER, max_file_size=-1),
        lambda: cw.Connection(cw.Role.SERVER, max_file_size=True),
        lambda: cw.Connection(cw.Role.SERVER, max_file_size="10"),  # type: ignore[arg-type]
        lambda: cw.Connection(cw.Role.SERVER, parser="slow"),  # type: ignore[arg-type]
    ],
)
def test_constructor_arguments_are_checked(build) -> None:
    with pytest.raises(cw.LocalProtocolError):
        build()


@pytest.mark.parametrize("limit", [0, 100, cw.FILE_MAX])
def test_max_file_size_is_a_server_option(limit) -> None:
    # spec 3.1.4 and 6.1 item 4 give the lower file limit to servers only.
    with pytest.raises(cw.LocalProtocolError) as info:
        cw.Connection(cw.Role.CLIENT, max_file_size=limit)
    assert info.value.section == "3.1.4"
    assert cw.Connection(cw.Role.SERVER, max_file_size=limit).max_file_size == limit


def test_a_client_accepts_a_relayed_file_of_any_size() -> None:
    client = in_state(cw.Role.CLIENT, "ACTIVE")
    assert client.max_file_size == cw.FILE_MAX
    client.receive_data(b"file 1 1  ab9999999999")
    assert client.next_event() == cw.FileRelay(sender="a", name="b", size=cw.FILE_MAX)


def test_file_data_can_be_taken_from_the_stream_directly() -> None:
    server = in_state(cw.Role.SERVER, "ACTIVE")
    start = server.bytes_received
    server.receive_data(b"file 1    a10        abc")
    assert server.next_event() == cw.File(name="a", size=10)
    assert server.file_data_wanted == 0  # "abc" is buffered: it must come out as events first
    assert bytes(server.next_event().data) == b"abc"  # type: ignore[union-attr]
    assert server.file_data_wanted == 7
    with pytest.raises(cw.LocalProtocolError):
        server.file_data_received(8)
    server.file_data_received(7)  # the caller read them itself (straight to disk, say)
    assert server.file_data_wanted == 0
    assert server.next_event() == cw.FileEnd()
    assert server.bytes_received - start == 24 + 7
    server.receive_data(b"quit      ")
    assert server.next_event() == cw.Quit()
