"""The byte-exact vectors of spec/vectors/ against chatwire.

Every vector is fed whole, byte by byte, and (when the stream stays open) with trailing bytes,
through both the fast parser and the construct reference. Valid frames must decode to their
fields and re-encode to their exact bytes; malformed ones must raise RemoteProtocolError with the
vector's section, offset and prescribed reply.
"""

from __future__ import annotations

from typing import Any

import pytest

import chatwire as cw
from tests.strategies import coalesce, revalidated
from tests.vectors import expected_events, load, receiver

FRAMES = load("frames.json")["vectors"]
MALFORMED = load("malformed.json")["vectors"]
PARSERS = ["fast", "construct"]
FEEDS = ["whole", "byte-by-byte", "trailing"]


def feed(conn: cw.Connection, data: bytes, how: str, eof: bool) -> list[cw.Event]:
    """Feed ``data`` as ``how`` says and collect events; RemoteProtocolError propagates."""
    events: list[cw.Event] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if how == "byte-by-byte" else [data]
    if how == "trailing":
        pieces.append(b"\xffmsg")  # bytes of a next frame: must not change this one's outcome
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) not in (cw.NEED_DATA, cw.PAUSED):
            events.append(revalidated(event))  # type: ignore[arg-type]
            if isinstance(event, cw.ConnectionClosed):
                return events
    if eof:
        conn.receive_data(b"")
        events.append(conn.next_event())  # type: ignore[arg-type]
    return events


def cases(vectors: list[dict[str, Any]]) -> list[Any]:
    return [
        pytest.param(v, parser, how, id=f"{v['id']}-{parser}-{how}")
        for v in vectors
        for parser in PARSERS
        for how in FEEDS
        if not (how == "trailing" and v.get("eof"))
    ]


@pytest.mark.parametrize(("vector", "parser", "how"), cases(FRAMES))
def test_frame_vector_decodes_to_its_fields(vector, parser, how) -> None:
    conn = receiver(vector, parser)
    start = conn.bytes_received
    events = feed(conn, bytes.fromhex(vector["hex"]), how, bool(vector.get("eof")))
    expected = expected_events(vector)
    if vector.get("eof"):
        expected.append(cw.ConnectionClosed())
    if vector.get("head_only") and how == "trailing":
        expected.append(b"\xffmsg")  # what follows a file's head is its data
    assert coalesce(events) == expected
    if vector.get("head_only"):
        assert conn.receiving_file
    elif how != "trailing":
        assert conn.bytes_received - start == len(bytes.fromhex(vector["hex"]))


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


@pytest.mark.parametrize(("vector", "parser", "how"), cases(MALFORMED))
def test_malformed_vector_raises_its_error(vector, parser, how) -> None:
    conn = receiver(vector, parser)
    start = conn.bytes_received
    with pytest.raises(cw.RemoteProtocolError) as info:
        feed(conn, bytes.fromhex(vector["hex"]), how, bool(vector.get("eof")))
    error = info.value
    assert (error.section, error.offset - start) == (
        vector["error"]["section"],
        vector["error"]["offset"],
    )  # type: ignore[operator]
    assert error.reply == (cw.Refused() if vector.get("reply") == "NE" else None)
    assert conn.state is cw.State.CLOSED


def test_every_message_of_the_spec_has_a_vector_in_each_direction() -> None:
    assert {v["message"] for v in FRAMES} == set(cw._wire.MESSAGES)
