"""The byte-exact vectors of spec/vectors/ against chatwire.

Every vector is fed whole, byte by byte, and with trailing data, through both the fast parser and
the construct reference. Valid frames must decode to their fields, consume exactly their bytes and
re-encode to them; malformed ones must raise RemoteProtocolError with the vector's section,
offset and prescribed reply.

Trailing data arrives in the same chunk as the vector, as a read from a socket would bring it:
a complete valid next frame (``msg`` from a client, ``msg-relay`` from a server). It must stay
buffered, byte for byte, while the vector's own frame is decoded, and then decode itself wherever
the state allows a next frame (after ``ACC`` is sent, for a server that read a login); where no
frame may follow (after ``NE`` at login, after ``quit``) it must be dropped or refused as spec 4.3
says. After a file's head the trailing bytes are file data.
"""

from __future__ import annotations

from typing import Any

import pytest

import chatwire as cw
from tests.strategies import coalesce, revalidated
from tests.vectors import expected_events, load, receiver

FRAMES = load("frames.json")["vectors"] + load("large.json")["vectors"]
MALFORMED = load("malformed.json")["vectors"]
PARSERS = ["fast", "construct"]
FEEDS = ["whole", "byte-by-byte", "trailing"]

# A complete valid frame for each direction, and the event it decodes to.
NEXT_FRAME = {
    "C→S": (b"msg 2     hi", cw.Message(text="hi")),
    "S→C": (b"msg 1 2   ahi", cw.MessageRelay(sender="a", text="hi")),
}
# Above this size a vector is fed one byte at a time only around its boundaries (the first and
# the last BOUNDARY bytes: every header, and the end), and in 4 KiB pieces in between: a
# 1 MB list-reply fed a byte at a time through the construct parser would take minutes.
BOUNDARY = 4096


def pieces(data: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if len(data) <= 2 * BOUNDARY:
        return [data[i : i + 1] for i in range(len(data))]
    head = [data[i : i + 1] for i in range(BOUNDARY)]
    middle = [data[i : i + BOUNDARY] for i in range(BOUNDARY, len(data) - BOUNDARY, BOUNDARY)]
    tail_start = BOUNDARY + BOUNDARY * len(middle)
    return head + middle + [data[i : i + 1] for i in range(tail_start, len(data))]


def feed(conn: cw.Connection, data: bytes, how: str, eof: bool) -> list[cw.Event]:
    """Feed ``data`` whole or byte by byte and collect events; RemoteProtocolError propagates."""
    events: list[cw.Event] = []
    for piece in pieces(data, how):
        conn.receive_data(piece)
        while (event := conn.next_event()) not in (cw.NEED_DATA, cw.PAUSED):
            events.append(revalidated(event))  # type: ignore[arg-type]
            if isinstance(event, cw.ConnectionClosed):
                return events
    if eof:
        conn.receive_data(b"")
        events.append(conn.next_event())  # type: ignore[arg-type]
    return events


def cases(vectors: list[dict[str, Any]], feeds: list[str]) -> list[Any]:
    return [
        pytest.param(v, parser, how, id=f"{v['id']}-{parser}-{how}")
        for v in vectors
        for parser in PARSERS
        for how in feeds
    ]


@pytest.mark.parametrize(("vector", "parser", "how"), cases(FRAMES, ["whole", "byte-by-byte"]))
def test_frame_vector_decodes_to_its_fields(vector, parser, how) -> None:
    conn = receiver(vector, parser)
    start = conn.bytes_received
    data = bytes.fromhex(vector["hex"])
    events = feed(conn, data, how, bool(vector.get("eof")))
    expected = expected_events(vector)
    if vector.get("eof"):
        expected.append(cw.ConnectionClosed())
    assert coalesce(events) == expected
    assert conn.bytes_received - start == len(data)
    assert conn.buffered == 0
    assert conn.receiving_file == bool(vector.get("head_only"))


@pytest.mark.parametrize(
    ("vector", "parser"),
    [pytest.param(v, p, id=f"{v['id']}-{p}-trailing") for v in FRAMES for p in PARSERS],
)
def test_frame_vector_with_a_next_frame_in_the_same_chunk(vector, parser) -> None:
    conn = receiver(vector, parser)
    start = conn.bytes_received
    data = bytes.fromhex(vector["hex"])
    trailing, after = NEXT_FRAME[vector["direction"]]
    conn.receive_data(data + trailing)
    expected = expected_events(vector)
    events: list[cw.Event] = []
    for _ in range(len(expected)):  # one chunk: file data comes out as one piece
        event = conn.next_event()
        assert isinstance(event, cw.Event), (events, event)
        events.append(revalidated(event))
    assert coalesce(events) == expected
    # Exactly the vector's bytes were consumed; the next frame waits, whole (or, after NE at
    # login, is dropped: nothing more is read, spec 3.1.1).
    assert conn.bytes_received - start == len(data)
    assert conn.buffered == (0 if conn.state is cw.State.CLOSED else len(trailing))
    if vector.get("head_only"):
        after = cw.FileData(data=trailing)  # what follows a file's head is its data
    elif conn.state is cw.State.AWAIT_ACC:  # a server that read a login reads on after ACC
        assert conn.next_event() is cw.PAUSED
        conn.send(cw.Accepted())
    elif conn.state is cw.State.CLOSED:  # NE at login: nothing more is read (spec 3.1.1)
        after = cw.ConnectionClosed()
    elif conn.role is cw.Role.SERVER and conn.state is cw.State.QUIT:
        with pytest.raises(cw.RemoteProtocolError) as info:  # nothing may follow quit (4.3)
            conn.next_event()
        assert (info.value.section, info.value.offset) == ("4.3", start + len(data))
        return
    event = conn.next_event()
    assert coalesce([event]) == coalesce([after])  # type: ignore[list-item]
    if vector.get("eof") and not isinstance(event, cw.ConnectionClosed):
        conn.receive_data(b"")
        assert conn.next_event() == cw.ConnectionClosed()


@pytest.mark.parametrize("vector", FRAMES, ids=[v["id"] for v in FRAMES])
def test_frame_vector_is_what_chatwire_encodes(vector) -> None:
    events = [e for e in expected_events(vector) if isinstance(e, cw.Event)]
    data = b"".join(cw.encode(e) for e in events if not isinstance(e, cw.FileEnd))
    body = (
        b""
        if vector.get("head_only")
        else bytes.fromhex(vector["fields"]["data_hex"])
        if "data_hex" in vector["fields"]
        else b""
    )
    assert data + body == bytes.fromhex(vector["hex"])


@pytest.mark.parametrize(
    ("vector", "parser", "how"),
    # A truncated stream (eof) followed by more bytes would no longer be truncated.
    [c for c in cases(MALFORMED, FEEDS) if c.values[2] != "trailing" or not c.values[0].get("eof")],
)
def test_malformed_vector_raises_its_error(vector, parser, how) -> None:
    conn = receiver(vector, parser)
    start = conn.bytes_received
    data = bytes.fromhex(vector["hex"])
    with pytest.raises(cw.RemoteProtocolError) as info:
        if how == "trailing":  # a valid next frame in the same chunk changes nothing
            feed(conn, data + NEXT_FRAME[vector["direction"]][0], "whole", False)
        else:
            feed(conn, data, how, bool(vector.get("eof")))
    error = info.value
    assert (error.section, error.offset - start) == (  # type: ignore[operator]
        vector["error"]["section"],
        vector["error"]["offset"],
    )
    assert error.reply == (cw.Refused() if vector.get("reply") == "NE" else None)
    assert conn.state is cw.State.CLOSED
    # str() adds the section itself: a message must not name it again (log lines read badly).
    assert error.message.count("spec ") == 0, error.message


def test_every_message_of_the_spec_has_a_vector_in_each_direction() -> None:
    assert {v["message"] for v in FRAMES} == set(cw._wire.MESSAGES)


def test_the_vectors_reach_every_limit_of_2_7() -> None:
    # The largest value of each size field appears in some valid vector (spec 2.7).
    seen: dict[str, int] = {}
    for vector in FRAMES:
        for field, value in vector["fields"].items():
            if field.endswith("_size"):
                seen[field] = max(seen.get(field, 0), value)
    assert seen == {field: high for field, (_low, high) in cw._limits.SIZE_RANGES.items()}
    nick_requests = [v for v in FRAMES if v["message"] == "nick"]
    assert max(v["fields"]["nick_size"] for v in nick_requests) == cw.NICK_MAX


def test_the_largest_list_is_the_one_the_readme_describes() -> None:
    # spec/vectors/README.md: u00000000 to u00099998, then ana and carlos; exactly LIST_MAX.
    (vector,) = [v for v in FRAMES if v["id"] == "list-reply-list-max"]
    nicks = [f"u{i:08d}" for i in range(99_999)] + ["ana", "carlos"]
    assert vector["fields"] == {"list_size": cw.LIST_MAX, "user_list": nicks}
    assert bytes.fromhex(vector["hex"]) == b"1000000   " + "\n".join(nicks).encode()


def test_vector_ids_are_unique_across_the_files() -> None:
    ids = [v["id"] for v in FRAMES + MALFORMED]
    assert len(ids) == len(set(ids))
