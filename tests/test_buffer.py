"""Tests of chatwire._buffer.ReceiveBuffer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatwire._buffer import ReceiveBuffer


def test_peek_does_not_consume_and_commit_does() -> None:
    buf = ReceiveBuffer()
    assert buf.peek(1) is None
    buf.feed(b"hello")
    block, start = buf.peek(3)  # type: ignore[misc]
    assert block[start : start + 3] == b"hel"
    assert len(buf) == 5
    buf.commit(3)
    assert len(buf) == 2
    assert buf.peek(3) is None


def test_peek_inside_one_chunk_returns_the_chunk_itself() -> None:
    buf = ReceiveBuffer()
    chunk = b"abcdef"
    buf.feed(chunk)
    buf.commit(2)
    block, start = buf.peek(3)  # type: ignore[misc]
    assert block is chunk and start == 2


def test_take_gives_views_without_copying() -> None:
    buf = ReceiveBuffer()
    chunk = b"0123456789"
    buf.feed(chunk)
    view = buf.take(4)
    assert view.obj is chunk and bytes(view) == b"0123"
    assert bytes(buf.take(100)) == b"456789"  # at most the first chunk
    assert len(buf) == 0
    assert buf.take(5) == b""


def test_empty_feeds_are_ignored() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"")
    assert len(buf) == 0
    assert buf.peek(1) is None


@given(chunks=st.lists(st.binary(max_size=20), max_size=20), ops=st.lists(st.integers(1, 30)))
def test_peek_commit_and_take_see_the_stream_in_order(chunks, ops) -> None:
    buf = ReceiveBuffer()
    for chunk in chunks:
        buf.feed(chunk)
    stream = b"".join(chunks)
    seen = b""
    for i, n in enumerate(ops):
        if i % 2:
            seen += bytes(buf.take(n))
        else:
            peeked = buf.peek(n)
            if peeked is None:
                assert len(buf) < n
                continue
            block, start = peeked
            seen += block[start : start + n]
            buf.commit(n)
        assert len(buf) == len(stream) - len(seen)
    assert stream.startswith(seen)
