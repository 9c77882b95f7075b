"""Hypothesis strategies for chatwire events, conversations and byte streams."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hypothesis import strategies as st

import chatwire as cw
from chatwire._text import file_name_error, utf8_len


def _truncate(text: str, max_bytes: int) -> str:
    # Drop characters from the end until the UTF-8 form fits (never cuts inside a character).
    while utf8_len(text) > max_bytes:
        text = text[:-1]
    return text


def utf8_text(
    max_bytes: int, min_bytes: int = 0, max_size: int | None = None
) -> st.SearchStrategy[str]:
    """str whose UTF-8 form has min_bytes..max_bytes bytes (no lone surrogates)."""
    size = max_bytes if max_size is None else max_size
    return (
        st.text(min_size=min_bytes, max_size=size)
        .map(lambda t: _truncate(t, max_bytes))
        .filter(lambda t: utf8_len(t) >= min_bytes)
    )


# Anything that fits a nick field (spec 2.7), valid as a nick or not.
wire_nicks = utf8_text(cw.NICK_MAX)
senders = utf8_text(cw.NICK_MAX, min_bytes=1)
valid_nicks = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lo", "Nd", "Mn")) | st.sampled_from("-_"),
    min_size=1,
    max_size=9,
).filter(cw.is_valid_nick)
texts = st.one_of(
    utf8_text(cw.TEXT_MAX, max_size=40),
    st.integers(0, cw.TEXT_MAX).map(lambda n: "x" * n),
    st.integers(0, cw.TEXT_MAX // 4).map(lambda n: "\U0001f600" * n),
)
file_names = st.one_of(
    st.text(min_size=1, max_size=30).filter(lambda n: file_name_error(n) is None),
    st.integers(1, cw.NAME_MAX).map(lambda n: "n" * n),
    st.integers(1, cw.NAME_MAX // 2).map(lambda n: "é" * n),
)
file_bodies = st.one_of(
    st.binary(max_size=300), st.integers(0, 70_000).map(lambda n: b"\x00\xff" * (n // 2))
)
user_lists = st.lists(senders.filter(lambda n: "\n" not in n), max_size=12).map(tuple)


@dataclass
class Stream:
    """One direction of a conversation: the events in order and the bytes they make."""

    events: list[cw.Event] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)


def _file_events(start: cw.Event, body: bytes, pieces: list[int]) -> list[cw.Event]:
    events: list[cw.Event] = [start]
    pos = 0
    for size in pieces:
        if pos >= len(body):
            break
        events.append(cw.FileData(data=body[pos : pos + size]))
        pos += size
    if pos < len(body):
        events.append(cw.FileData(data=body[pos:]))
    events.append(cw.FileEnd())
    return events


@st.composite
def client_streams(draw: st.DrawFn, quit_at_end: bool | None = None) -> Stream:
    """What a client sends: a login, any legal requests, maybe quit."""
    conn = cw.Connection(cw.Role.CLIENT)
    stream = Stream()

    def send(event: cw.Event) -> None:
        stream.events.append(event)
        stream.data += conn.send(event)

    send(cw.Login(nick=draw(wire_nicks)))
    conn.receive_data(b"ACC       ")
    assert conn.next_event() == cw.Accepted()
    kinds = st.sampled_from(["list", "nick", "msg", "file"])
    for kind in draw(st.lists(kinds, max_size=12)):
        if kind == "list":
            send(cw.ListRequest())
        elif kind == "nick":
            send(cw.NickRequest(nick=draw(wire_nicks)))
        elif kind == "msg":
            send(cw.Message(text=draw(texts)))
        else:
            body = draw(file_bodies)
            pieces = draw(st.lists(st.integers(1, 5000), max_size=4))
            for event in _file_events(cw.File(name=draw(file_names), size=len(body)), body, pieces):
                send(event)
    if quit_at_end if quit_at_end is not None else draw(st.booleans()):
        send(cw.Quit())
    return stream


@st.composite
def server_streams(draw: st.DrawFn) -> tuple[list[str], Stream]:
    """What a server sends a client that logged in and then made the returned requests:
    ACC, then relays, notices and the replies to those requests, interleaved. Or, about one
    time in eight, ``NE`` alone: the login is refused, the server sends nothing more and
    closes (spec 3.1.1), and there are no requests."""
    server = cw.Connection(cw.Role.SERVER)
    server.receive_data(b"3         ana")
    assert isinstance(server.next_event(), cw.Login)
    stream = Stream()

    def send(event: cw.Event) -> None:
        stream.events.append(event)
        stream.data += server.send(event)

    if draw(st.integers(0, 7)) == 0:
        send(cw.Refused())
        assert server.state is cw.State.CLOSED
        return [], stream
    requests = draw(st.lists(st.sampled_from(["list", "nick"]), max_size=8))
    send(cw.Accepted())
    for request in requests:
        server.receive_data(b"list      " if request == "list" else b"nick 3    bob")
        assert server.next_event() in (cw.ListRequest(), cw.NickRequest(nick="bob"))
    unanswered = list(requests)
    for step in range(draw(st.integers(0, 12)) + len(requests)):
        choices = ["relay", "notice", "file"] + (["reply"] if unanswered else [])
        kind = draw(st.sampled_from(choices))
        if step >= 12:  # every request gets its reply in the end
            kind = "reply" if unanswered else kind
        if kind == "reply":
            request = unanswered.pop(0)
            if request == "list":
                send(cw.ListReply(nicks=draw(user_lists)))
            else:
                send(draw(st.sampled_from([cw.NickChanged(), cw.Refused()])))
        elif kind == "relay":
            send(cw.MessageRelay(sender=draw(senders), text=draw(texts)))
        elif kind == "notice":
            send(cw.Notice(text=draw(texts)))
        else:
            body = draw(file_bodies)
            pieces = draw(st.lists(st.integers(1, 5000), max_size=4))
            start = cw.FileRelay(sender=draw(senders), name=draw(file_names), size=len(body))
            for event in _file_events(start, body, pieces):
                send(event)
    while unanswered:
        request = unanswered.pop(0)
        send(cw.ListReply(nicks=draw(user_lists)) if request == "list" else cw.NickChanged())
    return requests, stream


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``data`` into chunks of the given sizes (cycled), the last one taking the rest."""
    chunks = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        chunks.append(bytes(data[pos : pos + size]))
        pos += size
        i += 1
    return chunks


chunk_sizes = st.lists(st.integers(1, 70_000), min_size=1, max_size=20) | st.lists(
    st.integers(1, 16), min_size=1, max_size=20
)


def coalesce(events: list[cw.Event]) -> list[object]:
    """Events with consecutive FileData merged into one bytes object, for comparison."""
    out: list[object] = []
    for event in events:
        if isinstance(event, cw.FileData):
            if out and isinstance(out[-1], bytes):
                out[-1] += bytes(event.data)
            else:
                out.append(bytes(event.data))
        else:
            out.append(event)
    return out


def revalidated(event: cw.Event) -> cw.Event:
    """``event`` rebuilt through its constructor: the decoder builds some events without
    running their checks (for speed), so every decoded event must survive them and compare
    equal."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    rebuilt = type(event)(**fields)
    assert rebuilt == event
    return event


def drain(conn: cw.Connection, *, accept: bool = True) -> list[cw.Event]:
    """Every event available now (each one revalidated); a server connection answers a login
    with ACC if asked."""
    events = []
    while True:
        event = conn.next_event()
        if event is cw.PAUSED:
            if not accept:
                return events
            conn.send(cw.Accepted())
            continue
        if event is cw.NEED_DATA:
            return events
        events.append(revalidated(event))
        if isinstance(event, cw.ConnectionClosed):
            return events
